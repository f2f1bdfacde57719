"""The whole pipeline on an S3 lake (`CT_LAKE=s3://bucket/lake`, AWS_ENDPOINT_URL at a local S3
server, moto_server), as an operator would run it:

ingest of a log with four days of history from two days ago (`ct_ingest`, real `dag.test()`
runs against a local CT log) -> `ct_compact` merges the closed days -> a backfill by index of
the history below first_index writes into a compacted day and into days of its own ->
compaction merges it in (generation 2) -> `ct_score`, `ct_watch` and `ct_enrich` (local fake
threat-intel APIs) catch up, `ct_health` checks, the monitor's snapshot reads the S3 health
file -> `python -m ctlib.audit` (lake, and the downstream check) passes and `python -m
ctlib.query --lake s3://... "select count(*) from certs"` counts every entry once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pyarrow.fs as pafs
import pytest

from ctlib.lake import layout
from ctlib.lake.compaction import BACKFILL_QUIET, compact_log
from ctlib.lake.files import Lake
from ctlib.lake.manifest import live_files, read_manifest
from ctlib.testing.ctlog import LogServer
from ctlib.testing.enrichment_servers import FakePassiveTotal, FakeThreatStream
from tests.paths import PROJECT_ROOT
from tests.support.airflow import configure, ingest_dag, load_dag_module, state_of
from tests.support.audit import audit

pytestmark = pytest.mark.integration

HOURS = 4 * 24
ENTRIES = 480


def query(lake_location: str, sql: str) -> str:
    """`python -m ctlib.query --lake LAKE --format csv SQL` in a process of its own (the AWS
    variables of the test's environment); its output."""
    done = subprocess.run([sys.executable, "-m", "ctlib.query", "--lake", lake_location, "--format", "csv", sql],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy(), cwd=PROJECT_ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def count(lake_location: str) -> tuple[int, int]:
    """(rows, distinct indexes) of certs, as the query CLI counts them."""
    rows, distinct = query(lake_location, "select count(*) as n, count(distinct index) as d from certs").split()[1].split(",")
    return int(rows), int(distinct)


def test_ingest_compaction_backfill_downstream_audit_and_query_on_s3(airflow_db, s3_lake, tmp_path, monkeypatch):
    from airflow.models.pool import Pool

    from ctlib.airflow.monitor import snapshot

    Pool.create_or_update_pool("ct_enrichment", 2, "threat-intel API calls", False)
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(".watched-corp.example\n")
    with LogServer() as server, \
            FakePassiveTotal({"analyst@example.com": "pt-secret"}, synthesize=True) as pt, \
            FakeThreatStream({"analyst@example.com": "ts-key"}, synthesize=True) as ts:
        log = server.add_log("Local S3 Lake Log", history=(HOURS, ENTRIES / (HOURS * 3600)))
        for names in (["paypal.com.account-verify-login.xyz"], ["www.watched-corp.example"]):
            log.submit(names)
        log.publish()
        total = log.sth.tree_size
        start_at = (datetime.now(UTC) - timedelta(hours=48)).isoformat(timespec="seconds")
        configure(monkeypatch, tmp_path, server, None, CT_KAFKA_CONN_ID="", CT_LAKE=s3_lake, CT_TASK_RETRIES="0",
                  CT_START_AT=start_at, CT_ENTRIES_PER_RUN="400", CT_ENTRIES_PER_TASK="20",
                  CT_WATCHLIST=str(watchlist))
        for env in (pt.airflow_conn_env(), ts.airflow_conn_env()):
            for name, value in env.items():
                monkeypatch.setenv(name, value)
        lake = Lake.open(s3_lake)
        ingest = ingest_dag(log.slug)

        # Ingest from two days ago up to the log's size.
        while True:
            assert ingest.test().state == "success"
            state = state_of(log.slug)
            if state["next_index"] >= total:
                break
        first_index = state["first_index"]
        assert 0 < first_index < total
        assert count(s3_lake) == (total - first_index, total - first_index)

        # ct_compact merges the closed days (before yesterday, the local logs' MMD being a day).
        assert load_dag_module("ct_maintenance").ct_compact.test().state == "success"
        compacted = {f.day for f in live_files(lake, layout.CERTS, slug=log.slug) if layout.parse_merged(f.name)}
        assert compacted, "no day was compacted"
        boundary_day = min(compacted)  # the day of first_index: compacted, with history before it

        # A backfill of the history below first_index: into the compacted day and older days.
        assert ingest.test(run_conf={"start_index": 0, "end_index": first_index}).state == "success"
        assert state_of(log.slug)["first_index"] == first_index, "a backfill leaves the watermark alone"
        assert count(s3_lake) == (total, total), "every entry once, the backfill beside the merged files"

        # Compaction merges the backfill in once it is quiet (6 hours: `now` says so).
        later = datetime.now(UTC) + BACKFILL_QUIET + timedelta(minutes=5)
        state = state_of(log.slug)
        report = compact_log(lake, log.slug, first_index=state["first_index"], next_index=state["next_index"],
                             mmd_seconds=86400, now=later)
        merged_again = [p for p in report.partitions if p.table == layout.CERTS and p.day == boundary_day]
        assert [(p.outcome, p.generation) for p in merged_again] == [("compacted", 2)], report.to_json()
        directory = layout.partition_dir(lake.root, layout.CERTS, log.slug, boundary_day)
        assert read_manifest(lake, directory).generation == 2
        assert [f.name for f in live_files(lake, layout.CERTS, slug=log.slug, days=[boundary_day])] == [
            read_manifest(lake, directory).file]
        # An hour later the files the manifests superseded are deleted.
        compact_log(lake, log.slug, first_index=state["first_index"], next_index=state["next_index"],
                    mmd_seconds=86400, now=later + timedelta(hours=1))
        listed = lake.filesystem.get_file_info(pafs.FileSelector(directory))
        assert sorted(i.base_name for i in listed) == sorted([layout.MANIFEST, read_manifest(lake, directory).file])

        # The downstream DAGs catch up over everything committed; health checks the log.
        for name in ("ct_score", "ct_watch", "ct_enrich"):
            assert getattr(load_dag_module(name), name).test().state == "success", name
        assert load_dag_module("ct_maintenance").ct_health.test().state == "success"
        tables = {table: query(s3_lake, f"select count(*) as n from {table}").split()[1]
                  for table in ("alerts", "watch_matches", "enrichment", "health")}
        assert tables["watch_matches"] == "1" and all(int(n) >= 1 for n in tables.values()), tables
        snapshot.clear_cache()
        (seen,) = [s for s in snapshot.log_snapshots() if s.slug == log.slug]
        assert (seen.next_index, seen.status) == (total, "ok"), seen

        # The audit (lake, and downstream below ct_score's watermark) passes.
        code, report_text = audit("--log", log.slug, "--lake", s3_lake)
        assert code == 0, report_text
        assert f"{log.slug}: downstream score: [{first_index}, {total}) checked" in report_text

        # The analyst's count: every entry once, from the S3 lake, no DuckDB extension.
        assert count(s3_lake) == (total, total)
