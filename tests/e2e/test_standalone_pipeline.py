"""End to end with the real scheduler: the stack of `make demo` (ctlib.localsvc.run.Orchestrator:
tansu broker, local CT logs with planted phishing-style certificates and certificates for the
watched demo domain, fake enrichment APIs, the demo's webhook receiver, `airflow standalone`),
isolated in tmp_path with its own database and free ports, running until the whole chain
ingest -> score -> enrich, and ingest -> watch -> notify, has processed what the logs had
published shortly after start. Takes ~3 minutes (CT_SCHEDULE is every minute)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ctlib.lake import query
from ctlib.localsvc import free_port, port_accepts
from ctlib.localsvc.broker import consume_all
from ctlib.localsvc.postgres import scratch_database
from ctlib.localsvc.run import Orchestrator
from ctlib.testing.airflow_api import AirflowApi
from ctlib.ct.loglist import slugify
from ctlib.ingest.state import state_key
from tests.support.standalone import demo_environment

pytestmark = pytest.mark.e2e

DEADLINE = 360.0  # seconds from Airflow being up; a pass takes ~2-3 minutes
POLL = 10.0
FALSE_ALERT_SHARE = 0.02
PG = ("127.0.0.1", 5432)  # the local PostgreSQL service (trust auth, user postgres), if any


@pytest.fixture
def database_url() -> Iterator[str]:
    """A new, empty metadata database: on the local PostgreSQL service when it runs, else in
    an embedded PostgreSQL with a temporary data folder."""
    if port_accepts(PG[1], PG[0]):
        with scratch_database("ct_e2e", PG[0], PG[1]) as url:
            yield url
        return
    from ctlib.localsvc.postgres import EmbeddedPostgres

    folder = Path(tempfile.mkdtemp(prefix="ct-e2e-pg-"))
    folder.chmod(0o755)  # its system user must reach the data folder (tmp_path is 0700)
    pg = EmbeddedPostgres(folder / "pg", port=0)
    try:
        yield pg.ensure_running()
    finally:
        pg.stop()
        shutil.rmtree(folder, ignore_errors=True)


def published_size(log: dict) -> int:
    """The tree size a local log publishes now (get-sth, or a tiled log's checkpoint)."""
    if "submission_url" in log:
        with urllib.request.urlopen(f"{log['monitoring_url']}checkpoint", timeout=10) as answer:
            return int(answer.read().decode().split("\n")[1])
    with urllib.request.urlopen(f"{log['url']}ct/v1/get-sth", timeout=10) as answer:
        return int(json.load(answer)["tree_size"])


def pending(orch: Orchestrator, api: AirflowApi, logs: dict[str, dict], target: dict[str, int]) -> list[str]:
    """What is not there yet (empty: everything is); fails at once on a failed DAG run."""
    failed = api.get("dags/~/dagRuns", state="failed", limit=20).get("dag_runs", [])
    assert not failed, f"failed DAG runs: {[(r['dag_id'], r['dag_run_id']) for r in failed]}"

    watermarks = {}
    for slug in logs:
        value = api.get(f"variables/{state_key(slug)}").get("value")
        watermarks[slug] = json.loads(value)["next_index"] if value else 0
    behind = [f"{slug} at {watermarks[slug]} < {target[slug]}" for slug in logs if watermarks[slug] < target[slug]]
    if behind:
        return [f"watermarks behind what the logs published: {behind}"]

    con = query.connect(str(orch.lake))
    for slug, w in watermarks.items():
        rows = dict(con.execute("select index, count(*) from certs where log_slug = ? group by 1", [slug]).fetchall())
        assert all(n == 1 for n in rows.values()), f"{slug}: indexes stored more than once"
        assert set(range(w)) <= set(rows), f"{slug}: indexes below the watermark {w} missing from the lake"

    keys = {r.key.decode() for r in consume_all(orch.state["kafka"], "ct-certs", timeout=30)}
    for slug, w in watermarks.items():
        missing = [i for i in range(w) if f"{logs[slug]['log_id']}:{i}" not in keys]
        assert not missing, f"{slug}: no ct-certs message for indexes {missing[:10]}..."

    records = [json.loads(line) for line in orch.planted.read_text().splitlines() if line.strip()]
    all_planted = {name for p in records for name in p["names"]}
    planted = [p for p in records if p["kind"] == "phishing"]
    due = {name for p in planted if p["index"] < target[p["log"]] for name in p["names"]}
    assert due, "no planted certificate below the target sizes"
    todo = watched_pending(orch, con, [p for p in records if p["kind"] == "watched" and p["index"] < target[p["log"]]])
    if todo:
        return todo
    alerted = {n for (n,) in con.execute("select distinct name from alerts").fetchall()}
    if not due <= alerted:
        return [f"planted names not alerted yet: {sorted(due - alerted)[:5]}"]
    on_kafka = {r.json()["name"] for r in consume_all(orch.state["kafka"], "ct-alerts", timeout=30)}
    if not due <= on_kafka:
        return [f"planted names not on ct-alerts yet: {sorted(due - on_kafka)[:5]}"]
    domains = {d for (d,) in con.execute(
        "select distinct registered_domain from alerts where list_contains(?, name)", [sorted(due)]).fetchall()}  # fmt: skip
    enriched = {d for (d,) in con.execute("select distinct domain from enrichment").fetchall()}
    if not domains <= enriched:
        return [f"alerted domains not enriched yet: {sorted(domains - enriched)[:5]}"]

    # Ordinary certificates (no planted name) must not alert, up to FALSE_ALERT_SHARE.
    certs = con.execute(
        "select log_slug, index, bool_or(alert) from scores where not list_contains(?, name) group by 1, 2",
        [sorted(all_planted)],
    ).fetchall()  # fmt: skip
    false_alerts = sum(1 for *_, alert in certs if alert)
    assert len(certs) >= 50, f"only {len(certs)} ordinary certificates scored"
    assert false_alerts <= math.ceil(FALSE_ALERT_SHARE * len(certs)), f"{false_alerts} false alerts in {len(certs)}"
    return []


def watched_pending(orch: Orchestrator, con, watched: list[dict]) -> list[str]:
    """Every planted certificate for the demo's watched domain is in watch_matches, and each
    issuance there reached the demo's webhook receiver exactly once."""
    assert watched, "no certificate for the watched domain below the target sizes"
    rows = con.execute("select log_slug, index, dns_names, tbs_sha256 from certs").fetchall()
    tbs = {(slug, index): t for slug, index, _, t in rows}
    wanted = {tbs[(p["log"], p["index"])] for p in watched}
    matched = {t for (t,) in con.execute("select tbs_sha256 from watch_matches").fetchall()}
    if not wanted <= matched:
        return [f"watched certificates not in watch_matches yet: {len(wanted - matched)} of {len(wanted)}"]
    assert orch.webhook is not None
    keys = Counter(r.body["key"] for r in orch.webhook.accepted if r.body.get("kind") == "watch")
    assert all(n == 1 for n in keys.values()), f"issuances notified more than once: {keys}"
    if set(keys) != matched:
        return [f"watch matches not notified yet: {len(matched - set(keys))} of {len(matched)}"]
    return []


def test_standalone_pipeline(tmp_path: Path, database_url: str) -> None:
    env = demo_environment(tmp_path / "home", database_url)
    orch = Orchestrator(
        demo=True, ui_port=free_port(), run_dir=tmp_path / "run", env=env, lake=tmp_path / "lake",
        demo_logs=2, demo_tiled=1, demo_rate=2.0, phishing_every=10, watched_every=12,
        airflow_output=tmp_path / "airflow.log",
        # Every index from 0 must reach the lake: no history, ingested from the beginning
        # (make demo starts at the tip, leaving its 3 hours of history to a backfill).
        demo_history_hours=0, demo_start_at="beginning",
    )  # fmt: skip
    output = tmp_path / "airflow.log"
    started = time.monotonic()
    try:
        orch.start()
        assert orch.wait_until_up(180), "airflow standalone did not come up"
        assert orch.login is not None
        api = AirflowApi(orch.api_url(), orch.login)
        listed = json.loads(orch.log_list.read_text())["operators"][0]
        logs = {slugify(log["description"]): log for log in listed["logs"] + listed["tiled_logs"]}
        assert len(logs) == 2 and len(listed["tiled_logs"]) == 1
        target = {slug: published_size(log) for slug, log in logs.items()}
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                todo = pending(orch, api, logs, target)
            except duckdb.IOException as exc:  # a file replaced while being read
                todo = [f"lake: {exc}"]
            if not todo:
                break
            if time.monotonic() > deadline:
                tail = output.read_text(errors="replace")[-3000:] if output.exists() else ""
                runs = Counter((r["dag_id"], r["state"]) for r in api.get("dags/~/dagRuns", limit=200)["dag_runs"])
                pytest.fail(f"after {DEADLINE:.0f}s: {todo}\nDAG runs: {dict(runs)}\n--- airflow ---\n{tail}")
            time.sleep(POLL)
        print(f"pipeline complete {time.monotonic() - started:.0f}s after start; targets {target}")
    finally:
        orch.stop()
    assert orch.airflow is not None and orch.airflow.poll() is not None
