"""SIGKILL under the real scheduler: a task killed mid-fetch, a task killed mid-Parquet-write,
the scheduler killed and restarted mid-run. Each test ends with `python -m ctlib.audit` over
the lake and the Kafka topic (states from this stack's Airflow Variables).

The stack runs as separate processes of this machine, as in production (no `dag.test()`):

    airflow api-server | airflow dag-processor      (one pair for the module)
    airflow scheduler (LocalExecutor)               (one per test: its tasks get its env)

on a scratch database of the local PostgreSQL (127.0.0.1:5432), with a local CT log server
in this process (one log per test; `Faults(cap, delay)` makes get-entries slow, so a fetch
lasts seconds), the session's tansu broker as Kafka and a temporary lake. Runs are triggered
through the REST API (CT_SCHEDULE never fires). Backlogs are three ranges of
CT_ENTRIES_PER_TASK, so fetch tasks are mapped (one range may be fetched by the ingest task itself:
the one-range case of test 1 kills whichever task downloads).

Every Airflow process is started with start_new_session=True: its session holds exactly the
processes it started (LocalExecutor workers, each the supervisor of one task, and their
forked task runners). The process to kill is found by scanning /proc *within that session*
for the titles Airflow sets (supervisor `airflow worker -- LocalExecutor: <ti id>`, the
runner its child), cross-checked with the task instance's `pid` from the REST API. Nothing
outside the test's own sessions is ever signalled.

Detection is configured to tens of seconds instead of the 5-minute defaults:
task_instance_heartbeat_timeout 20 s (checked every 2 s), orphaned tasks checked every 10 s,
a scheduler whose heartbeat is 25 s old counts as dead (not lower: see the env below).

1. mid-fetch (three ranges, then one range): while a task is downloading its range (the log
   has served 10-50% of it, its file does not exist, the watermark is not past it), its
   supervisor and runner are SIGKILLed. Nobody reports the task: the scheduler must find it
   by its missing heartbeat ('heartbeat timeout' event), retry it, and the same run must
   complete with every index exactly once.
2. mid-write: the lake is polled every millisecond for the hidden temporary file of a range
   (`.<start>-<end>.parquet.<host>-<pid>.<uuid>.tmp`); the runner holding it open (its
   /proc/<pid>/fd) is SIGKILLed at once. Proved mid-write: the temporary outlives the
   runner and no final file of the range existed. Right after: DuckDB reads
   `certs/**/*.parquet` cleanly with no row of the range, the watermark is not past it, the
   REST API shows that pid's try failed. After the retry: the run completes, no temporary
   is left (the retry's writer removes a dead writer's temporary: ctlib.lake.files).
3. scheduler: SIGKILL of the scheduler while two fetch tasks download. Its LocalExecutor
   workers survive it and keep running their tasks; a new scheduler starts 4 s later,
   declares the old one dead, resets the orphaned task instances (new tries), and the old
   attempts are stopped by their own supervisors (heartbeat refused). The run completes,
   every certificate is on Kafka, the audit is clean. The old scheduler's idle workers and
   serve-logs process never exit (printed; stopped with the test's session at the end), and
   they hold its database connections open. A scheduler killed inside a transaction
   therefore keeps its row lock on the run, which the new scheduler skips: the test makes
   that timing certain (a connection that locked the run's row and went idle) and shows
   the run waits until the database's idle_in_transaction_session_timeout (60 s, set on
   the scratch database as the README asks) ends that transaction, then completes.

~4-5 minutes in all on 2 cores; `-s` shows each test's timeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from ctlib.localsvc import free_port, port_accepts
from ctlib.localsvc.broker import LocalBroker, consume_all, create_topics
from ctlib.localsvc.postgres import IDLE_IN_TRANSACTION_TIMEOUT_S, scratch_database
from ctlib.localsvc.run import session_members
from ctlib.testing import chaos
from ctlib.testing.ctlog import Faults, LocalCTLog, LogServer
from tests.paths import PROJECT_ROOT

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
TOPIC = "ct-certs-process-kills"
HEARTBEAT_TIMEOUT = 20  # [scheduler] task_instance_heartbeat_timeout, seconds
TASK_RETRIES = 4
LOGS = {"fetch": "Kill Fetch Log", "write": "Kill Write Log", "scheduler": "Kill Scheduler Log"}


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, session) of a live process, None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def _gone(pid: int) -> bool:
    stat = _stat(pid)
    return stat is None or stat[0] in ("Z", "X")


def _wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _open_paths(pid: int) -> set[str]:
    """Paths process `pid` has open (empty when it is gone)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        with contextlib.suppress(OSError):
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


@dataclass(frozen=True)
class TaskProcesses:
    """The processes of one running task instance under a LocalExecutor scheduler."""

    ti_id: str
    supervisor: int  # the LocalExecutor worker running the task's supervisor
    runner: int  # the forked task runner (the process executing the task's code)


def task_processes(session: int, ti_id: str) -> TaskProcesses | None:
    """The supervisor and runner of task instance `ti_id` among the processes of `session`:
    the supervisor's title is `airflow worker -- LocalExecutor: <ti id>`; the runner is its
    child (titled `airflow worker -- <ti id>` once started)."""
    members = {pid: chaos.process_title(pid) for pid in session_members(session)}
    supervisors = [pid for pid, cmd in members.items() if f"LocalExecutor: {ti_id}" in cmd]
    for supervisor in supervisors:
        children = [pid for pid in members if (_stat(pid) or ("", 0))[1] == supervisor]
        if len(children) == 1:
            return TaskProcesses(ti_id, supervisor, children[0])
    return None


class Component(chaos.Component):
    """One Airflow process (`airflow <args>`), leader of a session of its own, started at once."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        super().__init__(name, [str(VENV_BIN / "airflow"), *args], env, log_dir, cwd=PROJECT_ROOT)
        self.start()
        assert self.proc is not None
        self.session = self.proc.pid


# --------------------------------------------------------------------------- the log server


class ServedRanges:
    """Records, for one local log, which indexes get-entries answered (the log server runs
    in this process): proof that a fetch had started downloading its range."""

    def __init__(self, log: LocalCTLog) -> None:
        self._lock = threading.Lock()
        self._served: list[tuple[int, int]] = []
        inner = log.answer

        def answer(endpoint: str, query: dict[str, str]):
            result = inner(endpoint, query)
            if endpoint == "get-entries" and result.status == 200:
                with contextlib.suppress(ValueError, KeyError):
                    start = int(query["start"])
                    count = len(json.loads(result.body)["entries"])
                    with self._lock:
                        self._served.append((start, start + count))
            return result

        log.answer = answer  # the HTTP handler calls log.answer(endpoint, query)

    def count(self, start: int, end: int) -> int:
        """Distinct indexes of [start, end) served so far."""
        with self._lock:
            served = list(self._served)
        seen = set()
        for s, e in served:
            seen.update(range(max(s, start), min(e, end)))
        return len(seen)


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    root: Path
    db_url: str
    bootstrap: str
    server: LogServer = field(default_factory=LogServer)
    components: list[Component] = field(default_factory=list)
    schedulers: list[Component] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lake = self.root / "lake"
        self.log_dir = self.root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.logs = {key: self.server.add_log(name) for key, name in LOGS.items()}
        self.served = {key: ServedRanges(log) for key, log in self.logs.items()}
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        log_list = self.server.write_log_list(self.root / "log_list.json")
        from cryptography.fernet import Fernet

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "CT_"))}
        env.update({
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(self.root / "airflow_home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "6",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # each test unpauses its own DAG
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # REST API without a login
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # Dead tasks and dead schedulers are found in tens of seconds, not 5 minutes.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
            # Not lower: the job row's latest_heartbeat lags one scheduler_heartbeat_sec (5 s)
            # behind, so a live scheduler's looks up to ~11 s old here; at 10 a scheduler
            # declared itself dead and reset its own running tasks.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "25",
            "AIRFLOW_CONN_KAFKA_DEFAULT": json.dumps({"conn_type": "kafka", "extra": {"bootstrap.servers": self.bootstrap}}),
            "CT_LOG_LIST": str(log_list),
            "CT_LOG_LIST_SNAPSHOT": str(self.root / "cache" / "log_list.json"),
            "CT_LAKE": str(self.lake),
            "CT_START_AT": "beginning",
            "CT_SCHEDULE": "0 0 29 2 *",  # next on 2028-02-29: only the runs the tests trigger
            "CT_KAFKA_TOPIC": TOPIC,
            "CT_TASK_RETRIES": str(TASK_RETRIES),
            "CT_TASK_RETRY_DELAY": "1",
            "CT_HTTP_BACKOFF": "0.1",
            "CT_KAFKA_FLUSH_TIMEOUT": "30",
        })  # fmt: skip
        self.env = env

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        self.server.start()
        create_topics(self.bootstrap, [TOPIC])
        with self.db_connect("test-setup") as conn:  # as the README asks of an existing PostgreSQL
            name = conn.info.dbname
            conn.execute(f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = '
                         f"'{IDLE_IN_TRANSACTION_TIMEOUT_S}s'")  # fmt: skip
        self.cli(["db", "migrate"], "db-migrate", timeout=300)
        self.components.append(Component(
            "api-server", ["api-server", "--port", str(self.api_port), "--host", "127.0.0.1"], self.env, self.log_dir))
        self.components.append(Component("dag-processor", ["dag-processor"], self.env, self.log_dir))
        self.wait_for("the API server", lambda: self._http_ok("version"), 180)
        self.wait_for("the ingest DAGs to be parsed",
                      lambda: all(self._http_ok(f"dags/{self.dag_id(k)}") for k in LOGS), 180)  # fmt: skip
        print(f"stack up in {time.monotonic() - began:.0f}s: API {self.api_url}, lake {self.lake}")

    def stop(self) -> None:
        for component in [*self.schedulers, *reversed(self.components)]:
            component.stop()
        self.server.stop()

    def cli(self, args: list[str], name: str, timeout: float) -> None:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            done = subprocess.run([str(VENV_BIN / "airflow"), *args], env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=PROJECT_ROOT)  # fmt: skip
        assert done.returncode == 0, f"`airflow {' '.join(args)}`:\n{log.read_text(errors='replace')[-4000:]}"

    def start_scheduler(self, **runtime: str) -> Component:
        """A scheduler whose tasks see `runtime` CT_* settings (the task processes inherit
        its environment); each its own log-serving port (a killed one may still hold its)."""
        name = f"scheduler-{len(self.schedulers) + 1}"
        # PGAPPNAME: libpq names its connections, so pg_stat_activity tells them apart
        env = {**self.env, **runtime, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()), "PGAPPNAME": name}
        scheduler = Component(name, ["scheduler"], env, self.log_dir)
        self.schedulers.append(scheduler)
        return scheduler

    @contextlib.contextmanager
    def scheduler(self, **runtime: str) -> Iterator[Component]:
        """A scheduler for one test; it (and any other started meanwhile) stops afterwards."""
        first = len(self.schedulers)
        try:
            yield self.start_scheduler(**runtime)
        finally:
            for scheduler in self.schedulers[first:]:
                scheduler.stop()

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        """Poll `check()` until truthy; fail with the components' log tails after `timeout`
        seconds or when an Airflow component (other than a killed scheduler) exited."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            live = [*self.components, *(self.schedulers[-1:])]
            dead = [c for c in live if not c.alive()]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(c.name for c in dead)} exited" if dead else f"not within {timeout:.0f}s"
                tails = "\n".join(c.tail() for c in (dead or live))
                pytest.fail(f"waiting for {what}: {why}\n{tails}")
            time.sleep(interval)

    # -- REST API ------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(method, f"{self.api_url}/api/v2/{path}", timeout=30, **kwargs)
        if answer.status_code == 404 and method == "GET":
            return None
        assert answer.ok, f"{method} {path}: {answer.status_code} {answer.text[:500]}"
        return answer.json()

    def _http_ok(self, path: str) -> bool:
        try:
            return requests.get(f"{self.api_url}/api/v2/{path}", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    @staticmethod
    def dag_id(key: str) -> str:
        from ctlib.ct.loglist import slugify

        return f"ct_ingest__{slugify(LOGS[key])}"

    def start_run(self, key: str) -> str:
        """Unpause the DAG of log `key` and trigger a run; its run_id."""
        dag_id = self.dag_id(key)
        self.api("PATCH", f"dags/{dag_id}", json={"is_paused": False})
        return self.api("POST", f"dags/{dag_id}/dagRuns", json={"logical_date": None})["dag_run_id"]

    def run_state(self, key: str, run_id: str) -> str:
        return self.api("GET", f"dags/{self.dag_id(key)}/dagRuns/{run_id}")["state"]

    def task_instances(self, key: str, run_id: str) -> list[dict]:
        found = self.api("GET", f"dags/{self.dag_id(key)}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
        return found["task_instances"] if found else []

    def ranges(self, key: str, run_id: str) -> dict[int, tuple[int, int]] | None:
        """{map_index: (start, end)} of the run's mapped fetch tasks, from the ingest task's XCom."""
        found = self.api("GET", f"dags/{self.dag_id(key)}/dagRuns/{run_id}/taskInstances/ingest/xcomEntries/return_value",
                         params={"deserialize": True})  # fmt: skip
        if not found:
            return None
        value = found["value"]
        if isinstance(value, str):
            value = json.loads(value)
        return {i: (w["start"], w["end"]) for i, w in enumerate(value)}

    def db_connect(self, application_name: str, autocommit: bool = True) -> psycopg.Connection:
        """A libpq connection to the metadata database."""
        url = self.db_url.replace("postgresql+psycopg2://", "postgresql://", 1)
        return psycopg.connect(url, application_name=application_name, autocommit=autocommit, connect_timeout=10)

    def db_clients(self, application_name: str) -> list[tuple[int, str]]:
        """(server pid, state) of every open connection of client `application_name`."""
        with self.db_connect("test-observer") as conn:
            rows = conn.execute(
                "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
                (application_name,),
            ).fetchall()
        return [tuple(row) for row in rows]

    def watermark(self, key: str) -> int | None:
        found = self.api("GET", f"variables/ct_state__{self.logs[key].slug}")
        return json.loads(found["value"])["next_index"] if found else None

    def heartbeat_timeouts(self, key: str) -> list[dict]:
        found = self.api("GET", "eventLogs", params={"dag_id": self.dag_id(key), "event": "heartbeat timeout", "limit": 100})
        return found["event_logs"] if found else []

    # -- checks ------------------------------------------------------------------------------

    def audit(self, key: str) -> str:
        """`python -m ctlib.audit` of log `key` over the lake and the Kafka topic, as an
        operator runs it (states from this stack's Airflow Variables); asserts it is clean."""
        slug = self.logs[key].slug
        done = subprocess.run(
            [sys.executable, "-m", "ctlib.audit", "--log", slug, "--lake", str(self.lake),
             "--kafka", "--bootstrap", self.bootstrap, "--topic", TOPIC, "--kafka-timeout", "60"],
            env=self.env, capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
        )  # fmt: skip
        report = done.stdout + done.stderr
        print(report)
        assert done.returncode == 0, f"audit of {slug} found problems (exit {done.returncode}):\n{report}"
        assert f"{slug} " in report and " OK" in report, report
        return report

    def lake_files(self, key: str) -> tuple[list[Path], list[Path]]:
        """(visible Parquet files, hidden temporaries) of log `key`'s certs and errors."""
        slug = self.logs[key].slug
        files = [p for t in ("certs", "errors") for p in (self.lake / t / f"log={slug}").rglob("*") if p.is_file()]
        visible = [p for p in files if p.suffix == ".parquet" and not p.name.startswith(".")]
        return visible, [p for p in files if p not in visible]

    def grow(self, key: str, n: int) -> int:
        log = self.logs[key]
        log.grow(n)
        return log.publish().tree_size

    def wait_caught_up(self, key: str, run_id: str, timeout: float) -> list[str]:
        """Wait until the watermark is the log's size with no run active; a run that ends
        failed is followed by a new one. The run ids, in order."""
        size, runs = self.logs[key].sth.tree_size, [run_id]

        def done() -> bool:
            state = self.run_state(key, runs[-1])
            if state == "failed":
                print(f"run {runs[-1]} failed: triggering another")
                runs.append(self.start_run(key))
                return False
            return state == "success" and self.watermark(key) == size

        self.wait_for(f"{self.dag_id(key)} to reach {size}", done, timeout, interval=1.0)
        return runs


def _ensure_postgres() -> None:
    if port_accepts(PG_PORT, PG_HOST, timeout=2.0):
        return
    subprocess.run(PG_START, shell=True, check=False, timeout=60, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_accepts(PG_PORT, PG_HOST, timeout=2.0):
        assert time.monotonic() < deadline, f"PostgreSQL does not start with `{PG_START}`"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, kafka_broker: LocalBroker) -> Iterator[Stack]:
    _ensure_postgres()
    with scratch_database("ct_kills", PG_HOST, PG_PORT) as url:
        s = Stack(tmp_path_factory.mktemp("kills"), url, kafka_broker.bootstrap_servers)
        try:
            s.start()
            yield s
        finally:
            s.stop()


def lake_reads_cleanly(lake: Path, slug: str) -> dict[int, int]:
    """What a reader of the whole `certs/**/*.parquet` sees (every file must read), as
    {index: copies} of log `slug`."""
    pattern = str(lake / "certs" / "**" / "*.parquet")
    if not any((lake / "certs").rglob("*.parquet")):
        with pytest.raises(duckdb.IOException, match="No files found"):  # not even a temporary
            duckdb.sql(f"select count(*) from read_parquet('{pattern}')").fetchall()
        return {}
    rows = duckdb.execute(f"select log_slug, index, count(*) from read_parquet('{pattern}', hive_partitioning = true) "
                          "group by all").fetchall()  # fmt: skip
    return {index: n for log_slug, index, n in rows if log_slug == slug}


def clock(began: float) -> str:
    return f"[{time.monotonic() - began:6.1f}s]"


# --------------------------------------------------------------------------- 1. mid-fetch


@pytest.mark.parametrize("ranges", [3, 1], ids=["three-ranges", "one-range"])
def test_task_killed_mid_fetch_is_found_by_its_missing_heartbeat_and_retried(stack: Stack, ranges: int) -> None:
    """Three ranges map fetch tasks; one range may be fetched by the ingest task itself (CT_INLINE_ENTRIES):
    whichever task downloads is killed."""
    began = time.monotonic()
    key, per_task = "fetch", 2000
    log = stack.logs[key]
    log.faults = Faults(cap=50, delay=0.8)  # 40 get-entries of 50 per range, 4 in flight: ~8 s
    first = stack.watermark(key) or 0
    size = stack.grow(key, ranges * per_task)
    with stack.scheduler(CT_ENTRIES_PER_TASK=str(per_task)) as scheduler:
        run_id = stack.start_run(key)

        def victim() -> tuple[dict, tuple[int, int], TaskProcesses, int] | None:
            """A running task of the run with its range partly downloaded and not written."""
            for ti in stack.task_instances(key, run_id):
                if ti["state"] != "running":
                    continue
                if ti["task_id"] == "fetch":
                    start, end = (stack.ranges(key, run_id) or {}).get(ti["map_index"], (0, 0))
                else:  # the ingest task fetching a small backlog itself: all of it
                    start, end = first, size
                served = stack.served[key].count(start, end)
                procs = task_processes(scheduler.session, ti["id"])
                visible, _ = stack.lake_files(key)
                written = any(p.name.startswith(f"{start:012d}-") for p in visible)
                if procs and end > start and (end - start) // 10 <= served < (end - start) // 2 and not written:
                    return ti, (start, end), procs, served
            return None

        ti, (start, end), procs, served = stack.wait_for("a task downloading its range", victim, 120, 0.1)
        assert ti["pid"] == procs.runner, f"REST pid {ti['pid']} is not the runner {procs}"
        mark = stack.watermark(key)
        # Both: the supervisor first (else it would report the runner's death at once).
        os.kill(procs.supervisor, signal.SIGKILL)
        os.kill(procs.runner, signal.SIGKILL)
        killed_at = time.monotonic()
        assert _wait_gone([procs.supervisor, procs.runner]), "the killed task processes are still there"
        name = f"{ti['task_id']}[{ti['map_index']}]"
        print(f"{clock(began)} SIGKILLed {name} {procs} of [{start}, {end}) after "
              f"{served}/{end - start} entries were served; watermark {mark}")
        assert mark is not None and mark <= start, f"watermark {mark} is past the range [{start}, {end}) being fetched"
        visible, _ = stack.lake_files(key)
        assert not any(p.name.startswith(f"{start:012d}-") for p in visible), "the range's file exists"
        assert stack.served[key].count(start, end) < end - start, "the whole range had been served"

        def same_task(tis: list[dict]) -> dict:
            return next(t for t in tis if t["task_id"] == ti["task_id"] and t["map_index"] == ti["map_index"])

        def left_running() -> dict | None:
            now = same_task(stack.task_instances(key, run_id))
            return now if (now["state"] != "running" or now["try_number"] > ti["try_number"]) else None

        after = stack.wait_for("the scheduler to notice the killed task", left_running, 3 * HEARTBEAT_TIMEOUT + 30)
        detected = time.monotonic() - killed_at
        print(f"{clock(began)} noticed {detected:.0f}s after the kill: {after['state']}, try {after['try_number']}")
        assert detected < 3 * HEARTBEAT_TIMEOUT + 30
        timeouts = stack.heartbeat_timeouts(key)
        assert any(e.get("task_id") == ti["task_id"] and e.get("map_index") == ti["map_index"]
                   and e.get("try_number") == ti["try_number"] for e in timeouts), \
            f"no 'heartbeat timeout' event for {name} try {ti['try_number']}: {timeouts}"  # fmt: skip

        runs = stack.wait_caught_up(key, run_id, 240)
        print(f"{clock(began)} caught up: runs {runs}")
    final = same_task(stack.task_instances(key, run_id))
    assert runs == [run_id], "the killed run itself completes (its task retried)"
    assert final["state"] == "success" and final["try_number"] > ti["try_number"], final
    assert stack.watermark(key) == size
    assert lake_reads_cleanly(stack.lake, log.slug) == dict.fromkeys(range(size), 1)
    stack.audit(key)


# --------------------------------------------------------------------------- 2. mid-write


@dataclass
class WriteKill:
    temporary: Path
    final: Path
    runner: int
    ti_id: str
    watermark: int | None
    confirmed: bool = False  # the temporary outlived the runner and no final file existed
    size: int = 0  # of the temporary after the runner died
    rows: int | None = None  # in the temporary's footer, None: no footer (a partial file)
    note: str = ""


def _grows_to(path: str, size: int, timeout: float) -> bool:
    """Wait (polling every ~0.1 ms) until file `path` holds `size` bytes; False once it is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.stat(path).st_size >= size:
                return True
        except FileNotFoundError:
            return False
        time.sleep(0.0001)
    return False


def kill_a_writer(stack: Stack, key: str, scheduler: Component, run_id: str, began: float,
                  kills: list[WriteKill]) -> WriteKill | None:
    """While run `run_id` goes on, poll log `key`'s partitions every ~1 ms for a hidden
    temporary; SIGKILL the task runner that holds it open. Returns the first kill that
    happened mid-write (None if the run ended first); every kill is appended to `kills`."""
    certs = stack.lake / "certs" / f"log={stack.logs[key].slug}"
    runners: dict[int, str] = {}  # {pid: ti id} of the task runners, refreshed in a thread

    def refresh_runners(stop: threading.Event) -> None:
        nonlocal runners
        while not stop.is_set():
            runners = chaos.task_runners(scheduler.session)
            stop.wait(0.1)

    stop = threading.Event()
    watcher = threading.Thread(target=refresh_runners, args=(stop,), daemon=True)
    watcher.start()
    seen: set[str] = set()
    deadline, next_check, before = time.monotonic() + 240, 0.0, len(kills)
    try:
        # At most TASK_RETRIES kills in a run (a kill that lands after the rename also costs
        # its task a try): a task killed every time still has a try left to succeed.
        while len(kills) - before < TASK_RETRIES:
            assert time.monotonic() < deadline, f"run {run_id} still going after 240 s: {kills}"
            if time.monotonic() > next_check:  # every 2 s: is the run still going?
                next_check = time.monotonic() + 2
                if stack.run_state(key, run_id) in ("success", "failed"):
                    return None
            try:
                days = [d.path for d in os.scandir(certs) if d.is_dir()]
            except FileNotFoundError:
                days = []
            temporaries = []
            for day in days:
                with contextlib.suppress(FileNotFoundError):
                    temporaries += [e.path for e in os.scandir(day) if e.name.startswith(".") and e.name.endswith(".tmp")]
            for temporary in temporaries:
                if temporary in seen:
                    continue
                current = runners
                writer = next((pid for pid in current if temporary in _open_paths(pid)), None)
                if writer is None:
                    continue  # closed already (being renamed): too late for this one
                seen.add(temporary)
                # Once the first column chunk is on disk (pyarrow writes the file as it
                # encodes: ~1 KiB after a few ms of a 20-100 ms write), the kill leaves a
                # partial file rather than an empty one.
                if not _grows_to(temporary, 1024, timeout=0.5):
                    continue  # renamed already: too late for this one
                name = os.path.basename(temporary)[1:].split(".parquet.", 1)[0] + ".parquet"
                final = Path(os.path.dirname(temporary)) / name
                final_before = final.exists()
                os.kill(writer, signal.SIGKILL)
                assert _wait_gone([writer]), f"runner {writer} survived SIGKILL"
                kill = WriteKill(Path(temporary), final, writer, current[writer], stack.watermark(key))
                kills.append(kill)
                # Mid-write for sure: the writer renames its temporary or deletes it on an
                # error; only a death in between leaves it. And no older copy was visible.
                kill.confirmed = kill.temporary.exists() and not final_before and not final.exists()
                if kill.temporary.exists():
                    kill.size = kill.temporary.stat().st_size
                    try:
                        kill.rows = pq.read_metadata(kill.temporary).num_rows
                    except (OSError, pa.ArrowException) as err:
                        kill.rows = None
                        kill.note = f"unreadable: {err}; "
                    kill.note = (f"temporary left ({kill.size} bytes, {kill.note or f'{kill.rows} rows; '}"
                                 f"final before/after: {final_before}/{final.exists()})")
                else:
                    kill.note = f"temporary gone (renamed before the kill landed), final: {final.exists()}"
                print(f"{clock(began)} SIGKILLed runner {writer} writing {kill.temporary.name}: {kill.note}")
                if kill.confirmed:
                    return kill
                break
            time.sleep(0.001)
    finally:
        stop.set()
        watcher.join()
    return None


def test_task_killed_mid_parquet_write_leaves_nothing_visible_and_recovers(stack: Stack) -> None:
    began = time.monotonic()
    key, per_task = "write", 10_000  # a file of 10,000 certificates takes ~60-100 ms to write
    log = stack.logs[key]
    log.faults = Faults(cap=1000)
    kills: list[WriteKill] = []
    with stack.scheduler(CT_ENTRIES_PER_TASK=str(per_task)) as scheduler:
        for attempt in range(1, 4):  # each run writes three files: three chances to catch one
            size = stack.grow(key, 3 * per_task)
            run_id = stack.start_run(key)
            kill = kill_a_writer(stack, key, scheduler, run_id, began, kills)
            if kill is not None:
                break
            print(f"{clock(began)} run {attempt} wrote all its files before a kill landed: another run")
            stack.wait_caught_up(key, run_id, 240)
        assert kill is not None, f"never killed a writer mid-write in 3 runs: {kills}"
        start, end = (int(x) for x in kill.final.name.removesuffix(".parquet").split("-"))
        # Right after the kill: readers see no partial file and no row of the range; the
        # watermark is not past it.
        assert kill.watermark is not None and kill.watermark <= start, f"watermark {kill.watermark} past [{start}, {end})"
        counts = lake_reads_cleanly(stack.lake, log.slug)
        assert not any(start <= i < end for i in counts), f"rows of [{start}, {end}) visible after the kill"
        assert all(n == 1 for n in counts.values())
        # The REST API agrees: the try of that range's fetch task with the killed pid failed.
        map_index = next(i for i, r in stack.ranges(key, run_id).items() if r == (start, end))

        def killed_try() -> dict | None:
            tries = stack.api("GET", f"dags/{stack.dag_id(key)}/dagRuns/{run_id}/taskInstances/fetch/{map_index}/tries")
            return next((t for t in tries["task_instances"]
                         if t["pid"] == kill.runner and t["state"] not in ("running", "success")), None)  # fmt: skip

        failed = stack.wait_for(f"fetch[{map_index}] pid {kill.runner} to be reported", killed_try, 60)
        print(f"{clock(began)} fetch[{map_index}] try {failed['try_number']} (pid {kill.runner}): {failed['state']}")

        runs = stack.wait_caught_up(key, run_id, 240)
        print(f"{clock(began)} caught up: runs {runs}")
    assert stack.watermark(key) == size
    final = next(t for t in stack.task_instances(key, run_id) if t["task_id"] == "fetch" and t["map_index"] == map_index)
    assert final["state"] == "success" and final["try_number"] > failed["try_number"], final
    visible, leftovers = stack.lake_files(key)
    assert kill.final in visible
    assert 0 < kill.size < kill.final.stat().st_size, "the kill left a partial file"
    assert not kill.temporary.exists(), "the retry's writer did not remove the killed writer's temporary"
    assert leftovers == [], f"temporary files left in the lake: {leftovers}"
    assert lake_reads_cleanly(stack.lake, log.slug) == dict.fromkeys(range(size), 1)
    stack.audit(key)


# --------------------------------------------------------------------------- 3. scheduler


def _pss_mb(pids) -> float:
    """Proportional set size of `pids` together (shared pages counted once), MiB."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, StopIteration):
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            total += int(next(line.split()[1] for line in lines if line.startswith("Pss:")))
    return total / 1024


def test_scheduler_killed_and_restarted_mid_run_completes_the_ingest(stack: Stack, kafka_broker: LocalBroker) -> None:
    began = time.monotonic()
    key, per_task = "scheduler", 2000
    log = stack.logs[key]
    # Slow (~80 s per range) until the new scheduler has reset the orphaned tasks: they must
    # still be running then. Fast afterwards.
    log.faults = Faults(cap=50, delay=8.0)
    size = stack.grow(key, 3 * per_task)
    runtime = {"CT_ENTRIES_PER_TASK": str(per_task)}
    with stack.scheduler(**runtime) as first:
        run_id = stack.start_run(key)

        def fetching() -> dict[int, tuple[dict, TaskProcesses, tuple[int, int]]] | None:
            ranges = stack.ranges(key, run_id)
            found = {}
            for ti in stack.task_instances(key, run_id) if ranges else []:
                if ti["task_id"] == "fetch" and ti["state"] == "running":
                    start, end = ranges[ti["map_index"]]
                    procs = task_processes(first.session, ti["id"])
                    if procs and 0 < stack.served[key].count(start, end) < end - start:
                        found[ti["map_index"]] = (ti, procs, (start, end))
            return found if len(found) == 2 else None  # both fetch slots busy downloading

        in_flight = stack.wait_for("two fetch tasks downloading", fetching, 120, 0.2)
        mark = stack.watermark(key)
        first.sigkill()
        killed_at = time.monotonic()
        time.sleep(1)
        orphans = {pid: chaos.process_title(pid) for pid in session_members(first.session)}
        print(f"{clock(began)} SIGKILLed the scheduler {first.proc.pid} while fetch{sorted(in_flight)} were "
              f"downloading; watermark {mark}; left in its session: {orphans}")
        for ti, procs, (start, end) in in_flight.values():
            assert mark is not None and mark <= start
            assert procs.runner in orphans and procs.supervisor in orphans, "the running tasks outlive the scheduler"
            visible, _ = stack.lake_files(key)
            assert not any(p.name.startswith(f"{start:012d}-") for p in visible)
        held = stack.db_clients(first.name)
        assert held, "the killed scheduler's database connections outlive it (the workers it forked hold them)"
        print(f"{clock(began)} the killed scheduler's database connections still open: {held}")
        # Killed inside a transaction (a matter of timing: it failed CI twice), such a
        # connection keeps its row locks, and the next scheduler skips a locked run (SELECT
        # ... FOR UPDATE SKIP LOCKED). Make that timing certain: a connection that locked the
        # run's row and went idle, as the killed scheduler's does. Only the database's
        # idle_in_transaction_session_timeout (README) ends it.
        zombie = stack.db_connect(f"{first.name}-locked", autocommit=False)
        zombie.execute("SELECT id FROM dag_run WHERE dag_id = %s AND run_id = %s FOR UPDATE", (stack.dag_id(key), run_id))
        locked_at = time.monotonic()
        time.sleep(3)  # down for a few seconds
        second = stack.start_scheduler(**runtime)

        def orphaned_now() -> list[dict]:
            """The task instances of the orphaned fetch tasks as they are now."""
            now = {t["map_index"]: t for t in stack.task_instances(key, run_id) if t["task_id"] == "fetch"}
            return [now[i] for i in in_flight]

        def reset() -> list[dict] | None:
            # A reset clears the state and leaves the try number alone; the next try begins when
            # the task is scheduled again, which for one of them may wait behind fetch[2]
            # (CT_FETCH_PARALLELISM is 2). An orphan that finished on its own was not reset.
            tis = orphaned_now()

            def was_reset(ti: dict) -> bool:
                orphaned_try = in_flight[ti["map_index"]][0]["try_number"]
                return ti["try_number"] > orphaned_try or ti["state"] in (None, "scheduled", "queued")

            return tis if all(was_reset(t) for t in tis) else None

        retried = stack.wait_for("the new scheduler to reset the orphaned fetch tasks", reset, 120, 1.0)
        print(f"{clock(began)} orphaned tasks reset {time.monotonic() - killed_at:.0f}s after the kill: "
              f"{[(t['map_index'], t['state'], t['try_number']) for t in retried]}")
        lock_left = IDLE_IN_TRANSACTION_TIMEOUT_S - (time.monotonic() - locked_at)
        if lock_left > 10:  # the reset came well before the timeout (as it does, ~20-30 s)
            time.sleep(5)
            waiting = orphaned_now()
            assert all(t["state"] is None for t in waiting), \
                f"the reset tasks were scheduled while the run was locked: {waiting}"  # fmt: skip
            print(f"{clock(began)} the reset tasks wait unscheduled while the run's row is locked ({lock_left:.0f}s left)")
        said = second.log_path.read_text(errors="replace").splitlines()
        print("\n".join(f"  scheduler-2: {line[:160]}" for line in said
                        if "SchedulerJob instances as failed" in line or "orphaned TaskInstances" in line))
        # Airflow stops the orphaned attempts itself (their heartbeats are refused now), so
        # no two writers of a range stay side by side.
        runners = [procs.runner for _, procs, _ in in_flight.values()]
        assert _wait_gone(runners, timeout=60), \
            f"orphaned task runners still alive a minute after the reset: {[p for p in runners if not _gone(p)]}"
        print(f"{clock(began)} orphaned runners {runners} gone")
        log.faults = Faults(cap=50, delay=0.2)
        runs = stack.wait_caught_up(key, run_id, 240)
        print(f"{clock(began)} caught up {time.monotonic() - killed_at:.0f}s after the kill, "
              f"{time.monotonic() - locked_at - IDLE_IN_TRANSACTION_TIMEOUT_S:.0f}s after the lock's timeout: runs {runs}")
        assert time.monotonic() - locked_at > IDLE_IN_TRANSACTION_TIMEOUT_S, "caught up although the run's row was locked"
        assert not stack.db_clients(f"{first.name}-locked"), "the server did not end the idle transaction"
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout) as ended:
            zombie.execute("SELECT 1")
        zombie.close()
        print(f"{clock(began)} the locking connection was ended by the server: {str(ended.value).strip()[:120]}")
        leaked = {pid: chaos.process_title(pid) for pid in session_members(first.session)}
        print(f"{clock(began)} still alive in the killed scheduler's session ({_pss_mb(leaked):.0f} MiB PSS): {leaked}")
        history = [(t["task_id"], t["map_index"], t["state"], t["try_number"]) for t in stack.task_instances(key, runs[0])]
        print(f"task instances of {runs[0]}: {history}")
        assert second.alive()
    assert stack.watermark(key) == size
    keys = {r.key.decode() for r in consume_all(kafka_broker.bootstrap_servers, TOPIC, timeout=60)}
    missing = [i for i in range(size) if f"{log.log_id_b64}:{i}" not in keys]
    assert not missing, f"{len(missing)} certificates not on Kafka, e.g. {missing[:10]}"
    visible, leftovers = stack.lake_files(key)
    assert leftovers == [], f"temporary files left in the lake: {leftovers}"
    stack.audit(key)
