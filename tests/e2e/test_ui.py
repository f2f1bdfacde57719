"""The Airflow UI as an operator sees it: a real browser against a real `airflow standalone`.

The test starts its own `airflow standalone` (its own AIRFLOW_HOME under tmp_path, a fresh
database on the machine's PostgreSQL at 127.0.0.1:5432, a free UI port, the admin password
written into the simple auth manager's passwords file by `ctlib.localsvc.run`, the project's
DAGs built from a log list of two local CT logs, one of them tiled, Kafka off, DAGs paused),
waits until the UI answers and the DAGs are parsed, then:

- REST API (a JWT from /auth/token): every DAG has doc_md, tags and owner `ct-airflow`, and
  no DAG file has an import error;
- headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; `make test` installs
  it): logs in as admin, searches the DAG list for `ct_ingest__`, sees both per-log DAGs and
  nothing else, opens one, sees its owner, tags and docs, opens the trigger form, sees the
  backfill Params `start_index` and `end_index` with their descriptions (screenshot in
  tmp_path), fills them in and triggers (without unpausing): the run carries them as its conf.

Everything started here is stopped on exit, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from ctlib.localsvc import free_port, port_accepts
from ctlib.localsvc.postgres import scratch_database
from ctlib.localsvc.run import airflow_env, ensure_admin_password, stop_session, standalone_env
from ctlib.testing.ctlog import LogServer
from tests.paths import PROJECT_ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"  # Debian's package `chromium` (the Makefile's `chromium` target)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root, in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}  # the machine's, trust auth
CLASSIC_LOG = "E2E Classic Log"
TILED_LOG = "E2E Tiled Log"
INGEST_DAGS = ("ct_ingest__e2e_classic_log", "ct_ingest__e2e_tiled_log")
OTHER_DAGS = ("ct_score", "ct_enrich", "ct_loglist_refresh")
OWNER = "ct-airflow"
STARTUP_TIMEOUT = 150.0  # seconds until the UI answers and every DAG is parsed (2 busy cores)


@dataclass
class Standalone:
    url: str
    user: str
    password: str
    log: Path
    proc: subprocess.Popen

    def token(self) -> str:
        answer = requests.post(
            f"{self.url}/auth/token",
            json={"username": self.user, "password": self.password},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def api(self, path: str, token: str, **params) -> dict:
        answer = requests.get(
            f"{self.url}/api/v2/{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


@pytest.fixture
def metadata_database() -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL, dropped afterwards."""
    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database("ct_e2e_ui", PG["host"], PG["port"], PG["user"]))
        except psycopg.OperationalError as err:
            pytest.fail(f"this test needs the PostgreSQL server at {PG['host']}:{PG['port']} "
                        f"(user {PG['user']}, trust auth): {err}")  # fmt: skip
        yield url


@pytest.fixture
def standalone(tmp_path: Path, metadata_database: str) -> Iterator[Standalone]:
    with LogServer() as ct_server:
        ct_server.add_log(CLASSIC_LOG, initial_size=16)
        ct_server.add_log(TILED_LOG, tiled=True, initial_size=16)
        log_list = ct_server.write_log_list(tmp_path / "log_list.json")

        # Nothing of the test session's Airflow or ct-airflow settings (the integration
        # conftest sets a SQLite AIRFLOW_HOME) leaks into this standalone.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "_AIRFLOW", "CT_"))}  # fmt: skip
        env.update(
            AIRFLOW_HOME=str(tmp_path / "airflow_home"),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_database,
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",  # no ingest runs meanwhile
            CT_LOG_LIST=str(log_list),
            CT_KAFKA_CONN_ID="",
            CT_LAKE=str(tmp_path / "lake"),
            CT_LOG_LIST_SNAPSHOT=str(tmp_path / "log_list_snapshot.json"),
        )
        port = free_port()
        airflow_env(env)
        standalone_env(env, port)  # what `make run` sets, on this port
        Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
        login = ensure_admin_password(env)
        assert login is not None, "run.py did not set the admin password"
        log = tmp_path / "standalone.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), "standalone"],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own session: stop_session stops all of it
            )  # fmt: skip
        airflow = Standalone(f"http://127.0.0.1:{port}", login[0], login[1], log, proc)
        try:
            _wait_until_ready(airflow, port)
            yield airflow
        finally:
            stop_session(proc.pid, proc)
            proc.wait(timeout=30)


def _dag_files() -> set[str]:
    """dags/*.py that Airflow's safe mode parses (those mentioning both "airflow" and "dag")."""
    files = set()
    for path in (PROJECT_ROOT / "dags").glob("*.py"):
        text = path.read_text(errors="replace").lower()
        if "airflow" in text and "dag" in text:
            files.add(path.name)
    return files


def _wait_until_ready(airflow: Standalone, port: int) -> None:
    """Until the API gives a token, the expected DAGs are there and every DAG file of
    dags/ was parsed (it has a DAG or an import error in the database)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    files = _dag_files()
    seen: set[str] = set()
    parsed: set[str] = set()
    while True:
        if airflow.proc.poll() is not None:
            pytest.fail(f"airflow standalone exited ({airflow.proc.returncode}):\n{airflow.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"airflow standalone not ready within {STARTUP_TIMEOUT:.0f}s (DAGs seen: "
                        f"{sorted(seen)}; DAG files without a DAG or an import error: "
                        f"{sorted(files - parsed)}):\n{airflow.tail()}")  # fmt: skip
        if port_accepts(port):
            try:
                token = airflow.token()
                dags = airflow.api("dags", token, limit=100)["dags"]
                errors = airflow.api("importErrors", token, limit=100)["import_errors"]
            except requests.RequestException:
                pass
            else:
                seen = {dag["dag_id"] for dag in dags}
                parsed = {Path(d["relative_fileloc"] or "").name for d in dags}
                parsed |= {Path(e["filename"]).name for e in errors}
                if seen >= {*INGEST_DAGS, *OTHER_DAGS} and parsed >= files:
                    return
        time.sleep(2.0)


def test_every_dag_documented_tagged_owned_and_trigger_form_shows_backfill_params(
    standalone: Standalone, tmp_path: Path
) -> None:
    # -- REST API: doc_md, tags and owner of every DAG; no import errors ------------------
    token = standalone.token()
    errors = standalone.api("importErrors", token)
    assert errors["total_entries"] == 0, json.dumps(errors["import_errors"], indent=1)
    dags = standalone.api("dags", token, limit=100)["dags"]
    descriptions: dict[str, str] = {}  # of the backfill Params
    assert {dag["dag_id"] for dag in dags} >= {*INGEST_DAGS, *OTHER_DAGS}
    for dag in dags:  # every DAG the project has, whatever its id
        details = standalone.api(f"dags/{dag['dag_id']}/details", token)
        assert (details["doc_md"] or "").strip(), f"{dag['dag_id']} has no doc_md"
        assert details["tags"], f"{dag['dag_id']} has no tags"
        assert details["owners"] == [OWNER], f"{dag['dag_id']} owners: {details['owners']}"
        if dag["dag_id"] in INGEST_DAGS:
            params = details["params"]
            assert {"start_index", "end_index"} <= set(params), params
            for name in ("start_index", "end_index"):
                assert params[name]["description"], params[name]
                descriptions[name] = params[name]["description"]
    assert set(descriptions) == {"start_index", "end_index"}

    # -- the browser ------------------------------------------------------------------------
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
    )
    dag_id = INGEST_DAGS[1]  # the tiled log's
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            expect.set_options(timeout=30_000)

            # Log in: the UI sends an anonymous visitor to the simple auth manager's form.
            page.goto(f"{standalone.url}/")
            expect(page).to_have_url(re.compile(r"/auth/login"))
            page.get_by_label("Username").fill(standalone.user)
            page.get_by_label("Password").fill(standalone.password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_test_id("nav-dags-link")).to_be_visible()

            # The DAG list, searched for the per-log DAGs: both, and only those.
            page.get_by_test_id("nav-dags-link").click()
            expect(page).to_have_url(re.compile(r"/dags$"))
            page.get_by_test_id("search-dags").fill("ct_ingest__")
            for ingest in INGEST_DAGS:
                expect(page.get_by_role("link", name=ingest, exact=True)).to_be_visible()
            for other in OTHER_DAGS:
                expect(page.get_by_role("link", name=other, exact=True)).to_have_count(0)
            expect(page.locator('a[href*="/dags/"]').filter(has_text="ct_")).to_have_count(
                len(INGEST_DAGS)
            )
            page.screenshot(path=tmp_path / "dag_list.png")

            # One DAG's page: owner and tags in its header, its doc_md behind "Dag Docs".
            page.get_by_role("link", name=dag_id, exact=True).click()
            expect(page).to_have_url(re.compile(rf"/dags/{dag_id}$"))
            expect(page.get_by_role("link", name=OWNER, exact=True)).to_be_visible()
            header = page.get_by_test_id("header-card")
            expect(header.get_by_role("link", name="ingest", exact=True)).to_be_visible()  # the tag
            expect(page.get_by_test_id("ingest")).to_be_visible()  # the ingest task, in the grid
            page.get_by_test_id("markdown-button").click()
            docs = page.get_by_role("dialog")
            expect(docs).to_contain_text(f"Ingest {TILED_LOG}")
            expect(docs).to_contain_text("Backfill")
            docs.get_by_role("button", name="Close").click()
            expect(page.get_by_role("dialog")).to_have_count(0)

            # The trigger form: the backfill Params with their descriptions.
            page.get_by_test_id("trigger-dag-button").first.click()
            form = page.get_by_role("dialog")
            expect(form).to_contain_text(f"Trigger Dag - {dag_id}")
            config = form.get_by_test_id("config-form")
            start = config.locator('[id="number-input:element_start_index"] input')
            end = config.locator('[id="number-input:element_end_index"] input')
            expect(start).to_be_visible()
            expect(end).to_be_visible()
            for name, description in descriptions.items():  # as the DAG's Params say
                expect(config.get_by_text(name, exact=True)).to_be_visible()
                expect(config.get_by_text(description, exact=True)).to_be_visible()
            page.screenshot(path=tmp_path / "trigger_form.png")

            # Fill them in and trigger, leaving the DAG paused: the run carries them.
            start.fill("0")
            end.fill("8192")
            unpause = form.get_by_text(f"Unpause {dag_id} on trigger")
            if form.get_by_role("checkbox").is_checked():
                unpause.click()
            expect(form.get_by_role("checkbox")).not_to_be_checked()
            page.screenshot(path=tmp_path / "trigger_form_filled.png")
            form.get_by_test_id("trigger-dag-submit").click()
            expect(page.get_by_role("dialog")).to_have_count(0)
        finally:
            browser.close()

    deadline = time.monotonic() + 30
    while True:
        runs = standalone.api(f"dags/{dag_id}/dagRuns", token)["dag_runs"]
        if runs or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert [run["conf"] for run in runs] == [{"start_index": 0, "end_index": 8192}], runs
    assert [run["run_type"] for run in runs] == ["manual"]
    assert standalone.api(f"dags/{dag_id}", token)["is_paused"] is True
