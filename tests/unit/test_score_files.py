"""Scoring of a range of certificates (ctlib.downstream.scoring.score_range): files named by the
range and day, re-runs that replace rather than add rows (and leave no stale alerts file), and
each distinct (name, issuer) scored once yet joined back to every row."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.downstream.score import Scorer
from ctlib.downstream.scoring import CERT_COLUMNS, DistinctScores, alert_messages, names_of, score_range
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_range
from ctlib.lake.layout import SCORES_SCHEMA
from ctlib.testing.certs import CertFactory


def _certs(lake: Lake, certs_file: str) -> pa.Table:
    return pq.read_table(lake.path_of(certs_file), columns=list(CERT_COLUMNS), filesystem=lake.filesystem)


def _score_file(lake: Lake, certs_file: str, scorer, **kwargs):
    """Score the certificates of one certs file as the range its name gives."""
    start, end = layout.parse_range(certs_file.rpartition("/")[2])
    slug = certs_file.split("log=")[1].split("/")[0]
    return score_range(lake, slug, start, end, _certs(lake, certs_file), scorer, **kwargs)


def test_names_of_prefers_sans_and_normalises():
    assert names_of(["A.Example.com.", "a.example.com", "b.example.com"], "cn.example.com") == [
        "a.example.com", "b.example.com"]
    assert names_of([], "Only-CN.example.com") == ["only-cn.example.com"]
    assert names_of(None, None) == []


DAY_MS = 86_400_000
T0 = 1_764_547_200_000  # 2025-12-01 00:00 UTC


def test_rescoring_a_range_replaces_its_rows_in_one_file_per_day(tmp_path):
    factory = CertFactory(seed=3)
    entries = []
    for i in range(40):
        names = ["paypal.com.account-verify-login.xyz"] if i == 7 else None
        generated = factory.next_entry(T0 + (i // 20) * DAY_MS + i, names=names)  # two days
        entries.append(RawEntry(100 + i, generated.leaf_input, generated.extra_data))
    batch = decode_entries(LogRef("bG9n", "local_score_log"), entries, datetime.now(UTC))
    lake = Lake.open(str(tmp_path))
    scorer = Scorer()
    first, alerts = score_range(lake, "local_score_log", 100, 140, batch.certs, scorer)
    again, _ = score_range(lake, "local_score_log", 100, 140, batch.certs, scorer)
    assert [p.split("/scores/")[1] for p in first.scores_files] == [
        "log=local_score_log/date=2025-12-01/000000000100-000000000140.parquet",
        "log=local_score_log/date=2025-12-02/000000000100-000000000140.parquet"]
    assert (first.scores_files, first.alerts_files) == (again.scores_files, again.alerts_files)
    count = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/scores/**/*.parquet')").fetchall()[0][0]
    assert count == first.names == again.names
    alerted = duckdb.sql(f"select distinct name from read_parquet('{tmp_path}/alerts/**/*.parquet')").fetchall()
    assert ("paypal.com.account-verify-login.xyz",) in alerted
    keys = [key for key, _ in alert_messages(alerts)]
    assert b"bG9n:107:paypal.com.account-verify-login.xyz" in keys


class _Quiet:
    """A scorer that alerts on nothing (the lists changed between two attempts)."""

    threshold = 65.0

    def __init__(self) -> None:
        self.inner = Scorer()

    def score(self, name: str, issuer: str | None = None):
        return dataclasses.replace(self.inner.score(name, issuer=issuer), score=0.0, alert=False)


def test_a_rerun_that_no_longer_alerts_leaves_no_alerts_file_of_its_range(tmp_path):
    lake, certs_file = _certs_file(tmp_path)
    first, _ = _score_file(lake, certs_file, Scorer())
    assert first.alerts and first.alerts_files
    again, alerts = _score_file(lake, certs_file, _Quiet())
    assert (again.alerts, again.alerts_files, alerts.num_rows) == (0, (), 0)
    assert not (tmp_path / "alerts").exists() or not list((tmp_path / "alerts").rglob("*.parquet"))
    assert again.scores_files == first.scores_files


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
    scored, alerts = _score_file(lake, certs_file, counting)
    (scores_file,) = scored.scores_files
    rows = pq.read_table(scores_file, filesystem=lake.filesystem).to_pylist()
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
    a, _ = _score_file(lake, first, counting, distinct=distinct)
    b, _ = _score_file(lake, second, counting, distinct=distinct)
    assert a.names == b.names and a.distinct == b.distinct
    assert distinct.scored == a.distinct == sum(counting.calls.values())  # the second file: no new work


def test_scores_and_alerts_tables_are_those_of_row_by_row_scoring(tmp_path):
    lake, certs_file = _certs_file(tmp_path)
    scored_at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    scored, alerts = _score_file(lake, certs_file, Scorer(), scored_at=scored_at)
    expected = _rowwise_reference(lake, certs_file, scored_at)
    written = pq.read_table(scored.scores_files[0], filesystem=lake.filesystem)
    assert written.schema.equals(SCORES_SCHEMA)
    assert written.equals(expected)
    expected_alerts = expected.filter(pc.field("alert"))
    assert alerts.equals(expected_alerts) and alerts.num_rows == scored.alerts > 0
    assert pq.read_table(scored.alerts_files[0], filesystem=lake.filesystem).equals(expected_alerts)
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
