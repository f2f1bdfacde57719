"""The production shape of docker-compose.yaml, without Docker: CeleryExecutor end to end.

One test runs, as separate processes of this machine,

    airflow scheduler | airflow dag-processor | airflow api-server --port <free>
    airflow celery worker -H ct-e2e-worker-1@%h -c 2 -q default
    airflow celery worker -H ct-e2e-worker-2@%h -c 2 -q default

against the local PostgreSQL (127.0.0.1:5432, a fresh database of its own, dropped at the
end, which is also the Celery result backend) and the local Redis (127.0.0.1:6379, an empty
DB number of its own as the Celery broker, flushed at the end), with a tansu broker as Kafka
and a temporary folder as the lake (the "shared volume"). Two local CT logs (one RFC 6962,
one static-ct-api / tiled) grow by a few entries a second while the pipeline ingests them
for several minutes; then their growth stops, the test waits until each watermark reaches
its log's published size, stops everything and proves:

- the lake (DuckDB over `certs/log=<slug>/**/*.parquet`) holds every index from 0 to the
  watermark exactly once, and the watermark is the log's size: no gap, no duplicate;
- Kafka `ct-certs` holds every key `<log_id>:<index>` of both logs (at-least-once: a retried
  range may send a key twice, never miss one);
- every ingest DAG ran at least 3 runs that fetched, none of them failed;
- tasks ran on BOTH workers: the `hostname` of the task instances in the metadata database
  (each worker reports its own name through `[core] hostname_callable`; on one machine
  both would otherwise report the same FQDN), cross-checked against the workers' own logs.

PostgreSQL and Redis run before every session and in CI (services of this kind of machine);
if one is down the test starts it with the machine's own command, it never skips.
The other DAGs of dags/ are parsed (DAGs are paused at creation, as in docker-compose.yaml)
and only the two ingest DAGs are unpaused, so the downstream and maintenance DAGs neither
run nor load the two cores.

CT_E2E_INGEST_SECONDS (default 150) sets how long the logs grow after both logs' first
commit. The tail takes up to three more runs (a minute each): a tiled log's last, partial
tile is read only once a run has seen it stay partial for CT_PARTIAL_TILE_WAIT seconds. Component logs stay in the test's tmp_path (`logs/*.log`) and are quoted on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import duckdb
import pytest

from ctlib.localsvc import free_port, port_accepts
from ctlib.localsvc.broker import LocalBroker, consume_all
from ctlib.localsvc.postgres import scratch_database
from ctlib.localsvc.run import session_members
from ctlib.testing.ctlog import LogServer
from tests.paths import PROJECT_ROOT

pytestmark = pytest.mark.e2e

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)
WORKERS = ("ct-e2e-worker-1", "ct-e2e-worker-2")
INGEST_SECONDS = float(os.environ.get("CT_E2E_INGEST_SECONDS", "150"))
RATE = 3.0  # entries per second per log
ENTRIES_PER_TASK = 60  # ~3 mapped fetch tasks per minute of growth
CLAIM_KEY = "ct-airflow:e2e-celery:claim"
VENV_BIN = Path(sys.executable).parent

# `[core] hostname_callable` of the workers: each reports the name it was given.
HOSTNAME_MODULE = '''\
import os
import socket


def worker_hostname():
    return os.environ.get("CT_E2E_WORKER_NAME") or socket.getfqdn()
'''


# --------------------------------------------------------------------------- services


def _ensure_service(name: str, port: int, command: str, timeout: float = 60.0) -> None:
    if port_accepts(port, "127.0.0.1", timeout=2.0):
        return
    print(f"{name} is down on 127.0.0.1:{port}: starting it: {command}", flush=True)
    subprocess.run(command, shell=True, check=False, timeout=timeout, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not port_accepts(port, "127.0.0.1", timeout=2.0):
        if time.monotonic() > deadline:
            pytest.fail(f"{name} does not accept connections on 127.0.0.1:{port} after `{command}`")
        time.sleep(0.5)


def _pg(dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=True, connect_timeout=10)


@pytest.fixture
def metadata_db():
    """A fresh PostgreSQL database (unique name), dropped at the end whatever happens."""
    _ensure_service("PostgreSQL", PG_PORT, PG_START)
    with scratch_database("ct_celery_e2e", PG_HOST, PG_PORT, PG_USER) as url:
        yield url.rsplit("/", 1)[1]


@pytest.fixture
def redis_db():
    """The number of a Redis DB that was empty and is now ours (a claim key set with NX in
    it, so a concurrent session picks another); flushed at the start and at the end."""
    import redis

    _ensure_service("Redis", REDIS_PORT, REDIS_START)
    admin = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=10)
    try:
        databases = int(admin.config_get("databases").get("databases", 16))
    except redis.RedisError:
        databases = 16
    token = uuid.uuid4().hex
    chosen = None
    for number in range(databases - 1, 0, -1):  # DB 0 is everyone's default: leave it
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=number, socket_timeout=10)
        if client.dbsize() == 0 and client.set(CLAIM_KEY, token, nx=True) and client.dbsize() == 1:
            chosen = client
            break
        client.close()
    admin.close()
    if chosen is None:
        pytest.fail(f"no empty Redis DB among 1..{databases - 1} on {REDIS_HOST}:{REDIS_PORT}")
    number = chosen.connection_pool.connection_kwargs["db"]
    try:
        yield number
    finally:
        with contextlib.suppress(redis.RedisError):
            chosen.flushdb()
        chosen.close()


# --------------------------------------------------------------------------- processes


class Component:
    """One Airflow process, leader of a session of its own (its task processes, which put
    themselves in process groups of their own, stay in that session)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "airflow"), *args], env=env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=PROJECT_ROOT,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return f"--- {self.name} ({self.log_path.name}), last {chars} chars ---\n{self.log_text()[-chars:]}"

    def stop(self, grace: float) -> None:
        """SIGTERM to the leader (warm shutdown for a Celery worker), then SIGTERM and
        SIGKILL to every process left in its session."""
        sid = self.proc.pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(sid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            members = session_members(sid)
            if not members:
                break
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and session_members(sid):
                self.proc.poll()
                time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _run_cli(args: list[str], env: dict[str, str], log_dir: Path, name: str, timeout: float) -> None:
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.run(
            [str(VENV_BIN / "airflow"), *args], env=env, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, timeout=timeout, cwd=PROJECT_ROOT,
        )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"`airflow {' '.join(args)}` exited {proc.returncode}:\n{log.read_text(errors='replace')[-4000:]}")


def _wait_for(what: str, check, timeout: float, components: list[Component], interval: float = 2.0):
    """Poll `check()` until it returns a truthy value; fail (with the components' log tails)
    after `timeout` seconds or when a component died."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        dead = [c for c in components if not c.alive()]
        if dead or time.monotonic() > deadline:
            reason = f"{', '.join(c.name for c in dead)} exited" if dead else f"not within {timeout:.0f}s"
            tails = "\n".join(c.tail() for c in (dead or components))
            pytest.fail(f"waiting for {what}: {reason}\n{tails}")
        time.sleep(interval)


# --------------------------------------------------------------------------- metadata DB


def _query(dbname: str, sql: str, params: tuple = ()) -> list[tuple]:
    with _pg(dbname) as conn:
        return conn.execute(sql, params).fetchall()


def _watermarks(dbname: str, fernet_key: str, slugs: list[str]) -> dict[str, int]:
    from cryptography.fernet import Fernet

    keys = [f"ct_state__{slug}" for slug in slugs]
    try:
        rows = _query(dbname, "select key, val, is_encrypted from variable where key = any(%s)", (keys,))
    except Exception:  # the table may not exist a moment after the database did
        return {}
    found = {}
    for key, val, encrypted in rows:
        text = Fernet(fernet_key.encode()).decrypt(val.encode()).decode() if encrypted else val
        found[key.removeprefix("ct_state__")] = int(json.loads(text)["next_index"])
    return found


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------- the test


def test_celery_executor_two_workers_ingest_without_gap_or_duplicate(metadata_db, redis_db, tmp_path):
    started = time.monotonic()
    home, lake, log_dir, hooks = (tmp_path / d for d in ("airflow_home", "lake", "logs", "hooks"))
    for d in (home, lake, log_dir, hooks):
        d.mkdir()
    (hooks / "ct_e2e_hostname.py").write_text(HOSTNAME_MODULE)

    from cryptography.fernet import Fernet

    fernet_key = Fernet.generate_key().decode()
    api_port = free_port()
    db_url = f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{metadata_db}"
    components: list[Component] = []
    broker = LocalBroker(topics=["ct-certs"], log_path=log_dir / "tansu.log")
    server = LogServer()
    try:
        broker.start()
        classic = server.add_log("E2E Celery Classic Log", initial_size=200, rate=RATE)
        tiled = server.add_log("E2E Celery Tiled Log", initial_size=600, rate=RATE, tiled=True)
        logs = [classic, tiled]
        slugs = [log.slug for log in logs]
        dag_ids = [f"ct_ingest__{slug}" for slug in slugs]
        log_list = server.write_log_list(tmp_path / "log_list.json")
        server.start()

        # Every AIRFLOW*/CT_* variable of this process (the integration tests' conftest sets
        # some at import) is dropped: the components see only what is set here.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "CT_"))}
        env.update({
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(p for p in (str(hooks), env.get("PYTHONPATH", "")) if p),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__FERNET_KEY": fernet_key,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "ct_e2e_hostname.worker_hostname",
            # As docker-compose.yaml: new DAGs paused; the test unpauses the two ingest DAGs.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{metadata_db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            # Shared by every component: the API server signs task tokens the workers use.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            **broker.airflow_env(),  # AIRFLOW_CONN_KAFKA_DEFAULT
            "CT_LOG_LIST": str(log_list),
            "CT_LOG_LIST_SNAPSHOT": str(tmp_path / "cache" / "log_list.json"),
            "CT_LAKE": str(lake),
            "CT_START_AT": "beginning",
            "CT_ENTRIES_PER_TASK": str(ENTRIES_PER_TASK),
            "CT_PARTIAL_TILE_WAIT": "5",
            "CT_TASK_RETRY_DELAY": "5",
        })  # fmt: skip

        _run_cli(["db", "migrate"], env, log_dir, "db-migrate", timeout=300)

        def worker_env(name: str) -> dict[str, str]:
            # Each worker its own log-serving port (two on one host), and its own name.
            return {**env, "CT_E2E_WORKER_NAME": name, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}

        components.append(Component("api-server", ["api-server", "--port", str(api_port), "--host", "127.0.0.1"], env, log_dir))
        components.append(Component("scheduler", ["scheduler"], env, log_dir))
        components.append(Component("dag-processor", ["dag-processor"], env, log_dir))
        workers = [
            Component(name, ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "2", "--queues", "default"],
                      worker_env(name), log_dir)
            for name in WORKERS
        ]  # fmt: skip
        components.extend(workers)

        _wait_for("the API server", lambda: _http_ok(f"http://127.0.0.1:{api_port}/api/v2/version"), 180, components)
        _wait_for("both Celery workers", lambda: all(" ready." in w.log_text() for w in workers), 180, components)
        _wait_for(
            "the ingest DAGs to be parsed",
            lambda: len(_query(metadata_db, "select dag_id from dag where dag_id = any(%s)", (dag_ids,))) == 2,
            180, components,
        )  # fmt: skip
        _run_cli(["dags", "unpause", "--treat-dag-id-as-regex", "-y", "^ct_ingest__e2e_celery_"], env, log_dir, "unpause", 180)
        paused = _query(metadata_db, "select dag_id, is_paused from dag where dag_id = any(%s)", (dag_ids,))
        assert not any(p for _, p in paused), paused
        up_at = time.monotonic()

        # First commit of both logs, then several minutes of growth.
        _wait_for("the first commit of both logs",
                  lambda: all(v > 0 for v in _watermarks(metadata_db, fernet_key, slugs).values())
                  and len(_watermarks(metadata_db, fernet_key, slugs)) == 2,
                  240, components, interval=5)  # fmt: skip
        first_commit_at = time.monotonic()
        deadline = first_commit_at + INGEST_SECONDS
        while time.monotonic() < deadline:
            dead = [c for c in components if not c.alive()]
            assert not dead, "\n".join(c.tail() for c in dead)
            time.sleep(5)

        # Stop growing; publish what was appended; catch up.
        for log in logs:
            log.rate = 0.0
        time.sleep(2.5)  # a growth tick in progress ends
        targets = {log.slug: log.publish().tree_size for log in logs}
        assert all(log.size == targets[log.slug] for log in logs)
        stopped_growth_at = time.monotonic()
        _wait_for(
            f"both watermarks to reach the logs' sizes {targets}",
            lambda: _watermarks(metadata_db, fernet_key, slugs) == targets, 300, components, interval=5,
        )  # fmt: skip
        caught_up_at = time.monotonic()

        def ingest_busy() -> list[tuple]:
            return _query(metadata_db, "select dag_id, run_id from dag_run where dag_id = any(%s) and state in ('queued', 'running')", (dag_ids,))

        # A quiet moment (no ingest run in flight) before stopping, bounded: a run started
        # at the next minute has nothing to fetch and may be left running, never failed.
        quiet_by = time.monotonic() + 60
        while ingest_busy() and time.monotonic() < quiet_by:
            time.sleep(2)
    finally:
        # Scheduler first (no new work), then the workers (warm shutdown: running tasks
        # finish; the API server is still up for them), then the rest.
        order = {"scheduler": 0, "dag-processor": 1, WORKERS[0]: 2, WORKERS[1]: 2, "api-server": 3}
        for component in sorted(components, key=lambda c: order.get(c.name, 9)):
            component.stop(grace=60 if component.name in WORKERS else 20)
        server.stop()
        broker_servers = broker.bootstrap_servers
        records = None
        if broker.running:
            with contextlib.suppress(Exception):
                records = consume_all(broker_servers, "ct-certs", timeout=120)
        broker.stop()
    finished_at = time.monotonic()

    # ---- the lake: every index exactly once, up to the watermark (= the log's size)
    figures = {}
    for log in logs:
        files = list((lake / "certs" / f"log={log.slug}").rglob("*.parquet"))
        assert files, f"no Parquet for {log.slug}"
        pattern = str(lake / "certs" / f"log={log.slug}" / "**" / "*.parquet")
        rows = duckdb.sql(
            f"select index, count(*) n from read_parquet('{pattern}', hive_partitioning=true) group by index order by index"
        ).fetchall()
        doubled = [(i, n) for i, n in rows if n != 1]
        assert not doubled, f"{log.slug}: indexes stored more than once: {doubled[:20]}"
        indexes = [i for i, _ in rows]
        missing = sorted(set(range(targets[log.slug])) - set(indexes))
        assert not missing, f"{log.slug}: indexes missing from the lake: {missing[:20]} ({len(missing)} in all)"
        assert indexes == list(range(targets[log.slug])), f"{log.slug}: indexes past the watermark"
        assert not (lake / "errors" / f"log={log.slug}").exists(), f"{log.slug}: undecodable entries"
        figures[log.slug] = {"entries": targets[log.slug], "files": len(files)}

    # ---- Kafka: every key of both logs
    assert records is not None, "could not read ct-certs back"
    keys = Counter(r.key.decode() for r in records)
    for log in logs:
        expected = {f"{log.log_id_b64}:{i}" for i in range(targets[log.slug])}
        got = {k for k in keys if k.startswith(f"{log.log_id_b64}:")}
        assert got == expected, f"{log.slug}: {len(expected - got)} keys missing, {len(got - expected)} unexpected on ct-certs"
        figures[log.slug]["kafka_messages"] = sum(n for k, n in keys.items() if k in expected)

    # ---- the runs: none failed; at least 3 that fetched, per log
    runs = _query(metadata_db, "select dag_id, state, count(*) from dag_run where dag_id = any(%s) group by 1, 2", (dag_ids,))
    assert not [r for r in runs if r[1] == "failed"], f"failed DAG runs: {runs}"
    failed_tis = _query(
        metadata_db,
        "select dag_id, run_id, task_id, map_index, state from task_instance where dag_id = any(%s) and state in ('failed', 'upstream_failed')",
        (dag_ids,),
    )  # fmt: skip
    assert not failed_tis, f"failed task instances: {failed_tis}"
    fetching_runs = dict(_query(
        metadata_db,
        "select dag_id, count(distinct run_id) from task_instance where dag_id = any(%s) and task_id = 'fetch' and state = 'success' group by 1",
        (dag_ids,),
    ))  # fmt: skip
    for slug, dag_id in zip(slugs, dag_ids):
        figures[slug]["runs"] = {state: n for d, state, n in runs if d == dag_id}
        figures[slug]["runs_that_fetched"] = fetching_runs.get(dag_id, 0)
        assert fetching_runs.get(dag_id, 0) >= 3, f"{dag_id}: only {fetching_runs.get(dag_id, 0)} runs fetched"

    # ---- both workers did work: the task instances' hostname, and the workers' own logs
    per_host = dict(_query(
        metadata_db,
        "select hostname, count(*) from task_instance where dag_id = any(%s) and state = 'success' group by 1",
        (dag_ids,),
    ))  # fmt: skip
    retried = _query(metadata_db, "select count(*) from task_instance where dag_id = any(%s) and try_number > 1", (dag_ids,))[0][0]
    executed = {w.name: w.log_text().count("Executing workload in Celery") for w in workers}
    print(
        f"\ncelery e2e: {json.dumps(figures, sort_keys=True)}\n"
        f"task instances per worker (hostname): {per_host}; workloads in worker logs: {executed}; retried: {retried}\n"
        f"timing: up {up_at - started:.0f}s, first commit +{first_commit_at - up_at:.0f}s, "
        f"caught up {caught_up_at - stopped_growth_at:.0f}s after growth stopped, "
        f"stopped in {finished_at - caught_up_at:.0f}s, total {finished_at - started:.0f}s",
        flush=True,
    )
    assert set(per_host) == set(WORKERS), f"task instances by hostname: {per_host}"
    assert all(per_host[w] > 0 for w in WORKERS), per_host
    assert all(executed[w] > 0 for w in WORKERS), f"workloads per worker log: {executed}"
