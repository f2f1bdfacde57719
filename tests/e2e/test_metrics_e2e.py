"""`/ct/metrics` on a real Airflow API server: `airflow standalone` (its own AIRFLOW_HOME, a
fresh database on the machine's PostgreSQL, the project's DAGs and plugins) over two local CT
logs, one tiled, started at the beginning so their first runs ingest every entry.

Anonymous: 401; a bad token: 403; a JWT from `/auth/token`: 200 and every series for each
log, the tree sizes and watermarks the ingest DAGs committed, the kinds. Scrape times are
printed. Everything started here is stopped on exit, also on failure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ctlib.testing.ctlog import LogServer
from tests.support.standalone import Standalone, metadata_database, start_standalone

pytestmark = pytest.mark.e2e

LOGS = {"E2E Metrics Classic": ("e2e_metrics_classic", "rfc6962", 40),
        "E2E Metrics Tiled": ("e2e_metrics_tiled", "tiled", 300)}
DAGS = {f"ct_ingest__{slug}" for slug, _, _ in LOGS.values()}
PER_LOG = ("ct_log_tree_size", "ct_log_next_index", "ct_log_freshness_lag_seconds", "ct_log_entries_total",
           "ct_log_errors_total", "ct_log_incidents_total", "ct_log_last_success_timestamp_seconds")
TOTALS = ("ct_alerts_total", "ct_watch_matches_total", "ct_enrichment_calls_total", "ct_enrichment_failures_total")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    with metadata_database("ct_e2e_metrics") as database, LogServer() as ct_server:
        for name, (_, kind, size) in LOGS.items():
            ct_server.add_log(name, tiled=kind == "tiled", initial_size=size)
        settings = {
            "CT_LOG_LIST": str(ct_server.write_log_list(tmp_path / "log_list.json")),
            "CT_KAFKA_CONN_ID": "",
            "CT_LAKE": str(tmp_path / "lake"),
            "CT_LOG_LIST_SNAPSHOT": str(tmp_path / "log_list_snapshot.json"),
            "CT_START_AT": "beginning",
            "CT_PARTIAL_TILE_WAIT": "0",
        }
        with start_standalone(tmp_path, database, settings, DAGS) as airflow:
            yield airflow


def scrape(airflow: Standalone, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{airflow.url}/ct/metrics", headers=headers, timeout=30)


def values(text: str) -> dict[tuple[str, str | None], float]:
    return {(s.name, s.labels.get("log")): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_metrics_on_the_api_server(standalone: Standalone) -> None:
    token = standalone.token()
    assert scrape(standalone, None).status_code == 401
    assert scrape(standalone, "not-a-jwt").status_code == 403
    for dag_id in sorted(DAGS):
        standalone.send("PATCH", f"dags/{dag_id}", token, {"is_paused": False})
        standalone.send("POST", f"dags/{dag_id}/dagRuns", token, {"logical_date": None})

    deadline = time.monotonic() + 300
    while True:
        answer = scrape(standalone, standalone.token())
        assert answer.status_code == 200, answer.text[:500]
        got = values(answer.text)
        if all(got.get(("ct_log_next_index", slug)) == size for slug, _, size in LOGS.values()):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"watermarks not at the logs' sizes within 300 s:\n{answer.text[:3000]}\n{standalone.tail()}")
        time.sleep(5)

    assert answer.headers["content-type"].startswith("text/plain")
    for slug, kind, size in LOGS.values():
        for name in PER_LOG:
            assert (name, slug) in got, (name, slug)
        assert f'kind="{kind}",log="{slug}"' in answer.text
        assert got[("ct_log_tree_size", slug)] == size
        assert got[("ct_log_entries_total", slug)] == size
        assert got[("ct_log_freshness_lag_seconds", slug)] == 0
        assert got[("ct_log_last_success_timestamp_seconds", slug)] > time.time() - 600
    for name in TOTALS:
        assert (name, None) in got, name

    times = []
    for _ in range(20):
        began = time.perf_counter()
        assert scrape(standalone, token).status_code == 200
        times.append((time.perf_counter() - began) * 1000)
        time.sleep(0.3)
    print(f"\n/ct/metrics on airflow standalone, 2 logs: p50 {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
