"""`ct_health` and `ct_compact` end to end with `dag.test()`: local CT logs over HTTP, real
ingest runs for the watermarks, the lake read back with DuckDB."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_range
from ctlib.lake.layout import merged_file_name, range_file_name
from ctlib.lake.manifest import live_files, read_manifest
from ctlib.lake.reading import register
from ctlib.testing.ctlog import LogServer
from tests.support.airflow import configure, load_dag_module, run_dag, state_of

pytestmark = pytest.mark.integration


@pytest.fixture
def ct_server():
    with LogServer() as server:
        yield server


def health_rows(lake: Path) -> dict[str, dict]:
    """The newest health file's rows, by log."""
    newest = max((lake / "health").rglob("*.parquet"), key=lambda p: p.name)
    rows = duckdb.sql(f"select * from read_parquet('{newest}', hive_partitioning = false)").to_arrow_table().to_pylist()
    return {row["log_slug"]: row for row in rows}


def test_health_reports_lag_and_fails_naming_the_lagging_log(airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    healthy = ct_server.add_log("Local Healthy Log", initial_size=60)
    lagging = ct_server.add_log("Local Lagging Log", initial_size=50)
    created = time.time()
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0")
    ingest = load_dag_module("ct_ingest")
    assert getattr(ingest, "ct_ingest__local_healthy_log").test().state == "success"
    assert state_of(healthy.slug)["next_index"] == 60
    monkeypatch.setenv("CT_ENTRIES_PER_RUN", "20")  # read at task run: one small step only
    monkeypatch.setenv("CT_ENTRIES_PER_TASK", "20")
    assert getattr(ingest, "ct_ingest__local_lagging_log").test().state == "success"
    assert state_of(lagging.slug)["next_index"] == 20
    lagging.grow(30)
    lagging.publish()
    time.sleep(max(0.0, 1.5 - (time.time() - created)))  # entry 20 is over a second old

    monkeypatch.setenv("CT_HEALTH_MAX_LAG_SECONDS", "1")
    health = load_dag_module("ct_maintenance").ct_health
    state, output = run_dag(health, capfd)
    assert state == "failed"
    rows = health_rows(lake)
    assert (rows[healthy.slug]["status"], rows[healthy.slug]["lag_entries"], rows[healthy.slug]["lag_seconds"]) == ("ok", 0, 0.0)
    lag = rows[lagging.slug]
    assert (lag["status"], lag["failing"], lag["tree_size"], lag["next_index"], lag["lag_entries"]) == (
        "lagging", True, 80, 20, 60)
    assert 1 < lag["lag_seconds"] < time.time() - created + 1
    assert lag["oldest_pending_at"] is not None and lag["last_progress_at"] is not None
    assert "1 CT log(s) unhealthy: local_lagging_log (lagging, 60 entries behind" in output
    assert "local_healthy_log" in output, "the table in the task log shows every log"

    monkeypatch.setenv("CT_ENTRIES_PER_RUN", "160")
    monkeypatch.setenv("CT_ENTRIES_PER_TASK", "70")
    assert getattr(ingest, "ct_ingest__local_lagging_log").test().state == "success"
    assert health.test().state == "success", "all caught up: healthy even with a 1 s threshold"
    rows = health_rows(lake)
    assert {slug: (row["status"], row["lag_entries"]) for slug, row in rows.items()} == {
        healthy.slug: ("ok", 0), lagging.slug: ("ok", 0)}
    assert len(list((lake / "health").rglob("*.parquet"))) == 2, "one file per check"


def _past_lake(lake: Lake, log, today) -> list:
    """The log's 40 real entries, re-timestamped over the 5 days ending 6 days ago and
    written ingest-style in 2-entry ranges: 4 files per day."""
    entries = [RawEntry(i, *log.entry(i)) for i in range(40)]
    certs = decode_entries(LogRef(log.log_id_b64, log.slug), entries, datetime.now(UTC)).certs
    days = [today - timedelta(days=10 - d) for d in range(5)]
    stamps = [datetime.combine(days[i // 8], datetime.min.time(), UTC) + timedelta(hours=i % 8) for i in range(40)]
    certs = certs.set_column(certs.schema.get_field_index("timestamp"), certs.schema.field("timestamp"),
                             pa.array(stamps, certs.schema.field("timestamp").type))
    for start in range(0, 40, 2):
        write_range(lake, "certs", log.slug, start, start + 2, certs.slice(start, 2))
    return days


def _live_rows(lake: Lake, slug: str) -> list[tuple]:
    """(index, leaf_hash) of the log's certs as a reader following the manifest sees them."""
    con = duckdb.connect()
    register(con, "certs", lake, "certs", live_files(lake, "certs", slug=slug))
    return con.sql("select index, leaf_hash from certs order by index").fetchall()


def test_compaction_dag_merges_closed_days(airflow_db, ct_server, tmp_path, monkeypatch, lake_location):
    """On a local folder and on a local S3 server alike."""
    from airflow.models import Variable

    log = ct_server.add_log("Local Compact Log", initial_size=40)
    configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0",
              CT_LAKE=lake_location)
    lake = Lake.open(lake_location)
    today = datetime.now(UTC).date()
    days = _past_lake(lake, log, today)
    Variable.set(f"ct_state__{log.slug}", json.dumps({"next_index": 40, "tree_size": 40, "first_index": 0}))
    before = _live_rows(lake, log.slug)
    assert [i for i, _ in before] == list(range(40))

    def live(day):
        return [f.name for f in live_files(lake, "certs", slug=log.slug, days=[day])]

    assert all(len(live(day)) == 4 for day in days)
    compact = load_dag_module("ct_maintenance").ct_compact
    assert compact.schedule == "@hourly" and compact.max_active_runs == 1, "one compaction per log at a time"
    # Newest committed day: days[4]; MMD 24 h closes days[0..2]. days_back 9 reaches days[1..].
    assert compact.test(run_conf={"days_back": 9}).state == "success"
    assert [len(live(day)) for day in days] == [4, 1, 1, 4, 4]
    assert _live_rows(lake, log.slug) == before, "same rows, each once"
    # (dag.test runs tasks in this process, where a run's conf sticks to the task's params.)
    assert compact.test(run_conf={"days_back": None}).state == "success"
    assert [len(live(day)) for day in days] == [1, 1, 1, 4, 4]
    assert live(days[0]) == [merged_file_name(0, 8, 1)]
    assert read_manifest(lake, layout.partition_dir(lake.root, "certs", log.slug, days[0])).absorbed == {
        range_file_name(s, s + 2) for s in range(0, 8, 2)}
    assert _live_rows(lake, log.slug) == before, "same rows, in index order, each once"
    assert compact.test(run_conf={"days_back": None}).state == "success", "idempotent"
    assert [len(live(day)) for day in days] == [1, 1, 1, 4, 4]
    assert live(days[0]) == [merged_file_name(0, 8, 1)]
    assert _live_rows(lake, log.slug) == before
    assert compact.test(run_conf={"log": "no_such_log"}).state == "failed", "an unknown log is an error"
