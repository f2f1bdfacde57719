"""A real `airflow standalone` for a test, and headless Chromium to look at it.

`start_standalone(work, database_url, settings)` starts `airflow standalone` with its own
AIRFLOW_HOME under `work`, the given metadata database, a free UI port, the project's DAGs
and plugins, the admin password written into the simple auth manager's passwords file by
`ctlib.localsvc.run`, DAGs paused at creation, and the CT_* / AIRFLOW_* `settings` on top;
nothing of the test session's own Airflow or ct-airflow settings leaks in. It waits until
the API gives a token, the expected DAGs are there and every DAG file was parsed, yields a
`Standalone`, and stops the whole process session on exit, also on failure.

`metadata_database(prefix)`: a new database on the machine's PostgreSQL (127.0.0.1:5432,
user postgres, trust auth), dropped afterwards; the test fails clearly when there is none.

`chromium()`: Debian's /usr/bin/chromium driven by Playwright (its own browser downloads
are never used), closed on exit; `log_in(page, airflow)` signs in as the admin.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from ctlib.localsvc import free_port, port_accepts
from ctlib.localsvc.run import airflow_env, ensure_admin_password, standalone_env, stop_session
from tests.paths import PROJECT_ROOT

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
STARTUP_TIMEOUT = 150.0  # seconds until the UI answers and every DAG is parsed (2 busy cores)
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"


@dataclass
class Standalone:
    url: str
    user: str
    password: str
    log: Path
    proc: subprocess.Popen
    env: dict[str, str] = field(default_factory=dict)  # the standalone's, for `airflow` commands

    def token(self) -> str:
        answer = requests.post(
            f"{self.url}/auth/token",
            json={"username": self.user, "password": self.password},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def api(self, path: str, token: str, **params: Any) -> dict:
        """GET /api/v2/<path>; raises on an error status."""
        answer = requests.get(
            f"{self.url}/api/v2/{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()

    def send(self, method: str, path: str, token: str, body: Any = None) -> dict:
        """POST/PATCH/... /api/v2/<path> with a JSON body; fails the test with Airflow's
        answer on an error status."""
        answer = requests.request(
            method,
            f"{self.url}/api/v2/{path}",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        if not answer.ok:
            pytest.fail(f"{method} /api/v2/{path} {body}: {answer.status_code} {answer.text[:2000]}")
        return answer.json() if answer.content else {}

    def cli(self, *args: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
        """`airflow ARGS` with the standalone's environment (its home and database)."""
        return subprocess.run(
            [str(AIRFLOW_BIN), *args], env=self.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


def demo_environment(home: Path, database_url: str) -> dict[str, str]:
    """The environment of a `make demo` stack (ctlib.localsvc.run.Orchestrator) for a test: this
    process's, less every AIRFLOW*/CT_* setting (binaries and samples kept), with its own
    AIRFLOW_HOME, metadata database, broker port, admin password and short retries."""
    keep = ("CT_TANSU_BIN", "CT_ENRICHMENT_SAMPLES")  # where binaries and samples are, not settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CT_")) or k in keep}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=database_url,
        CT_LOCAL_KAFKA_PORT=str(free_port()),
        CT_ADMIN_PASSWORD=secrets.token_urlsafe(12),
        CT_TASK_RETRY_DELAY="5",
    )
    return env


@contextlib.contextmanager
def metadata_database(prefix: str) -> Iterator[str]:
    """A new, empty database on the machine's PostgreSQL, dropped afterwards."""
    import psycopg

    from ctlib.localsvc.postgres import scratch_database

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(scratch_database(prefix, PG["host"], PG["port"], PG["user"]))
        except psycopg.OperationalError as err:
            pytest.fail(f"this test needs the PostgreSQL server at {PG['host']}:{PG['port']} "
                        f"(user {PG['user']}, trust auth): {err}")  # fmt: skip
        yield url


def dag_files() -> set[str]:
    """dags/*.py that Airflow's safe mode parses (those mentioning both "airflow" and "dag")."""
    files = set()
    for path in (PROJECT_ROOT / "dags").glob("*.py"):
        text = path.read_text(errors="replace").lower()
        if "airflow" in text and "dag" in text:
            files.add(path.name)
    return files


@contextlib.contextmanager
def start_standalone(
    work: Path,
    database_url: str,
    settings: Mapping[str, str],
    dags: Iterable[str],
    timeout: float = STARTUP_TIMEOUT,
) -> Iterator[Standalone]:
    """`airflow standalone` with its home in `work`, on `database_url`, with `settings`
    (CT_LOG_LIST, CT_LAKE, ...) over the project's defaults; ready when `dags` are there and
    every DAG file was parsed. Stopped, with every process it started, on exit."""
    # Nothing of the test session's Airflow or ct-airflow settings (the integration
    # conftest sets a SQLite AIRFLOW_HOME) leaks into this standalone.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "_AIRFLOW", "CT_"))}  # fmt: skip
    env.update(
        AIRFLOW_HOME=str(work / "airflow_home"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=database_url,
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",  # no runs until a test unpauses a DAG
    )
    env.update(settings)
    port = free_port()
    airflow_env(env)
    standalone_env(env, port)  # what `make run` sets, on this port
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
    login = ensure_admin_password(env)
    assert login is not None, "run.py did not set the admin password"
    log = work / "standalone.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(AIRFLOW_BIN), "standalone"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: stop_session stops all of it
        )  # fmt: skip
    airflow = Standalone(f"http://127.0.0.1:{port}", login[0], login[1], log, proc, env)
    try:
        wait_until_ready(airflow, port, set(dags), timeout)
        yield airflow
    finally:
        stop_session(proc.pid, proc)
        proc.wait(timeout=30)


def wait_until_ready(airflow: Standalone, port: int, dags: set[str], timeout: float = STARTUP_TIMEOUT) -> None:
    """Until the API gives a token, `dags` are there and every DAG file of dags/ was parsed
    (it has a DAG or an import error in the database)."""
    deadline = time.monotonic() + timeout
    files = dag_files()
    seen: set[str] = set()
    parsed: set[str] = set()
    while True:
        if airflow.proc.poll() is not None:
            pytest.fail(f"airflow standalone exited ({airflow.proc.returncode}):\n{airflow.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"airflow standalone not ready within {timeout:.0f}s (DAGs seen: "
                        f"{sorted(seen)}; DAG files without a DAG or an import error: "
                        f"{sorted(files - parsed)}):\n{airflow.tail()}")  # fmt: skip
        if port_accepts(port):
            try:
                token = airflow.token()
                listed = airflow.api("dags", token, limit=100)["dags"]
                errors = airflow.api("importErrors", token, limit=100)["import_errors"]
            except requests.RequestException:
                pass
            else:
                seen = {dag["dag_id"] for dag in listed}
                parsed = {Path(d["relative_fileloc"] or "").name for d in listed}
                parsed |= {Path(e["filename"]).name for e in errors}
                if seen >= dags and parsed >= files:
                    return
        time.sleep(2.0)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless Chromium (Debian's) under Playwright: yields the Browser, closed on exit."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)"
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def log_in(page: Any, airflow: Standalone) -> None:
    """Sign in as the admin: the UI sends an anonymous visitor to the simple auth manager's form."""
    from playwright.sync_api import expect

    page.goto(f"{airflow.url}/")
    expect(page).to_have_url(re.compile(r"/auth/login"))
    page.get_by_label("Username").fill(airflow.user)
    page.get_by_label("Password").fill(airflow.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("nav-dags-link")).to_be_visible()
