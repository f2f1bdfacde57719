"""Backfill by index range: history before where ingestion began, verified against the signed
root, written under the same deterministic names, without touching the watermark."""

from __future__ import annotations

import pytest

from ctlib.testing.ctlog import Faults, LogServer
from tests.support.airflow import configure, load_dag_module, state_of
from tests.support.lake import incidents, lake_rows

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("tiled", [False, True], ids=["rfc6962", "tiled"])
def test_backfill_history_exactly_once_and_verified(tiled, airflow_db, tmp_path, monkeypatch):
    with LogServer() as ct_server:
        log = ct_server.add_log(f"Local Backfill {'Tiled' if tiled else 'Classic'}", initial_size=9000,
                                tiled=tiled, faults=Faults(cap=1000))
        lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_START_AT="latest",
                         CT_TASK_RETRIES="0", CT_GET_ENTRIES_BATCH="1000")
        dag = getattr(load_dag_module("ct_ingest"), f"ct_ingest__{log.slug}")
        assert dag.test().state == "success"
        state = state_of(log.slug)
        assert (state["first_index"], state["next_index"]) == (9000, 9000)

        assert dag.test(run_conf={"start_index": 100, "end_index": 8500}).state == "success"
        assert state_of(log.slug) == state, "a backfill leaves the watermark alone"
        assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(9000)), "rounded out to whole cells"
        names = sorted(p.name for p in (lake / "certs").rglob("*.parquet"))

        assert dag.test(run_conf={"start_index": 5000, "end_index": 6000}).state == "success"
        assert sorted(p.name for p in (lake / "certs").rglob("*.parquet")) == names, "same cell, same file"
        assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(9000))

        assert dag.test(run_conf={"start_index": 8000, "end_index": 9500}).state == "failed"
        assert dag.test(run_conf={"start_index": 10}).state == "failed"
        assert state_of(log.slug) == state

        # A log that serves a tampered entry in the backfilled range: incident, nothing kept.
        for path in (lake / "certs").rglob("*.parquet"):
            path.unlink()
        log.faults.tampered = frozenset({4321})
        assert dag.test(run_conf={"start_index": 0, "end_index": 8192}).state == "failed"
        assert [k for k, _ in incidents(lake, log.slug)] == ["root_mismatch"]
        assert lake_rows(lake, "certs", log.slug) == []
        assert state_of(log.slug) == state
