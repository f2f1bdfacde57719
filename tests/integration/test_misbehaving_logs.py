"""A log that lies: each misbehaviour gives a failed run, an incident row in the lake, an
unchanged watermark and no unverified Parquet; once the log is fixed, ingest resumes."""

from __future__ import annotations

import pytest

from ctlib.testing.ctlog import Faults, LogServer
from tests.support.airflow import configure, load_dag_module, state_of
from tests.support.lake import incidents, lake_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def ct_server():
    with LogServer() as server:
        yield server


MODES = pytest.mark.parametrize("tiled", [False, True], ids=["rfc6962", "tiled"])


def setup_log(ct_server, tmp_path, monkeypatch, name: str, tiled: bool, size: int = 90):
    log = ct_server.add_log(f"{name} {'Tiled' if tiled else 'Classic'}", initial_size=size, tiled=tiled,
                            faults=Faults(cap=40))
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0")
    dag = getattr(load_dag_module("ct_ingest"), f"ct_ingest__{log.slug}")
    return log, lake, dag


@MODES
def test_tampered_entry_fails_the_run_and_resumes_once_fixed(tiled, airflow_db, ct_server, tmp_path, monkeypatch):
    log, lake, dag = setup_log(ct_server, tmp_path, monkeypatch, "Local Tampered", tiled)
    assert dag.test().state == "success"
    before = state_of(log.slug)
    assert before["next_index"] == 90

    log.grow(60)
    log.publish()
    log.faults.tampered = frozenset({120})
    assert dag.test().state == "failed"
    assert state_of(log.slug) == before, "the watermark does not move past unverified entries"
    (kind, details), = incidents(lake, log.slug)
    assert kind == "root_mismatch" and "[90, 150)" in details and log.slug in details
    assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(90)), "no unverified rows stay"

    log.faults.tampered = frozenset()
    assert dag.test().state == "success"
    assert state_of(log.slug)["next_index"] == 150
    assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(150))


@MODES
@pytest.mark.parametrize(
    "knob, kind",
    [("bad_signature", "bad_signature"), ("rollback_to", "rollback"), ("fork", "fork")],
)
def test_lying_tree_heads_fail_the_run_and_resume_once_fixed(knob, kind, tiled, airflow_db, ct_server, tmp_path, monkeypatch):
    log, lake, dag = setup_log(ct_server, tmp_path, monkeypatch, f"Local {kind}", tiled)
    assert dag.test().state == "success"
    before = state_of(log.slug)
    files_before = sorted(p.name for p in (lake / "certs").rglob("*.parquet"))

    if knob == "bad_signature":
        log.grow(20)
        log.publish()
        log.faults.bad_signature = True
    elif knob == "rollback_to":
        log.faults.rollback_to = 70
    else:
        log.faults.fork_at = 60
        log.faults.fork = True
    assert dag.test().state == "failed"
    assert state_of(log.slug) == before
    assert [k for k, _ in incidents(lake, log.slug)] == [kind]
    assert sorted(p.name for p in (lake / "certs").rglob("*.parquet")) == files_before

    setattr(log.faults, knob, None if knob == "rollback_to" else False)
    log.grow(25)
    log.publish()
    assert dag.test().state == "success"
    size = log.sth.tree_size
    assert state_of(log.slug)["next_index"] == size
    assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(size))
