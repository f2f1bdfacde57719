"""`/ct/metrics` on Airflow's own API app (made in this process by
`airflow.api_fastapi.app.create_app`, so the `ct_monitor` plugin is loaded and mounted as the
API server does it) over the tests' metadata database: states written as Variables (one
encrypted with a Fernet key), a health file in a temporary lake, per-run counters.

Every series for each log; 401 without a token, 403 with a bad one, 200 with a JWT from
`POST /auth/token`; CT_METRICS_OPEN opens `/metrics` only. And the scrape-time figure: 40
logs' states, `log_snapshots` + exposition, printed (speed is asserted nowhere: see bench/).
"""

from __future__ import annotations

import json
import secrets
import math
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ctlib.airflow.monitor import snapshot
from ctlib.ct.loglist import CTLog, load_log_list
from ctlib.ingest.state import LogState, state_key
from ctlib.lake.files import Lake
from ctlib.ops import counters
from ctlib.ops.health import Observation, Thresholds, assess, write_health
from tests.support.loglist import SIGNED_LIST

pytestmark = pytest.mark.integration

PER_LOG = ("ct_log_tree_size", "ct_log_next_index", "ct_log_freshness_lag_seconds", "ct_log_entries_total",
           "ct_log_errors_total", "ct_log_incidents_total", "ct_log_last_success_timestamp_seconds")
TOTALS = ("ct_alerts_total", "ct_watch_matches_total", "ct_enrichment_calls_total", "ct_enrichment_failures_total")


def write_list(path: Path, count: int, *, tiled: int) -> list[CTLog]:
    """A log list of the signed list's first `count` monitored logs, `tiled` of them tiled."""
    monitored = load_log_list(SIGNED_LIST).monitored()
    chosen = ([c for c in monitored if c.kind == "rfc6962"][:count - tiled]
              + [c for c in monitored if c.kind == "static"][:tiled])
    ids = {c.log_id for c in chosen}
    data = json.loads(SIGNED_LIST.read_text())
    for operator in data["operators"]:
        operator["logs"] = [entry for entry in operator.get("logs", []) if entry["log_id"] in ids]
        operator["tiled_logs"] = [entry for entry in operator.get("tiled_logs", []) if entry["log_id"] in ids]
    path.write_text(json.dumps(data))
    logs = load_log_list(path).monitored()
    assert len(logs) == count
    return logs


def set_variables(values: dict[str, str]) -> None:
    from airflow.models import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import delete, or_

    with create_session() as session:  # this test's keys only, and every counters document
        session.execute(delete(Variable).where(or_(Variable.key.like(f"{counters.COUNTERS_PREFIX}%"),
                                                   Variable.key.in_(list(values)))))
    for key, value in values.items():
        Variable.set(key, value)


@pytest.fixture(scope="module")
def api(airflow_db):
    """Airflow's API app with the plugins (TestClient) and a JWT from its /auth/token."""
    from airflow.api_fastapi.app import create_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from fastapi.testclient import TestClient

    from airflow.configuration import conf

    # The API signs its JWTs with this; in a full test run nothing else may have set one.
    if not conf.get("api_auth", "jwt_secret", fallback=None):
        conf.set("api_auth", "jwt_secret", secrets.token_urlsafe(32))
    app = create_app("all")
    with TestClient(app) as client:
        passwords = json.loads(Path(SimpleAuthManager.get_generated_password_file()).read_text())
        answer = client.post("/auth/token", json={"username": "admin", "password": passwords["admin"]})
        assert answer.status_code == 201, answer.text
        yield client, answer.json()["access_token"]


@pytest.fixture
def three_logs(tmp_path, monkeypatch):
    """Three logs (one tiled): one caught up, one behind with a health check of its
    backlog, one not started; their states (one Fernet-encrypted), a health file, counters."""
    import airflow.models.variable as variable_module
    from airflow.models.crypto import _RealFernet
    from cryptography.fernet import Fernet, MultiFernet

    fernet = _RealFernet(MultiFernet([Fernet(Fernet.generate_key())]))
    monkeypatch.setattr(variable_module, "get_fernet", lambda: fernet)
    logs = write_list(tmp_path / "log_list.json", 3, tiled=1)
    monkeypatch.setenv("CT_LOG_LIST", str(tmp_path / "log_list.json"))
    monkeypatch.setenv("CT_LAKE", str(tmp_path / "lake"))
    monkeypatch.delenv("CT_METRICS_OPEN", raising=False)
    now = datetime.now(UTC).replace(microsecond=0)
    caught_up, behind, idle = logs
    states = {
        caught_up.slug: LogState(next_index=500, tree_size=500, first_index=0, entries_ingested=500,
                                 errors_ingested=2, updated_at=(now - timedelta(seconds=40)).isoformat()),
        behind.slug: LogState(next_index=1000, tree_size=1200, first_index=100, entries_ingested=900,
                              updated_at=(now - timedelta(seconds=20)).isoformat()),
    }
    set_variables({state_key(slug): json.dumps(s.to_json()) for slug, s in states.items()}
                  | {counters.counters_key("ct_score"): json.dumps(counters.record(None, "r1", {"alerts": 5})),
                     counters.counters_key("ct_watch"): json.dumps(counters.record(None, "r1", {"watch_matches": 3})),
                     counters.counters_key("ct_enrich", 0): json.dumps(counters.record(
                         None, "r1", counters.enrichment_counts(["ok", "rate_limited", "skipped"])))})
    checked_at = now - timedelta(seconds=60)
    observations = [
        Observation(caught_up.slug, caught_up.log_id, checked_at, next_index=500, tree_size=500),
        Observation(behind.slug, behind.log_id, checked_at, next_index=1000, tree_size=1300,
                    oldest_pending_at=now - timedelta(seconds=300), incidents=0),
        Observation(idle.slug, idle.log_id, checked_at, incidents=2),
    ]
    write_health(Lake.open(str(tmp_path / "lake")), [assess(o, Thresholds(900, 1800)) for o in observations],
                 checked_at)
    snapshot.clear_cache()
    yield logs, now
    snapshot.clear_cache()


def scrape(client, token: str | None = None, **headers: str):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.get("/ct/metrics", headers=headers)


def series(text: str) -> dict[tuple[str, str | None], float]:
    return {(s.name, s.labels.get("log")): s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_every_series_for_each_log(api, three_logs):
    from airflow.models import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    client, token = api
    (caught_up, behind, idle), now = three_logs
    with create_session() as session:  # stored encrypted: the monitor decrypts as Airflow does
        row = session.scalars(select(Variable).where(Variable.key == state_key(caught_up.slug))).one()
        assert row.is_encrypted and "next_index" not in row._val
    answer = scrape(client, token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    got = series(answer.text)
    for ctlog in (caught_up, behind, idle):
        for name in PER_LOG:
            assert (name, ctlog.slug) in got, (name, ctlog.slug)
    assert f'kind="tiled",log="{idle.slug}"' in answer.text
    assert f'kind="rfc6962",log="{caught_up.slug}"' in answer.text
    for name in TOTALS:
        assert (name, None) in got, name

    assert got[("ct_log_tree_size", caught_up.slug)] == 500
    assert got[("ct_log_next_index", caught_up.slug)] == 500
    assert got[("ct_log_freshness_lag_seconds", caught_up.slug)] == 0
    assert got[("ct_log_entries_total", caught_up.slug)] == 500
    assert got[("ct_log_errors_total", caught_up.slug)] == 2
    assert got[("ct_log_last_success_timestamp_seconds", caught_up.slug)] == (now - timedelta(seconds=40)).timestamp()

    assert got[("ct_log_tree_size", behind.slug)] == 1300  # the health check saw a newer tree head
    assert got[("ct_log_backlog_entries", behind.slug)] == 300
    assert 300 <= got[("ct_log_freshness_lag_seconds", behind.slug)] < 360  # the pending entry, aged
    assert got[("ct_log_entries_total", behind.slug)] == 900

    assert math.isnan(got[("ct_log_tree_size", idle.slug)])  # not started: unknown, still exposed
    assert got[("ct_log_incidents_total", idle.slug)] == 2
    status = {s.labels["status"]: s.value for f in text_string_to_metric_families(answer.text)
              for s in f.samples if s.name == "ct_log_status" and s.labels["log"] == idle.slug}
    assert status == {"ok": 0, "behind": 0, "stalled": 0, "failing": 0, "not_started": 1}

    assert got[("ct_alerts_total", None)] == 5
    assert got[("ct_watch_matches_total", None)] == 3
    assert got[("ct_enrichment_calls_total", None)] == 2
    assert got[("ct_enrichment_failures_total", None)] == 1
    print(f"\n/ct/metrics for 3 logs ({len(answer.content)} bytes):\n{answer.text}")


def test_protected_like_the_rest_of_the_api(api, three_logs):
    client, token = api
    assert scrape(client).status_code == 401
    assert scrape(client, "not-a-jwt").status_code == 403
    assert scrape(client, token).status_code == 200
    # the UI's session cookie is accepted too
    client.cookies.set("_token", token)
    try:
        assert scrape(client).status_code == 200
    finally:
        client.cookies.clear()


def test_metrics_open_opens_metrics_only(api, three_logs, monkeypatch):
    from fastapi.testclient import TestClient

    from ctlib.airflow.monitor.app import create_app
    from ctlib.settings import Settings

    _client, token = api  # Airflow's app initialised the auth manager the routes use
    monkeypatch.setenv("CT_METRICS_OPEN", "true")
    client = TestClient(create_app(Settings.from_env()))
    assert client.get("/metrics").status_code == 200
    try:
        import ctlib.airflow.monitor.page  # noqa: F401  (the page, when it is there)
    except ImportError:
        return
    assert client.get("/api/logs").status_code == 401
    assert client.get("/api/logs", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_scrape_time_of_40_logs(api, tmp_path, monkeypatch):
    """The figure for the README: 40 logs' states and a health file; each scrape computed
    afresh (cache cleared), through Airflow's app with a token. Printed, not asserted."""
    client, token = api
    logs = write_list(tmp_path / "log_list.json", 40, tiled=14)
    monkeypatch.setenv("CT_LOG_LIST", str(tmp_path / "log_list.json"))
    monkeypatch.setenv("CT_LAKE", str(tmp_path / "lake"))
    now = datetime.now(UTC)
    set_variables({state_key(c.slug): json.dumps(LogState(next_index=10_000 * i, tree_size=10_000 * i + 50,
                                                           first_index=0, entries_ingested=10_000 * i).to_json())
                   for i, c in enumerate(logs, 1)})
    observations = [Observation(c.slug, c.log_id, now, next_index=10_000 * i, tree_size=10_000 * i + 80,
                                oldest_pending_at=now - timedelta(seconds=30)) for i, c in enumerate(logs, 1)]
    write_health(Lake.open(str(tmp_path / "lake")), [assess(o, Thresholds(900, 1800)) for o in observations], now)
    snapshot.clear_cache()
    assert scrape(client, token).status_code == 200  # warm: imports, the first log-list parse

    def timed(fn, runs: int = 30) -> list[float]:
        out = []
        for _ in range(runs):
            snapshot.clear_cache()
            began = time.perf_counter()
            fn()
            out.append((time.perf_counter() - began) * 1000)
        return sorted(out)

    from ctlib.airflow.monitor.metrics import exposition

    compute = timed(lambda: exposition(snapshot.log_snapshots(), snapshot.totals()))
    http = timed(lambda: scrape(client, token))
    began = time.perf_counter()
    for _ in range(30):
        scrape(client, token)
    cached = (time.perf_counter() - began) * 1000 / 30
    body = scrape(client, token).text
    assert all((name, c.slug) in series(body) for c in logs for name in PER_LOG)
    print(f"\n40 logs: log_snapshots + exposition p50 {statistics.median(compute):.1f} ms, max {compute[-1]:.1f} ms;"
          f" GET /ct/metrics with a JWT (uncached) p50 {statistics.median(http):.1f} ms, max {http[-1]:.1f} ms;"
          f" cached {cached:.1f} ms; {len(body)} bytes")



def test_downstream_runs_record_the_totals(airflow_db, tmp_path, monkeypatch):
    """ct_score, ct_watch and ct_enrich (dag.test, Variables through the Task SDK) record what
    they wrote: the totals equal the lake's alerts and watch_matches rows and the look-ups
    made; a later run that finds nothing new adds nothing."""
    import duckdb
    from airflow.models.pool import Pool

    from ctlib.testing.ctlog import LogServer
    from ctlib.testing.enrichment_servers import FakePassiveTotal, FakeThreatStream
    from tests.support.airflow import configure, load_dag_module

    Pool.create_or_update_pool("ct_enrichment", 2, "threat-intel API calls", False)
    set_variables({})
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(".watched-corp.example\n")
    with LogServer() as ct_server, \
            FakePassiveTotal({"analyst@example.com": "pt-secret"}, synthesize=True) as pt, \
            FakeThreatStream({"analyst@example.com": "ts-key"}, synthesize=True) as ts:
        log = ct_server.add_log("Local Counters Log", initial_size=20)
        for names in (["paypal.com.account-verify-login.xyz"], ["appleid.apple.com.signin-verify.top"],
                      ["www.watched-corp.example"], ["mail.watched-corp.example"]):
            log.submit(names)
        log.grow(10)
        log.publish()
        lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_WATCHLIST=str(watchlist))
        for env in (pt.airflow_conn_env(), ts.airflow_conn_env()):
            for name, value in env.items():
                monkeypatch.setenv(name, value)

        assert load_dag_module("ct_ingest").ct_ingest__local_counters_log.test().state == "success"
        # Each downstream DAG works from its own watermark: a run takes whatever is committed.
        assert load_dag_module("ct_score").ct_score.test().state == "success"
        watch = load_dag_module("ct_watch").ct_watch
        assert watch.test().state == "success"
        assert load_dag_module("ct_enrich").ct_enrich.test().state == "success"

        def count(sql: str) -> int:
            return duckdb.sql(sql).fetchall()[0][0]

        alerts = count(f"select count(*) from read_parquet('{lake}/alerts/**/*.parquet')")
        matches = count(f"select count(*) from read_parquet('{lake}/watch_matches/**/*.parquet')")
        enriched = count(f"select count(*) from read_parquet('{lake}/enrichment/**/*.parquet')")
        assert alerts >= 2 and matches == 2 and enriched >= 1
        expected = {"alerts": alerts, "watch_matches": matches, "enrichment_calls": 2 * enriched,
                    "enrichment_failures": 0}
        assert snapshot.totals(cached=False) == expected

        # Another ct_watch run, with nothing new committed, adds nothing.
        assert watch.test().state == "success"
        assert snapshot.totals(cached=False) == expected


def test_the_api_server_warms_the_app_and_a_snapshot_before_any_request(airflow_db, three_logs, monkeypatch):
    """In the API server (AIRFLOW_API_APPS set, as `airflow api-server` sets it) the plugin's
    app and a first snapshot are made in a thread, so no scrape pays for them; anywhere else
    (task processes) nothing is made until a request."""
    from ctlib.airflow.monitor import app as monitor_app

    monkeypatch.setattr(monitor_app, "WARM_UP_DELAY", 0.0)
    monkeypatch.delenv("AIRFLOW_API_APPS", raising=False)
    idle = monitor_app.LazyApp()
    monkeypatch.setenv("AIRFLOW_API_APPS", "all")
    snapshot.clear_cache()
    warmed = monitor_app.LazyApp()
    deadline = time.monotonic() + 30
    while warmed._app is None or not snapshot._SNAPSHOTS:
        assert time.monotonic() < deadline, "no warm-up within 30 s"
        time.sleep(0.05)
    assert idle._app is None
    assert [s.slug for s in snapshot.log_snapshots()] == [log.slug for log in three_logs[0]]
