"""A log that throttles its readers (Faults.max_rps: over the rate, 429 with Retry-After),
read through real `dag.test()` runs. With the pipeline's limit for the log set to the log's
own figure (CT_LOG_LIMITS), the log never has to say 429 and the read takes as long as the
rate demands; without it, the log says 429 and the run still completes by honouring
Retry-After. Either way the audit proves every entry is in the lake exactly once."""

from __future__ import annotations

import time

import pytest

from ctlib.testing.ctlog import Faults
from tests.support.airflow import configure, ingest_dag, run_until_caught_up, state_of
from tests.support.audit import assert_audit_clean

pytestmark = pytest.mark.integration

RPS = 5.0  # the log's limit, and the pipeline's for it
CAP = 32  # entries per get-entries, as a Google log
SIZE = 960  # run 1: two mapped fetch tasks of 320 (10 requests each); run 2: 320 inline in plan


def _serve(ct_server, tmp_path, monkeypatch, name: str, client_rps: float):
    log = ct_server.add_log(name, initial_size=SIZE, faults=Faults(cap=CAP, max_rps=RPS, retry_after=1))
    own = tmp_path / "log_limits.yaml"
    own.write_text(f"logs:\n  {log.slug}: {{requests_per_second: {client_rps}, entries_per_request: {CAP}}}\n")
    lake = configure(
        monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0",
        CT_LOG_LIMITS=str(own), CT_GET_ENTRIES_BATCH="1024", CT_ENTRIES_PER_TASK="320",
        CT_ENTRIES_PER_RUN="640", CT_INLINE_ENTRIES="320", CT_FETCH_PARALLELISM="2",
        CT_CONTACT="ct-airflow-tests@example.org",
    )
    return log, lake


class Sessions:
    """Every HttpSession made in this process while installed (dag.test runs tasks here)."""

    def __init__(self, monkeypatch) -> None:
        from ctlib import http

        self.made: list = []
        original = http.HttpSession.__init__

        def record(session, *args, **kwargs):
            original(session, *args, **kwargs)
            self.made.append(session)

        monkeypatch.setattr(http.HttpSession, "__init__", record)

    def used(self) -> list:
        return [s for s in self.made if s.requests_made]


def test_reading_at_the_logs_own_rate_is_never_throttled(airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    log, lake = _serve(ct_server, tmp_path, monkeypatch, "Local Polite Reader", RPS)
    sessions = Sessions(monkeypatch)
    dag = ingest_dag(log.slug)
    began = time.monotonic()
    output = run_until_caught_up(dag, capfd, log)
    took = time.monotonic() - began
    counts = log.counts()
    used = sessions.used()
    requests = counts.requests
    burst = len(used)  # each session may send its first request at once
    paced = sum((s.requests_made - 1) / s.bucket.rate for s in used)
    with capfd.disabled():
        print(f"\n{log.slug}: {requests} requests ({dict(counts.by_endpoint)}) in {took:.1f}s by "
              f"{len(used)} sessions at {sorted({s.bucket.rate for s in used})} req/s; "
              f"{counts.throttled} answered 429; lower bounds {(requests - burst) / RPS:.1f}s (all at "
              f"{RPS:g}/s), {paced:.1f}s (each session at its own rate)")
    assert f"{log.slug}: limits {CAP} entries/request, {RPS:g} req/s (2.5 per fetch task" in output
    assert counts.throttled == 0, f"the log had to throttle the pipeline: {counts}"
    assert counts.requests == counts.ok == sum(s.requests_made for s in used)
    # Every get-entries asked at most the cap: 960 entries took at least 30 of them.
    assert counts.by_endpoint["get-entries"] == SIZE // CAP
    assert {s.bucket.rate for s in used} == {RPS, RPS / 2}  # plan alone; mapped fetch tasks share
    assert took >= (requests - burst) / RPS
    assert took >= paced
    assert state_of(log.slug)["next_index"] == SIZE
    assert_audit_clean(lake, log.slug)


def test_without_the_client_limit_the_log_throttles_and_the_run_still_completes(
        airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    log, lake = _serve(ct_server, tmp_path, monkeypatch, "Local Impolite Reader", 0)
    dag = ingest_dag(log.slug)
    output = run_until_caught_up(dag, capfd, log)
    counts = log.counts()
    with capfd.disabled():
        print(f"\n{log.slug}: {counts.requests} requests, {counts.throttled} answered 429")
    assert counts.throttled > 0, f"an unlimited reader was never throttled: {counts}"
    assert "failed (HTTP 429); retry" in output
    assert f"{log.slug}: limits {CAP} entries/request, no request-rate limit" in output
    assert state_of(log.slug)["next_index"] == SIZE
    assert_audit_clean(lake, log.slug)
