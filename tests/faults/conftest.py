"""Fault tests: each breaks one thing under a real `dag.test()` run (a local CT log over
HTTP, a real tansu broker where Kafka matters) and ends with `ctlib.ops.audit` proving the lake
holds every committed index exactly once (and Kafka every certificate, where it is checked).

Importing tests.integration.conftest sets up the throw-away Airflow home and database
before anything imports airflow; its `airflow_db` fixture is re-exported here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctlib.testing.ctlog import LogServer
from tests.integration.conftest import airflow_db, load_dag_module, run_dag  # noqa: F401 (re-exports)
from tests.integration.test_ingest_dag import configure, state_of  # noqa: F401 (re-exported helpers)

SLOW = os.environ.get("CT_SLOW_FAULTS", "").strip().lower() in {"1", "true", "yes", "on"}
"""CT_SLOW_FAULTS=1: the long variants (a Kafka outage of two minutes instead of ~25 s)."""


@pytest.fixture
def ct_server() -> Iterator[LogServer]:
    with LogServer() as server:
        yield server


def ingest_dag(slug: str):
    """The ingest DAG of `slug`, built from the environment as the test set it."""
    return getattr(load_dag_module("ct_ingest"), f"ct_ingest__{slug}")


def run_until_caught_up(dag, capfd, log, max_runs: int = 8) -> str:
    """Successful runs until the watermark reaches the log's published size; their output."""
    outputs = []
    for runs in range(1, max_runs + 1):
        state, output = run_dag(dag, capfd)
        outputs.append(output)
        assert state == "success", f"run {runs} ended {state}:\n{failure_lines(output)}"
        if state_of(log.slug)["next_index"] >= log.sth.tree_size:
            return "".join(outputs)
    raise AssertionError(f"{log.slug} not caught up after {max_runs} runs")


def failure_lines(output: str, limit: int = 20) -> str:
    """The error lines of a run's output (exceptions, 'failed'), for assertion messages."""
    keep = [line for line in output.splitlines() if "Error" in line or "failed" in line or "error" in line]
    return "\n".join(keep[-limit:])


def audit(*args: str) -> tuple[int, str]:
    """`python -m ctlib.audit ARGS` in this process (states from the test's Airflow Variables)."""
    from ctlib.ops.audit import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


def assert_audit_clean(lake: Path, slug: str, *extra: str) -> str:
    """The audit of `slug` exits 0: nothing lost, nothing doubled. Returns its table."""
    code, report = audit("--log", slug, "--lake", str(lake), *extra)
    print(report)
    assert code == 0, f"audit of {slug} found problems:\n{report}"
    return report


class PeakRSS:
    """The peak resident memory of this process above its level at start, sampled every 5 ms
    in a thread (ru_maxrss would keep an earlier, unrelated peak)."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.baseline = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / (1 << 20)
