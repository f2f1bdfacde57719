"""Scoring of certs files: every file of every batched asset event, and re-runs that replace
rather than add rows."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import duckdb

from ctlib.decode import LogRef, RawEntry, decode_entries
from ctlib.score import Scorer
from ctlib.score_files import alert_messages, files_from_events, names_of, score_certs_file
from ctlib.sinks.parquet import Lake, write_range
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
