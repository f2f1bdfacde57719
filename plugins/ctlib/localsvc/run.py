"""`make run`, `make demo` and `make stop`: ct-airflow on one machine with `airflow standalone`.

    python -m ctlib.localsvc.run            # make run
    python -m ctlib.localsvc.run --demo     # make demo: the same against 3 local CT logs
    python -m ctlib.localsvc.run stop       # make stop, from any shell
    python -m ctlib.localsvc.run status

`run` starts, in this order, each only when needed:

1. the embedded PostgreSQL of `<project>/.run/postgres` (`ctlib.localsvc.postgres`), unless
   AIRFLOW__DATABASE__SQL_ALCHEMY_CONN is set;
2. the tansu broker (`ctlib.localsvc.broker`, memory-only, 127.0.0.1:19092 or a free port,
   topics ct-certs, ct-alerts, ct-enriched) exported as AIRFLOW_CONN_KAFKA_DEFAULT, unless
   that connection (or the one CT_KAFKA_CONN_ID names) is set already, or CT_KAFKA_CONN_ID is
   empty (publishing off);
3. with --demo, the local CT log server (`ctlib.testing.ctlog`: 3 logs, one of them tiled,
   each starting with 3 hours of history (0.5 entries/s, timestamps in the past), then
   growing 5 entries/s, every 25th new certificate with phishing-style names and every 301st
   one for a name under acme-shop.example, recorded in .run/demo_planted.jsonl), with
   CT_LOG_LIST=.run/demo_log_list.json, CT_START_AT=latest
   (live ingestion starts at the tip: the history is left for a backfill of a past window),
   CT_LAKE=<project>/data/demo, CT_PARTIAL_TILE_WAIT=20; and fake PassiveTotal and
   ThreatStream APIs (`ctlib.testing.enrichment_servers`, in this process) exported as
   AIRFLOW_CONN_PASSIVETOTAL_DEFAULT / AIRFLOW_CONN_THREATSTREAM_DEFAULT; a watchlist
   (.run/demo_watchlist.txt: `.acme-shop.example`, CT_WATCHLIST) and a local webhook receiver
   (`ctlib.testing.receivers`, in this process) exported as AIRFLOW_CONN_CT_WEBHOOK, which
   prints every notification ct_watch and ct_score send (never without --demo: real
   connections are the operator's business).
   The demo logs are new at each start, so the demo's state is too: data/demo is emptied and
   the metadata database is `airflow_demo` (same embedded server), dropped and created afresh;
   `make run`'s database `airflow` and lake data/ are left alone;
4. `airflow db migrate` (for `make run`'s embedded database once per Airflow version, the
   marker bin/airflow uses too), then the pool `ct_enrichment` (CT_ENRICH_POOL; 2 slots)
   unless it exists: ct_enrich's tasks run in it;
5. `airflow standalone` (LocalExecutor, the simple auth manager) with the project's DAGs and
   plugins, examples off, DAGs unpaused at creation, parallelism 8, new DAG files seen within
   30 s, the UI on http://127.0.0.1:8080 (AIRFLOW__API__PORT), user `admin`, password `admin`
   (CT_ADMIN_PASSWORD, or the one already in the passwords file).

It prints the UI address, the login and commands that show the outputs. `Orchestrator(...)`
with `start()` / `stop()` runs the same stack from a test, with its own home, database,
lake, run folder and ports (tests/e2e).

Every variable the environment already sets wins over these defaults. Ctrl-C, SIGTERM or
`make stop` stop what `run` started, in reverse order; pid files under .run/ let `stop` do it
from another shell (and clean up after a `run` that was killed). `stop` also stops the
project's embedded PostgreSQL when `bin/airflow` started it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from ctlib.localsvc import RUN_DIR, ensure_run_dir, free_port, port_accepts, port_is_free
from ctlib.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from ctlib.testing.receivers import WebhookReceiver

PID_RUN = "run.pid"
PID_AIRFLOW = "airflow.pid"  # pid of `airflow standalone`, also its session id
PID_BROKER = "broker.pid"
PID_CTLOG = "ctlog.pid"
STATE_FILE = "run.json"  # addresses of what runs, for `status` and other shells
DEMO_LOG_LIST = "demo_log_list.json"
DEFAULT_UI_PORT = 8080
DEMO_DATABASE = "airflow_demo"  # `make demo`'s own metadata database, new at each start
DEMO_PLANTED = "demo_planted.jsonl"  # the phishing-style certificates planted in the demo logs
DEMO_LOGS = 3
DEMO_TILED = 1  # of DEMO_LOGS, static-ct-api (tiled) logs
DEMO_RATE = 5.0  # entries per second per demo log
DEMO_HISTORY_HOURS = 3.0  # each demo log starts with this much history, left to a backfill
DEMO_HISTORY_RATE = 0.5  # entries per second of that history
DEMO_START_AT = "latest"  # CT_START_AT of the demo: live ingestion starts at the tip
DEMO_PHISHING_EVERY = 25  # every Nth demo certificate has phishing-style names
DEMO_WATCHED_DOMAIN = "acme-shop.example"  # the demo's own domain: its watchlist watches it
DEMO_WATCHED_EVERY = 301  # every Nth demo certificate is for a name under it (about one a minute a log); not a
# multiple of DEMO_PHISHING_EVERY, which wins where both fall on one entry
DEMO_WATCHLIST = "demo_watchlist.txt"
DEMO_PARTIAL_TILE_WAIT = 20  # CT_PARTIAL_TILE_WAIT of the demo (seconds)
ENRICH_POOL_SLOTS = 2
ENRICH_POOL_DESCRIPTION = "threat-intel API calls"
BACKFILL_POOL_SLOTS = 2
BACKFILL_POOL_DESCRIPTION = "tasks of backfill runs (ctlib.airflow.pools): live ingestion never waits for them"
ADMIN_USER = "admin"

# What each pid file's process must have in its command line (a reused pid is left alone).
_PID_FILES = {
    PID_RUN: "ctlib.localsvc.run",
    PID_AIRFLOW: "standalone",
    PID_BROKER: "tansu",
    PID_CTLOG: "ctlib.testing.ctlog",
}


def say(message: str) -> None:
    """Print a line; a closed stdout (e.g. `make run | tee` after Ctrl-C) must not stop us."""
    try:
        print(f"ct-airflow | {message}", flush=True)
    except OSError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (a child process's output, open while it runs)
        except OSError:
            pass


# --------------------------------------------------------------------------- environment


def airflow_env(env: MutableMapping[str, str], venv_bin: Path | None = None) -> None:
    """Set the project's Airflow defaults (those of bin/airflow) into `env`, keeping its values."""
    venv_bin = venv_bin or Path(sys.executable).parent
    env.setdefault("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PROJECT_ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(PROJECT_ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    path = env.get("PATH", "")
    if not path.startswith(f"{venv_bin}{os.pathsep}"):
        env["PATH"] = f"{venv_bin}{os.pathsep}{path}" if path else str(venv_bin)


def standalone_env(env: MutableMapping[str, str], ui_port: int) -> None:
    """Defaults for `airflow standalone` on a small machine (2 cores)."""
    host = env.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    env.setdefault("AIRFLOW__API__PORT", str(ui_port))
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    env.setdefault("AIRFLOW__API__BASE_URL", f"http://{shown_host}:{ui_port}")
    env.setdefault("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    env.setdefault("AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION", "False")
    env.setdefault("AIRFLOW__CORE__PARALLELISM", "8")
    env.setdefault("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "30")
    # Re-parse each DAG file every 2 minutes, not 30 s: parsing 40+ per-log DAGs is most of the
    # dag-processor's CPU; a new DAG *file* is still seen within REFRESH_INTERVAL.
    env.setdefault("AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL", "120")
    env.setdefault("AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES", "1")
    env.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{ADMIN_USER}:admin")


def passwords_file(env: MutableMapping[str, str]) -> Path:
    configured = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", "").strip()
    if configured:
        return Path(configured)
    return Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"


def ensure_admin_password(env: MutableMapping[str, str]) -> tuple[str, str] | None:
    """The UI login: writes CT_ADMIN_PASSWORD (default `admin`) for `admin` into the simple
    auth manager's passwords file unless it has a password for it already."""
    users = [u.split(":")[0] for u in env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")]
    if ADMIN_USER not in users:
        return None
    path = passwords_file(env)
    try:
        passwords = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        passwords = {}
    except json.JSONDecodeError:
        say(f"{path} is not JSON: leaving it as it is")
        return None
    if ADMIN_USER not in passwords or env.get("CT_ADMIN_PASSWORD"):
        passwords[ADMIN_USER] = env.get("CT_ADMIN_PASSWORD") or "admin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(passwords))
        path.chmod(0o600)
    return ADMIN_USER, passwords[ADMIN_USER]


def airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow-core")


def _airflow_cli(env: MutableMapping[str, str], args: list[str], log: Path, what: str) -> None:
    """Run `airflow <args>` (or `python -c` when args[0] == "-c") with `env`, output to `log`;
    SystemExit with the output's tail when it fails."""
    venv_bin = Path(sys.executable).parent
    cmd = [sys.executable, *args] if args[0] == "-c" else [str(venv_bin / "airflow"), *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.run(
            cmd, env=dict(env), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    if proc.returncode != 0:
        sys.stdout.write(log.read_text(errors="replace")[-4000:])
        raise SystemExit(f"{what} failed; see {log}")


def migrate(env: MutableMapping[str, str]) -> None:
    """`airflow db migrate` (quick when the database is up to date)."""
    say("migrating the Airflow database...")
    log = Path(env["AIRFLOW_HOME"]) / "db-migrate.log"
    _airflow_cli(env, ["db", "migrate"], log, "airflow db migrate")


def ensure_migrated(env: MutableMapping[str, str], marker: Path) -> None:
    """`airflow db migrate` unless `marker` holds the installed Airflow version (as bin/airflow)."""
    version = airflow_version()
    try:
        if marker.read_text().strip() == version:
            return
    except FileNotFoundError:
        pass
    say("first run with this Airflow version:")
    migrate(env)
    marker.write_text(f"{version}\n")


_POOL_SCRIPT = """
import sys
from airflow.models.pool import Pool
for name, slots, description in zip(*[iter(sys.argv[1:])] * 3):
    pool = Pool.get_pool(name)
    if pool is None:
        Pool.create_or_update_pool(name, int(slots), description, False)
        print(f"created pool {name} with {slots} slots")
    else:
        print(f"pool {name} exists with {pool.slots} slots: left as it is")
"""


def ensure_pool(env: MutableMapping[str, str]) -> None:
    """Create the pools unless they exist (an operator's slot count stays): the enrichment
    pool (CT_ENRICH_POOL, default `ct_enrichment`, 2 slots), where ct_enrich's `enrich` tasks
    run, and the backfill pool (CT_BACKFILL_POOL, default `ct_backfill`, 2 slots), where every
    task of a backfill run goes (ctlib.airflow.pools). A task whose pool does not exist is
    never scheduled. Needs a migrated database."""
    from ctlib.settings import Settings

    settings = Settings.from_env(env)
    log = Path(env["AIRFLOW_HOME"]) / "pool.log"
    args = [settings.enrich_pool, str(ENRICH_POOL_SLOTS), ENRICH_POOL_DESCRIPTION,
            settings.backfill_pool, str(BACKFILL_POOL_SLOTS), BACKFILL_POOL_DESCRIPTION]
    _airflow_cli(env, ["-c", _POOL_SCRIPT, *args], log, "creating the pools")
    for line in log.read_text().strip().splitlines()[-2:]:
        say(f"airflow: {line}")


# --------------------------------------------------------------------------- processes


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def _alive_with(pid: int, needle: str) -> bool:
    """True when `pid` runs and its command line contains `needle` (pid files can go stale)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return needle in cmdline


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pid: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    """Wait until process `pid` is gone (a zombie counts as gone); `proc`: ours, to reap."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            return True
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        if _zombie(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid` (Linux /proc; elsewhere just `sid` if it runs)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = []
    if not entries:  # no /proc
        return [] if _wait_gone(sid, 0) else [sid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields: state ppid pgrp session ...
        if len(fields) > 3 and fields[3] == str(sid) and fields[0] != "Z":
            members.append(int(entry))
    return members


def stop_session(
    sid: int, proc: subprocess.Popen | None = None, grace: float = 10.0
) -> None:
    """Stop `airflow standalone` (started as leader of session `sid`) and everything under it.

    First what a Ctrl-C in its terminal does: SIGINT to its process group (standalone and its
    components). The grace is short: on SIGINT the scheduler's LocalExecutor waits for running
    and queued tasks, which fail anyway once the api-server (their Execution API) has stopped.
    Then SIGTERM, then SIGKILL, to every process left in the session, which includes the task
    processes (each in a process group of its own).
    """
    try:
        os.killpg(sid, signal.SIGINT)
    except ProcessLookupError:
        pass
    else:
        _wait_gone(sid, grace, proc)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        members = session_members(sid)
        if not members:
            break
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and session_members(sid):
            if proc is not None:
                proc.poll()
            time.sleep(0.2)
    if proc is not None:
        proc.poll()


def stop_pid(pid: int, proc: subprocess.Popen | None = None, grace: float = 10.0) -> None:
    """Stop one process: SIGINT, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, wait, proc=proc):
            return


class _Stop(Exception):
    """Raised in the main thread by SIGTERM / SIGHUP: stop like Ctrl-C."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def _ignore_while_stopping(signum: int, frame: object) -> None:
    say("stopping; please wait")


class Orchestrator:
    """Starts and stops the stack of `make run` / `make demo`.

    `run()` is the command (pid file, signals, waits for standalone). Tests and scripts use
    `start()` ... `stop()` (or the context manager) with overrides instead: `env` is the base
    environment (default os.environ; its variables win over every default here), `run_dir`
    where pid files and service logs go, `lake` the demo lake, `demo_logs`/`demo_tiled`/
    `demo_rate`/`phishing_every`/`watched_every`/`demo_history_hours`/`demo_history_rate` the
    local CT logs (history hours 0: none), `demo_start_at` the demo's CT_START_AT, `airflow_output` a file
    for standalone's output (default: this process's stdout).
    """

    def __init__(
        self,
        demo: bool = False,
        ui_port: int | None = None,
        *,
        run_dir: Path = RUN_DIR,
        env: Mapping[str, str] | None = None,
        lake: Path | None = None,
        demo_logs: int = DEMO_LOGS,
        demo_tiled: int = DEMO_TILED,
        demo_rate: float = DEMO_RATE,
        phishing_every: int = DEMO_PHISHING_EVERY,
        watched_every: int = DEMO_WATCHED_EVERY,
        airflow_output: Path | None = None,
        demo_history_hours: float = DEMO_HISTORY_HOURS,
        demo_history_rate: float = DEMO_HISTORY_RATE,
        demo_start_at: str = DEMO_START_AT,
    ) -> None:
        self.demo = demo
        self.run_dir = ensure_run_dir(Path(run_dir))
        self.env: dict[str, str] = dict(os.environ if env is None else env)
        self.ui_port = ui_port
        self.lake = Path(lake) if lake else PROJECT_ROOT / "data" / "demo"
        self.demo_logs = demo_logs
        self.demo_tiled = demo_tiled
        self.demo_rate = demo_rate
        self.phishing_every = phishing_every
        self.watched_every = watched_every
        self.webhook: WebhookReceiver | None = None  # the demo's, once started
        self.airflow_output = airflow_output
        self.demo_history_hours = demo_history_hours
        self.demo_history_rate = demo_history_rate
        self.demo_start_at = demo_start_at
        self._stops: list[tuple[str, Callable[[], object]]] = []  # called for effect (pg.stop returns a bool)
        self.state: dict[str, str] = {}
        self.airflow: subprocess.Popen | None = None
        self.marker: Path | None = None  # migration marker of the embedded PostgreSQL
        self.login: tuple[str, str] | None = None

    @property
    def log_list(self) -> Path:
        """The demo's log list (written by the local CT log server)."""
        return self.run_dir / DEMO_LOG_LIST

    @property
    def planted(self) -> Path:
        """JSON lines, one per phishing-style certificate planted in the demo logs."""
        return self.run_dir / DEMO_PLANTED

    # -- services ----------------------------------------------------------------------------

    def start_postgres(self) -> None:
        from ctlib.localsvc.postgres import DATABASE, EmbeddedPostgres

        if self.env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
            say("database: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN from the environment")
            if self.demo:
                say("demo: its ingest state stays in that database, but the demo logs start "
                    "afresh: a second demo on it reports rollback incidents")  # fmt: skip
            return
        database = DEMO_DATABASE if self.demo else DATABASE
        pg = EmbeddedPostgres(self.run_dir / "postgres", database=database)
        was_running = pg.running_port() is not None
        url = pg.ensure_running()
        if self.demo:
            # The demo's CT logs are new at each start: so are its ingest state (Airflow
            # Variables) and lake.
            url = pg.recreate_database()
        else:
            self.marker = pg.marker
        self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = url
        self.state["postgres"] = url
        if was_running:
            say(f"database: embedded PostgreSQL already running, {url} (make stop stops it)")
        else:
            say(f"database: embedded PostgreSQL {url} (data in {pg.data_dir})")
            self._stops.append(("PostgreSQL", pg.stop))

    def start_broker(self) -> None:
        from ctlib.localsvc.broker import DEFAULT_PORT, LocalBroker, conn_env_var
        from ctlib.settings import Settings

        settings = Settings.from_env(self.env)
        if not settings.kafka_enabled:
            say("kafka: publishing off (CT_KAFKA_CONN_ID is empty)")
            return
        var = conn_env_var(settings.kafka_conn_id)
        if self.env.get(var):
            say(f"kafka: connection {settings.kafka_conn_id!r} from {var}")
            return
        wanted = self.env.get("CT_LOCAL_KAFKA_PORT", "").strip()
        port = int(wanted) if wanted else (DEFAULT_PORT if port_is_free(DEFAULT_PORT) else None)
        topics = [settings.kafka_topic, settings.kafka_alerts_topic, settings.kafka_enriched_topic]
        broker = LocalBroker(
            port,
            topics=topics,
            log_path=self.run_dir / "broker.log",
            pid_file=self.run_dir / PID_BROKER,
        ).start()
        self._stops.append(("tansu broker", broker.stop))
        self.env.update(broker.airflow_env(settings.kafka_conn_id))
        self.state["kafka"] = broker.bootstrap_servers
        say(
            f"kafka: tansu broker (memory-only) at {broker.bootstrap_servers}, "
            f"topics {', '.join(topics)}, exported as {var}"
        )

    def start_ctlog(self) -> None:
        log_list = self.log_list
        log_list.unlink(missing_ok=True)
        self.planted.unlink(missing_ok=True)
        port = free_port()
        out = open(self.run_dir / "ctlog.log", "ab")  # noqa: SIM115 (a child process's output, open while it runs)
        proc = subprocess.Popen(
            [sys.executable, "-m", "ctlib.testing.ctlog", "--logs", str(self.demo_logs),
             "--tiled", str(self.demo_tiled), "--port", str(port), "--log-list", str(log_list),
             "--rate", f"{self.demo_rate:g}", "--phishing-every", str(self.phishing_every),
             "--watched-domain", DEMO_WATCHED_DOMAIN, "--watched-every", str(self.watched_every),
             "--planted", str(self.planted), "--history-hours", f"{self.demo_history_hours:g}",
             "--history-rate", f"{self.demo_history_rate:g}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=PROJECT_ROOT,
        )  # fmt: skip
        out.close()
        (self.run_dir / PID_CTLOG).write_text(f"{proc.pid}\n")

        def stop() -> None:
            stop_pid(proc.pid, proc)
            proc.wait()
            (self.run_dir / PID_CTLOG).unlink(missing_ok=True)

        self._stops.append(("CT log server", stop))
        deadline = time.monotonic() + 60
        while not (log_list.exists() and port_accepts(port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.run_dir / "ctlog.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"the local CT log server did not start:\n{tail}")
            time.sleep(0.2)
        lake = self.lake
        if lake.exists():
            shutil.rmtree(lake)
            say(f"demo: emptied {lake} (the demo logs start afresh)")
        self.env["CT_LOG_LIST"] = str(log_list)
        self.env["CT_START_AT"] = self.demo_start_at
        self.env["CT_LAKE"] = str(lake)
        # A tiled log's last tile is read partial after this many seconds (default 60).
        self.env.setdefault("CT_PARTIAL_TILE_WAIT", str(DEMO_PARTIAL_TILE_WAIT))
        self.state["ctlog"] = f"http://127.0.0.1:{port}/"
        tiled = f" ({self.demo_tiled} tiled)" if self.demo_tiled else ""
        planted = (f", every {self.phishing_every}th certificate phishing-style"
                   if self.phishing_every else "")  # fmt: skip
        history = (f" after {self.demo_history_hours:g} h of history ({self.demo_history_rate:g} entries/s)"
                   if self.demo_history_hours > 0 else "")  # fmt: skip
        say(f"demo: {self.demo_logs} local CT logs{tiled} at http://127.0.0.1:{port}/ growing "
            f"{self.demo_rate:g} entries/s each{history}{planted}")  # fmt: skip
        say(f"demo: CT_LOG_LIST={log_list} CT_START_AT={self.demo_start_at} CT_LAKE={lake}")

    def start_enrichment(self) -> None:
        """The demo's fake PassiveTotal and ThreatStream (in this process), exported as the
        connections passivetotal_default and threatstream_default. Never for `make run`."""
        import secrets

        from ctlib.testing.enrichment_servers import FakePassiveTotal, FakeThreatStream, samples_dir

        try:
            samples_dir()
        except FileNotFoundError as exc:
            say(f"demo: no fake enrichment APIs ({exc}): ct_enrich skips both providers")
            return
        users = {"demo@example.org": secrets.token_urlsafe(18)}
        servers: list[FakePassiveTotal | FakeThreatStream] = [
            FakePassiveTotal(users, "ok", synthesize=True).start(),
            FakeThreatStream(users, synthesize=True).start(),
        ]
        for server in servers:
            for name, value in server.airflow_conn_env().items():
                self.env.setdefault(name, value)
            self._stops.append((server.name, server.stop))
        self.state["enrichment"] = " ".join(server.url for server in servers)
        say(f"demo: fake PassiveTotal {servers[0].url} and ThreatStream {servers[1].url}, "
            "exported as AIRFLOW_CONN_PASSIVETOTAL_DEFAULT / AIRFLOW_CONN_THREATSTREAM_DEFAULT")  # fmt: skip

    def start_notifications(self) -> None:
        """The demo's watchlist (its own domain) and a local webhook receiver (in this process)
        that prints every notification, exported as the connection ct_webhook. Never for
        `make run`."""
        from ctlib.testing.receivers import WebhookReceiver, describe

        watchlist = self.run_dir / DEMO_WATCHLIST
        watchlist.write_text(f"# make demo: the demo's own domain and everything under it\n.{DEMO_WATCHED_DOMAIN}\n")
        self.env.setdefault("CT_WATCHLIST", str(watchlist))

        def show(received) -> None:
            for line in describe(received):
                say(f"demo webhook: {line}")

        receiver = self.webhook = WebhookReceiver(on_receive=show).start()
        self._stops.append(("demo webhook receiver", receiver.stop))
        for name, value in receiver.airflow_conn_env(self.env.get("CT_NOTIFY_WEBHOOK_CONN") or "ct_webhook").items():
            self.env.setdefault(name, value)
        self.state["webhook"] = receiver.url
        say(f"demo: watching {DEMO_WATCHED_DOMAIN} (CT_WATCHLIST={self.env['CT_WATCHLIST']}); notifications "
            f"go to the webhook receiver {receiver.url}, printed here as 'demo webhook:'")  # fmt: skip

    def prepare_database(self) -> None:
        """Migrate the metadata database (the embedded one once per Airflow version), then
        create the enrichment pool: without it, ct_enrich's tasks would never run."""
        if self.marker is not None:
            ensure_migrated(self.env, self.marker)
        else:
            migrate(self.env)
        ensure_pool(self.env)

    def start_airflow(self) -> None:
        cmd = [str(Path(sys.executable).parent / "airflow"), "standalone"]
        out = open(self.airflow_output, "ab") if self.airflow_output else None  # noqa: SIM115 (a child process's output, open while it runs)
        # Its own process group: stopping sends SIGINT to standalone and all its components,
        # exactly what a Ctrl-C in its terminal would do, also when `make stop` asks.
        self.airflow = subprocess.Popen(
            cmd, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True,
            stdout=out, stderr=subprocess.STDOUT if out else None,
        )  # fmt: skip
        if out is not None:
            out.close()
        (self.run_dir / PID_AIRFLOW).write_text(f"{self.airflow.pid}\n")

        def stop() -> None:
            assert self.airflow is not None
            stop_session(self.airflow.pid, self.airflow)
            self.airflow.wait()
            (self.run_dir / PID_AIRFLOW).unlink(missing_ok=True)

        self._stops.append(("Airflow", stop))

    # -- start / stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start every service, then `airflow standalone`; returns once standalone is started
        (not yet serving: see `wait_until_up`). On failure, stops what it started and raises."""
        try:
            airflow_env(self.env)
            Path(self.env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
            ui_port = self.ui_port or int(self.env.get("AIRFLOW__API__PORT") or DEFAULT_UI_PORT)
            standalone_env(self.env, ui_port)
            if not port_is_free(ui_port, self.env["AIRFLOW__API__HOST"].replace("0.0.0.0", "")):
                raise SystemExit(f"port {ui_port} is taken: free it or set AIRFLOW__API__PORT")
            self.start_postgres()
            self.start_broker()
            if self.demo:
                self.start_ctlog()
                self.start_enrichment()
                self.start_notifications()
            self.prepare_database()
            self.login = ensure_admin_password(self.env)
            self.state["ui"] = self.env["AIRFLOW__API__BASE_URL"]
            if self.demo:
                self.state["lake"] = str(self.lake)
            (self.run_dir / STATE_FILE).write_text(json.dumps(self.state, indent=1) + "\n")
            self.start_airflow()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop what `start` started, in reverse order; idempotent."""
        while self._stops:
            name, stop = self._stops.pop()
            try:
                stop()
                say(f"stopped {name}")
            except Exception as exc:  # keep stopping the others
                say(f"could not stop {name}: {exc}")
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Orchestrator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api_url(self) -> str:
        host = self.env["AIRFLOW__API__HOST"]
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.env['AIRFLOW__API__PORT']}"

    def wait_until_up(self, timeout: float | None = None) -> bool:
        """Wait until the UI/API port accepts connections; False if standalone exited first
        or `timeout` seconds passed."""
        port = int(self.env["AIRFLOW__API__PORT"])
        host = self.api_url().split("//", 1)[1].rsplit(":", 1)[0]
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.airflow is not None and self.airflow.poll() is None:
            if port_accepts(port, host):
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(1.0)
        return False

    # -- banner ------------------------------------------------------------------------------

    def _shown(self, path: Path) -> str:
        """`path` relative to the project when inside it (the commands run from there)."""
        try:
            return str(path.resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            return str(path)

    def look_commands(self) -> list[str]:
        """Commands (run from the project folder) that show the outputs."""
        lake = self._shown(Path(self.env.get("CT_LAKE") or PROJECT_ROOT / "data"))
        watchlist = self._shown(Path(self.env.get("CT_WATCHLIST") or PROJECT_ROOT / "include" / "watchlist.txt"))
        py = ".venv/bin/python"
        lines = [
            f'{py} -m ctlib.query --lake {lake} "select log_slug, count(*) certs, max(index) '
            'last_index from certs group by 1"',
            f'{py} -m ctlib.query --lake {lake} "select name, score, brand from alerts '
            'order by scored_at desc limit 10"',
            f"{py} -m ctlib.query --lake {lake} --file include/sql/enriched_high_risk.sql "
            "--param min_risk=0",
            f"{py} -m ctlib.watch --lake {lake} --watchlist {watchlist}",
        ]
        if "kafka" in self.state:
            topic = self.env.get("CT_KAFKA_TOPIC", "").strip() or "ct-certs"
            # The command finds the broker of .run/run.json; elsewhere it must be told.
            where = "" if self.run_dir == RUN_DIR else f" --bootstrap-servers {self.state['kafka']}"
            lines.append(f"{py} -m ctlib.localsvc.broker consume {topic} --max 5{where}")
        return lines

    def monitor_lines(self, url: str, login: tuple[str, str] | None) -> list[str]:
        """The CT monitor page (`<UI>/ct/`, "CT monitor" in the UI's navigation) and its
        Prometheus metrics (`<UI>/ct/metrics`), with a command that reads them with a JWT
        from /auth/token (none needed with CT_METRICS_OPEN)."""
        import shlex

        from ctlib.settings import Settings

        lines = [f"CT monitor page: {url}/ct/ (\"CT monitor\" in the UI's navigation)",
                 f"metrics (Prometheus): {url}/ct/metrics"]
        if Settings.from_env(self.env).metrics_open:
            lines.append(f"  curl -s {url}/ct/metrics")
            return lines
        user, password = login or ("<user>", "<password>")
        body = json.dumps({"username": user, "password": password})
        lines.append(f"  TOKEN=$(curl -s -X POST {url}/auth/token -H 'Content-Type: application/json' -d {shlex.quote(body)} "
                     "| .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'); "
                     f'curl -s -H "Authorization: Bearer $TOKEN" {url}/ct/metrics')  # fmt: skip
        return lines

    def banner(self, login: tuple[str, str] | None) -> list[str]:
        url = self.env["AIRFLOW__API__BASE_URL"]
        lines = [f"UI: {url}"]
        if login:
            lines.append(f"login: {login[0]} / {login[1]}")
        else:
            lines.append(f"login: users of [core] simple_auth_manager_users, passwords in "
                         f"{passwords_file(self.env)}")  # fmt: skip
        lines += self.monitor_lines(url, login)
        if "kafka" in self.state:
            lines.append(f"Kafka bootstrap: {self.state['kafka']} (memory-only: gone at stop)")
        if "postgres" in self.state:
            lines.append(f"metadata DB: {self.state['postgres']}")
        lines.append(f"lake: {self.env.get('CT_LAKE') or PROJECT_ROOT / 'data'}")
        lines.append("look at the outputs (from the project folder):")
        lines += [f"  {command}" for command in self.look_commands()]
        lines.append("stop: Ctrl-C here, or `make stop` from another shell")
        return lines

    def _announce_when_up(self, lines: list[str]) -> None:
        if self.wait_until_up():
            time.sleep(1.0)
            say("=" * 60)
            say("ct-airflow is up")
            for line in lines:
                say(line)
            say("=" * 60)

    # -- main --------------------------------------------------------------------------------

    def run(self) -> int:
        pid_file = self.run_dir / PID_RUN
        other = _read_pid(pid_file)
        if other and other != os.getpid() and _alive_with(other, _PID_FILES[PID_RUN]):
            say(f"already running (pid {other}): `make stop` first")
            return 1
        pid_file.write_text(f"{os.getpid()}\n")
        # Also when started with SIGINT ignored (nohup, `cmd &` in a script): Ctrl-C must work
        # here, and the children must not inherit an ignored SIGINT (a handled one resets at exec).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _raise_stop)
        status = 0
        try:
            self.start()
            lines = self.banner(self.login)
            for line in lines:
                say(line)
            say("airflow standalone is starting (the first start takes a minute)...")
            threading.Thread(target=self._announce_when_up, args=(lines,), daemon=True).start()
            assert self.airflow is not None
            status = self.airflow.wait()
            say(f"airflow standalone exited with status {status}")
        except (KeyboardInterrupt, _Stop):
            say("stopping...")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                say(str(exc.code))
            status = 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _ignore_while_stopping)
            self.stop()
            if _read_pid(pid_file) == os.getpid():
                pid_file.unlink(missing_ok=True)
        return status


# --------------------------------------------------------------------------- stop / status


def stop_all(run_dir: Path = RUN_DIR, timeout: float = 120.0) -> int:
    """Stop a `run` from another shell, then anything its pid files still name, then the
    project's embedded PostgreSQL."""
    from ctlib.localsvc.postgres import EmbeddedPostgres

    stopped = []
    pid = _read_pid(run_dir / PID_RUN)
    if pid and _alive_with(pid, _PID_FILES[PID_RUN]):
        say(f"asking the running `make run` (pid {pid}) to stop...")
        os.kill(pid, signal.SIGTERM)
        if _wait_gone(pid, timeout):
            stopped.append("make run")
        else:
            say(f"pid {pid} did not stop within {timeout:.0f}s: stopping its services directly")
    for name in (PID_AIRFLOW, PID_CTLOG, PID_BROKER):  # leftovers of a killed `run`
        path = run_dir / name
        pid = _read_pid(path)
        if pid and name == PID_AIRFLOW:
            # standalone may be gone while its components and tasks (its session) still run
            if any(_alive_with(p, "airflow") for p in session_members(pid)):
                stop_session(pid)
                stopped.append(f"airflow (session {pid})")
        elif pid and _alive_with(pid, _PID_FILES[name]):
            stop_pid(pid)
            stopped.append(f"{name.removesuffix('.pid')} (pid {pid})")
        path.unlink(missing_ok=True)
    (run_dir / PID_RUN).unlink(missing_ok=True)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    if (run_dir / "postgres").is_dir() and EmbeddedPostgres(run_dir / "postgres").stop():
        stopped.append("embedded PostgreSQL")
    say("stopped: " + ", ".join(stopped) if stopped else "nothing was running")
    return 0


def status(run_dir: Path = RUN_DIR) -> int:
    from ctlib.localsvc.postgres import EmbeddedPostgres

    running = False
    for name, needle in _PID_FILES.items():
        pid = _read_pid(run_dir / name)
        if pid and _alive_with(pid, needle):
            running = True
            say(f"{name.removesuffix('.pid')}: pid {pid}")
    try:
        for key, value in json.loads((run_dir / STATE_FILE).read_text()).items():
            say(f"{key}: {value}")
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    port = EmbeddedPostgres(run_dir / "postgres").running_port()
    if port:
        running = True
        say(f"embedded PostgreSQL: 127.0.0.1:{port}")
    if not running:
        say("nothing is running")
    return 0 if running else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.localsvc.run",
        description="Run ct-airflow locally with airflow standalone (make run / demo / stop).",
    )
    parser.add_argument("action", nargs="?", default="run", choices=["run", "stop", "status"])
    parser.add_argument("--demo", action="store_true", help="ingest from 3 local CT logs")
    parser.add_argument("--port", type=int, default=None, help="UI port (default 8080)")
    parser.add_argument("--phishing-every", type=int, default=DEMO_PHISHING_EVERY, metavar="N",
                        help="demo: every Nth certificate has phishing-style names (0: none; "
                             "default %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.action == "stop":
        return stop_all()
    if args.action == "status":
        return status()
    return Orchestrator(demo=args.demo, ui_port=args.port, phishing_every=args.phishing_every).run()


if __name__ == "__main__":
    sys.exit(main())
