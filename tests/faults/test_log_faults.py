"""A CT log that misbehaves at the HTTP level, under real `dag.test()` runs: each fault
ends in a clean retry (the run succeeds) or a clear failure that leaves the watermark where
it was, and once the log behaves again the audit proves nothing was lost or doubled."""

from __future__ import annotations

import threading
import time

import pytest

from ctlib.testing.ctlog import Faults
from tests.support.airflow import configure, failure_lines, ingest_dag, run_dag, run_until_caught_up, state_of
from tests.support.audit import assert_audit_clean
from tests.support.memory import PeakRSS

pytestmark = pytest.mark.integration

# name -> (Faults, extra settings, what the client logs when it meets the fault and retries)
RETRIED = {
    "http_5xx": (Faults(cap=40, http_5xx_every=3), {}, "failed (HTTP 50"),
    "truncated_json": (Faults(cap=40, invalid_json_every=3), {}, "answered invalid JSON"),
    "connection_reset": (Faults(cap=40, reset_every=3), {}, "Connection reset by peer"),
    # every 3rd request answers after 1.2 s, over the 0.5 s read timeout: a ReadTimeout, retried
    "timeout": (Faults(cap=40, delay=1.2, delay_every=3), {"CT_HTTP_TIMEOUT": "0.5"}, "failed (ReadTimeout"),
    # the log answers at most 13 entries a request: the client asks again for the rest
    "short_answers": (Faults(cap=13), {}, ""),
}


@pytest.mark.parametrize("fault", list(RETRIED))
def test_transient_faults_are_retried_and_nothing_is_lost(fault, airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    faults, settings, retried = RETRIED[fault]
    log = ct_server.add_log(f"Local Fault {fault}", initial_size=150, faults=faults)
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0", **settings)
    dag = ingest_dag(log.slug)
    output = run_until_caught_up(dag, capfd, log)
    assert retried in output, f"the client met the {fault} fault and retried: {log.counts()}"
    counts = log.counts()
    if fault == "short_answers":
        assert counts.by_endpoint["get-entries"] >= 150 // 13
    state = state_of(log.slug)
    assert (state["next_index"], state["entries_ingested"]) == (150, 150)
    assert_audit_clean(lake, log.slug)
    if fault == "http_5xx":  # the audit's "every log with state" path reads the metadata database
        from ctlib.ingest.state import MappingStateStore

        stored = MappingStateStore.from_airflow_db().load(log.slug)
        assert (stored.first_index, stored.next_index) == (0, 150)


def test_body_limit_setting():
    from ctlib.http import HttpPolicy
    from ctlib.settings import Settings

    assert HttpPolicy.from_settings(Settings.from_env({})).max_body_bytes == 64 * 1024 * 1024
    assert HttpPolicy.from_settings(Settings.from_env({"CT_HTTP_MAX_BODY_MB": "16"})).max_body_bytes == 16 << 20


def test_429_storm_with_retry_after_is_waited_out(airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    """Every request throttled (Retry-After: 1) until 5 have been, then the storm passes:
    the client waits at least what the log asks each time, and the run succeeds."""
    log = ct_server.add_log("Local Fault 429 Storm", initial_size=120, faults=Faults(cap=40))
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0")
    dag = ingest_dag(log.slug)
    log.faults.retry_after = 1
    log.faults.http_429_every = 1
    done = threading.Event()

    def calm_after_five() -> None:
        while not done.wait(0.01):
            if log.counts().throttled >= 5:
                log.faults.http_429_every = 0
                return

    watcher = threading.Thread(target=calm_after_five, daemon=True)
    watcher.start()
    began = time.monotonic()
    try:
        run_until_caught_up(dag, capfd, log)
    finally:
        done.set()
        watcher.join()
    took = time.monotonic() - began
    assert log.counts().throttled == 5
    # the first five requests are plan's get-sth, one after another: four Retry-After waits
    assert took >= 4, f"the run took {took:.1f}s: Retry-After was not honoured"
    assert state_of(log.slug)["next_index"] == 120
    assert_audit_clean(lake, log.slug)


def _fail_then_recover(log, dag, capfd, lake, expected: list[str]):
    """A run fails with an error naming `expected`, the watermark stays; once the fault is
    cleared (by the caller's `log.faults = ...` after), the next run catches up."""
    before = state_of(log.slug)
    state, output = run_dag(dag, capfd)
    assert state == "failed"
    for text in expected:
        assert text in output, f"{text!r} not in the failed run's output:\n{failure_lines(output)}"
    assert state_of(log.slug) == before, "the watermark did not move"
    return before


def _first_run(ct_server, tmp_path, monkeypatch, capfd, name: str, **settings):
    log = ct_server.add_log(name, initial_size=60, faults=Faults(cap=40))
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0", **settings)
    dag = ingest_dag(log.slug)
    run_until_caught_up(dag, capfd, log)
    log.grow(100)
    log.publish()
    return log, lake, dag


def test_more_entries_than_asked_fails_clearly_and_resumes(airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    log, lake, dag = _first_run(ct_server, tmp_path, monkeypatch, capfd, "Local Fault Extra Entries")
    log.faults.extra_entries = 5
    _fail_then_recover(log, dag, capfd, lake, [f"{log.slug}: get-entries [", "more than the"])
    log.faults.extra_entries = 0
    run_until_caught_up(dag, capfd, log)
    assert_audit_clean(lake, log.slug)


def test_invalid_base64_names_the_log_and_index_and_keeps_the_watermark(airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    log, lake, dag = _first_run(ct_server, tmp_path, monkeypatch, capfd, "Local Fault Bad Base64")
    log.faults.bad_base64 = frozenset({77})
    _fail_then_recover(log, dag, capfd, lake, [f"{log.slug}: index 77: leaf_input is not valid base64"])
    log.faults.bad_base64 = frozenset()
    run_until_caught_up(dag, capfd, log)
    assert state_of(log.slug)["next_index"] == 160
    assert_audit_clean(lake, log.slug)


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
def test_huge_answer_is_refused_with_bounded_memory(chunked, airflow_db, ct_server, tmp_path, monkeypatch, capfd):
    """A 100 MB get-entries answer. Announced (Content-Length): refused before reading, at
    the default 64 MiB limit. Not announced (chunked): read up to CT_HTTP_MAX_BODY_MB (16
    here) and refused there. Either way this process grows far less than 100 MB."""
    settings = {"CT_HTTP_MAX_BODY_MB": "16"} if chunked else {}
    log, lake, dag = _first_run(ct_server, tmp_path, monkeypatch, capfd,
                                f"Local Fault Huge {'Chunked' if chunked else 'Declared'}", **settings)
    log.faults.huge_body = 100 * 1024 * 1024
    log.faults.huge_body_chunked = chunked
    limit = 16 * 1024 * 1024 if chunked else 64 * 1024 * 1024
    expected = f"exceeds the {limit}-byte limit" if chunked else f"answered {100 * 1024 * 1024} bytes, over the {limit}-byte limit"
    with PeakRSS() as memory:
        _fail_then_recover(log, dag, capfd, lake, [log.slug, expected])
    with capfd.disabled():
        print(f"\n{log.slug}: peak RSS growth during the refused run: {memory.growth_mb:.1f} MB")
    assert log.counts().outcomes.get("huge", 0) >= 1
    assert memory.growth_mb < 48, f"memory grew by {memory.growth_mb:.0f} MB"
    log.faults.huge_body = 0
    run_until_caught_up(dag, capfd, log)
    assert_audit_clean(lake, log.slug)
