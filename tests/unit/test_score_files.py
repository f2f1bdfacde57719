"""Scoring of certs files: every file of every batched asset event, re-runs that replace rather
than add rows, and each distinct (name, issuer) scored once yet joined back to every row."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.downstream.score import Scorer
from ctlib.lake.layout import SCORES_SCHEMA
from ctlib.downstream.scoring import DistinctScores, alert_messages, files_from_events, names_of, score_certs_file
from ctlib.lake.files import Lake, write_range
from ctlib.testing.certs import CertFactory


def test_files_from_several_batched_events_in_order_without_repeats():
    events = {
        "ct://certs": [
            SimpleNamespace(extra={"files": ["a", "b"]}),
            SimpleNamespace(extra={"files": ["c", "a"]}),
            SimpleNamespace(extra=None),
        ],
        "other": [SimpleNamespace(extra={"files": ["d"]})],
    }
    assert files_from_events(events) == ["a", "b", "c", "d"]


def test_names_of_prefers_sans_and_normalises():
    assert names_of(["A.Example.com.", "a.example.com", "b.example.com"], "cn.example.com") == [
        "a.example.com", "b.example.com"]
    assert names_of([], "Only-CN.example.com") == ["only-cn.example.com"]
    assert names_of(None, None) == []


def test_rescoring_a_file_replaces_its_rows(tmp_path):
    factory = CertFactory(seed=3)
    now_ms = int(time.time() * 1000)
    entries = []
    for i in range(40):
        names = ["paypal.com.account-verify-login.xyz"] if i == 7 else None
        generated = factory.next_entry(now_ms + i, names=names)
        entries.append(RawEntry(i, generated.leaf_input, generated.extra_data))
    batch = decode_entries(LogRef("bG9n", "local_score_log"), entries, datetime.now(UTC))
    lake = Lake.open(str(tmp_path))
    (certs_file,) = write_range(lake, "certs", "local_score_log", 0, 40, batch.certs)
    scorer = Scorer()
    first, alerts = score_certs_file(lake, certs_file, scorer)
    again, _ = score_certs_file(lake, certs_file, scorer)
    assert (first.scores_file, first.alerts_file) == (again.scores_file, again.alerts_file)
    count = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/scores/**/*.parquet')").fetchall()[0][0]
    assert count == first.names == again.names
    alerted = duckdb.sql(f"select distinct name from read_parquet('{tmp_path}/alerts/**/*.parquet')").fetchall()
    assert ("paypal.com.account-verify-login.xyz",) in alerted
    keys = [key for key, _ in alert_messages(alerts)]
    assert b"bG9n:7:paypal.com.account-verify-login.xyz" in keys


# --- Each distinct (name, issuer) scored once, joined back to every row ----------------------------


class CountingScorer:
    """A Scorer that counts its calls per (name, issuer)."""

    def __init__(self) -> None:
        self.inner = Scorer()
        self.calls: Counter[tuple[str, str | None]] = Counter()

    @property
    def threshold(self) -> float:
        return self.inner.threshold

    def score(self, name: str, issuer: str | None = None):
        self.calls[(name, issuer)] += 1
        return self.inner.score(name, issuer=issuer)


# Certificates of a batch: each name set comes twice (precertificate and certificate), and
# www./bare names recur across certificates.
_NAME_SETS = [
    ["paypal.com.account-verify-login.xyz"],
    ["shop.example.org", "www.shop.example.org"],
    ["xn--pypal-4ve.com", "www.xn--pypal-4ve.com"],
    ["amazom6.top"],
    ["www.shop.example.org", "mail.example.org"],
]


def _certs_file(tmp_path, slug: str = "local_score_log", repeat: int = 2):
    factory = CertFactory(seed=5)
    now_ms = int(time.time() * 1000)
    entries = []
    for i in range(len(_NAME_SETS) * repeat):
        generated = factory.next_entry(now_ms + i, names=_NAME_SETS[i // repeat])
        entries.append(RawEntry(i, generated.leaf_input, generated.extra_data))
    batch = decode_entries(LogRef("bG9n", slug), entries, datetime.now(UTC))
    lake = Lake.open(str(tmp_path))
    (certs_file,) = write_range(lake, "certs", slug, 0, len(entries), batch.certs)
    return lake, certs_file


def _rowwise_reference(lake: Lake, certs_file: str, scored_at: datetime) -> pa.Table:
    """The scores table as it was built before names were deduplicated: row by row, every
    name of every certificate scored on its own."""
    scorer = Scorer()
    certs = pq.read_table(lake.path_of(certs_file), filesystem=lake.filesystem)
    rows = []
    for cert in certs.to_pylist():
        for name in names_of(cert["dns_names"], cert["subject_cn"]):
            result = scorer.score(name, issuer=cert["issuer_org"])
            rows.append({
                "log_id": cert["log_id"], "log_slug": cert["log_slug"], "index": cert["index"],
                "timestamp": cert["timestamp"], "cert_sha256": cert["cert_sha256"],
                "entry_type": cert["entry_type"], "issuer_org": cert["issuer_org"],
                "name": name, "registered_domain": result.registered_domain or name,
                "brand": result.brand, "score": float(result.score), "alert": bool(result.alert),
                "rules": [f"{rule}={weight:g}" for rule, weight in result.rules],
                "scored_at": scored_at,
            })
    return pa.Table.from_pylist(rows, schema=SCORES_SCHEMA)


def test_each_distinct_name_is_scored_once_yet_every_row_gets_its_score(tmp_path):
    lake, certs_file = _certs_file(tmp_path)
    counting = CountingScorer()
    scored, alerts = score_certs_file(lake, certs_file, counting)
    rows = pq.read_table(lake.path_of(scored.scores_file), filesystem=lake.filesystem).to_pylist()
    pairs = [(r["name"], r["issuer_org"]) for r in rows]
    assert len(rows) == scored.names == 2 * sum(map(len, _NAME_SETS))  # every certificate's every name
    assert scored.distinct == len(set(pairs)) < len(rows)  # names repeat across certificates
    assert set(counting.calls) == set(pairs)
    assert set(counting.calls.values()) == {1}  # each distinct pair scored exactly once
    reference = Scorer()
    for row in rows:
        expected = reference.score(row["name"], issuer=row["issuer_org"])
        assert (row["score"], row["alert"], row["brand"]) == (expected.score, expected.alert, expected.brand)
        assert row["rules"] == [f"{r}={w:g}" for r, w in expected.rules]
    by_index = {}
    for row in rows:
        by_index.setdefault(row["index"], []).append(row["name"])
    assert by_index[0] == by_index[1] == ["paypal.com.account-verify-login.xyz"]
    assert {r["name"] for r in alerts.to_pylist()} >= {"paypal.com.account-verify-login.xyz", "amazom6.top"}


def test_a_run_scores_names_repeated_across_files_once(tmp_path):
    lake, first = _certs_file(tmp_path, "log_a")
    _, second = _certs_file(tmp_path, "log_b")
    counting = CountingScorer()
    distinct = DistinctScores(counting)
    a, _ = score_certs_file(lake, first, counting, distinct=distinct)
    b, _ = score_certs_file(lake, second, counting, distinct=distinct)
    assert a.names == b.names and a.distinct == b.distinct
    assert distinct.scored == a.distinct == sum(counting.calls.values())  # the second file: no new work


def test_scores_and_alerts_tables_are_those_of_row_by_row_scoring(tmp_path):
    lake, certs_file = _certs_file(tmp_path)
    scored_at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    scored, alerts = score_certs_file(lake, certs_file, Scorer(), scored_at=scored_at)
    expected = _rowwise_reference(lake, certs_file, scored_at)
    written = pq.read_table(lake.path_of(scored.scores_file), filesystem=lake.filesystem)
    assert written.schema.equals(SCORES_SCHEMA)
    assert written.equals(expected)
    expected_alerts = expected.filter(pc.field("alert"))
    assert alerts.equals(expected_alerts) and alerts.num_rows == scored.alerts > 0
    assert pq.read_table(lake.path_of(scored.alerts_file), filesystem=lake.filesystem).equals(expected_alerts)
    # Kafka messages: the same keys and bodies as row-by-row scoring gives.
    assert list(alert_messages(alerts)) == list(alert_messages(expected_alerts))


def test_distinct_scores_stays_bounded_and_correct_past_its_limit():
    counting = CountingScorer()
    distinct = DistinctScores(counting, limit=2)
    pairs = [("a.example.com", None), ("b.example.com", None), ("c.example.com", None), ("a.example.com", None)]
    verdicts = distinct.verdicts(pairs)
    assert [v.name for v in verdicts] == [n for n, _ in pairs]
    assert len(distinct._seen) <= 2
    assert distinct.scored == 4  # "a" was forgotten when the memory started over, so scored again
    assert distinct.verdicts([("c.example.com", None)])[0].name == "c.example.com" and distinct.scored == 4
