"""Catch-up throughput: one local CT log with a backlog, ingested end to end through Airflow
(the ct_ingest DAG, run in-process with `dag.test()`) into the Parquet lake and Kafka.

Set-up, none of it timed:
* the local CT log server (`ctlib.testing.ctlog.LogServer`) in a child process, as a remote
  log would be: one RFC 6962 log grown to the backlog (50,000 entries; 500,000 with --full)
  and published, answering at most 256 entries per get-entries after 20 ms
  (`Faults(cap=256, delay=0.02)`);
* a tansu broker (`ctlib.localsvc.broker.LocalBroker`), the Kafka connection exported as
  AIRFLOW_CONN_KAFKA_DEFAULT;
* a temporary AIRFLOW_HOME with a migrated SQLite metadata database (as
  tests/support/airflow.py does) and the project's DAGs;
* CT_START_AT=beginning and the catch-up settings of each configuration (--config).

Timed: `dag.test()` runs of the log's ingest DAG, one after the other, from the first run's
start until the watermark (Variable ct_state__<slug>) reaches the backlog: ingest, every
mapped fetch (download, decode, Parquet, Kafka acknowledged) and commit (Merkle root
verified, watermark advanced). Then checked: the lake holds every index exactly once
(DuckDB over certs/ and errors/) and the Kafka topic has every key `<log_id>:<index>`.
One untimed warm-up run of 1,000 entries comes first (the first task in the process pays
~3 s of imports once), its state then forgotten; each configuration gets its own lake and
topic and starts from an empty watermark.

`dag.test()` runs the tasks of a run one at a time in this process: the mapped fetch tasks
of a run do not overlap (CT_FETCH_PARALLELISM has no effect there), so the figure
understates what the scheduler with LocalExecutor/Celery reaches with parallel fetch tasks
on a machine with cores to spare. `--scheduler` runs the first configuration under
`airflow standalone` instead (LocalExecutor, PostgreSQL, CT_SCHEDULE=@continuous so runs
follow each other at once; only the ingest DAG unpaused) and times it from the first run's
start, and from its first commit, to catch-up; on this 2-core machine the scheduler, API
server, DAG processor, broker and log server share the cores with the fetch tasks, and
every task is a new process (~2.5 s of start-up for ingest).

    .venv/bin/python bench/catchup_bench.py                    # short: 50,000 entries
    .venv/bin/python bench/catchup_bench.py --full             # 500,000 entries
    .venv/bin/python bench/catchup_bench.py --sweep            # every preset of PRESETS
    .venv/bin/python bench/catchup_bench.py --config per_run=100000,per_task=25000,in_flight=16
    .venv/bin/python bench/catchup_bench.py --profile-fetch    # + cProfile and phases of one fetch task
    .venv/bin/python bench/catchup_bench.py --scheduler        # airflow standalone instead of dag.test()

Writes bench/results/catchup.json (catchup_scheduler.json with --scheduler). Target:
>= 5,000 entries/s.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import io
import json
import multiprocessing
import os
import platform
import pstats
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ctlib.testing.airflow_api import AirflowApi

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SHORT, FULL = 50_000, 500_000
CAP, DELAY = 256, 0.02
TARGET_RATE = 5_000
LOG_NAME = "Bench Catchup Log"


@dataclass(frozen=True)
class Config:
    name: str
    per_run: int  # CT_ENTRIES_PER_RUN
    per_task: int  # CT_ENTRIES_PER_TASK
    max_tasks: int = 8  # CT_MAX_TASKS_PER_RUN
    parallelism: int = 2  # CT_FETCH_PARALLELISM (no effect under dag.test())
    in_flight: int = 8  # CT_HTTP_IN_FLIGHT

    def env(self) -> dict[str, str]:
        return {
            "CT_ENTRIES_PER_RUN": str(self.per_run),
            "CT_ENTRIES_PER_TASK": str(self.per_task),
            "CT_MAX_TASKS_PER_RUN": str(self.max_tasks),
            "CT_FETCH_PARALLELISM": str(self.parallelism),
            "CT_HTTP_IN_FLIGHT": str(self.in_flight),
        }


PRESETS = {
    # What the issue suggests for a catch-up: 8 tasks of 12,500 per run.
    "catchup": Config("catchup", per_run=100_000, per_task=12_500, in_flight=8),
    # The project's defaults (ctlib.settings).
    "defaults": Config("defaults", per_run=50_000, per_task=10_000, in_flight=4),
    # Fewer, larger runs and tasks; more requests in flight.
    "large": Config("large", per_run=200_000, per_task=25_000, in_flight=16),
    # Fewer runs, small tasks with few requests in flight.
    "small-tasks": Config("small-tasks", per_run=100_000, per_task=5_000, max_tasks=20, in_flight=4),
}
# The default: with dag.test() the first three presets are equal within noise (~5,300 entries/s
# on 50,000); "large" makes the fewest tasks (2 for the short backlog, run side by side with
# --scheduler) and the fewest runs.
DEFAULT_CONFIG = "large"
_KEYS = {"per_run": int, "per_task": int, "max_tasks": int, "parallelism": int, "in_flight": int, "name": str}


def parse_config(text: str) -> Config:
    if text in PRESETS:
        return PRESETS[text]
    values: dict[str, Any] = {"name": "custom"}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in _KEYS:
            raise argparse.ArgumentTypeError(f"unknown key {key!r} (use {', '.join(_KEYS)} or a preset: {', '.join(PRESETS)})")
        values[key.strip()] = _KEYS[key.strip()](value.strip())
    if "per_run" not in values or "per_task" not in values:
        raise argparse.ArgumentTypeError("a configuration needs per_run and per_task")
    return Config(**values)


# --------------------------------------------------------------------------- the log server


def _serve_log(conn, size: int, cap: int, delay: float, log_list: str) -> None:
    """Child process: one log of `size` entries behind a LogServer, until told to stop."""
    from ctlib.testing.ctlog import Faults, LogServer

    began = time.monotonic()
    server = LogServer()
    log = server.add_log(LOG_NAME, faults=Faults(cap=cap, delay=0.0))
    done = 0
    while done < size:
        done = log.grow(min(50_000, size - done))
        conn.send(("progress", done, time.monotonic() - began))
    log.publish()
    log.faults.delay = delay
    server.write_log_list(log_list)
    server.start()
    conn.send(("ready", server.url_of(log), log.slug, log.log_id_b64, log.sth.tree_size, time.monotonic() - began))
    cpu = time.process_time()
    conn.recv()  # "stop"
    counts = log.counts()
    server.stop()
    conn.send(("counts", {"requests": counts.requests, "ok": counts.ok, "entries_served": counts.entries_served,
                          "by_endpoint": dict(counts.by_endpoint), "outcomes": dict(counts.outcomes),
                          "cpu_s_while_serving": round(time.process_time() - cpu, 1)}))


class RemoteLog:
    """The log server in a child process (its CPU is not this process's)."""

    def __init__(self, size: int, log_list: Path, cap: int = CAP, delay: float = DELAY) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_log, args=(child, size, cap, delay, str(log_list)), daemon=True)
        self._proc.start()
        while True:
            if not self._conn.poll(600):
                raise RuntimeError("the log server did not get ready in 10 minutes")
            message = self._conn.recv()
            if message[0] == "progress":
                print(f"  log: {message[1]:,} of {size:,} entries generated ({message[2]:.0f} s)", flush=True)
                continue
            _, self.url, self.slug, self.log_id_b64, self.size, self.setup_seconds = message
            break

    def stop(self) -> dict[str, Any]:
        return stop_child(self._proc, self._conn, "stop") or {}


def stop_child(proc, conn, message: Any) -> Any:
    """Send a log-server child process `message` (its stop command) and return what it answers
    (None without an answer in 30 s); then make sure it is gone."""
    answer = None
    if proc.is_alive():
        conn.send(message)
        if conn.poll(30):
            answer = conn.recv()[1]
    proc.join(10)
    if proc.is_alive():
        proc.terminate()  # our own child, by its handle
    return answer


def cpu_seconds(pid: int | None, *, reaped_children: bool = False) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), None if unreadable; with
    `reaped_children`, also those of its children that exited and were waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15 if reaped_children else 13]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, TypeError):
        return None


# --------------------------------------------------------------------------- Airflow


def prepare_airflow(home: Path, verbose: bool) -> None:
    """Environment of a throw-away Airflow (before anything imports airflow), DB migrated."""
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT / "plugins"),
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO" if verbose else "WARNING",
    )
    began = time.monotonic()
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                   check=True, capture_output=True, env=os.environ.copy())
    print(f"  airflow: metadata database migrated ({time.monotonic() - began:.0f} s)", flush=True)


def load_dag(slug: str):
    spec = importlib.util.spec_from_file_location("ct_ingest_bench", PROJECT / "dags" / "ct_ingest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, f"ct_ingest__{slug}")


def state_of(slug: str) -> dict[str, Any] | None:
    from airflow.models import Variable

    raw = Variable.get(f"ct_state__{slug}", default_var=None)
    return json.loads(raw) if raw else None


def forget_state(slug: str) -> None:
    from airflow.models import Variable

    for key in (f"ct_state__{slug}", f"ct_plan__{slug}"):
        Variable.delete(key)


def _seconds(ti) -> float:
    if ti.start_date and ti.end_date:
        return (ti.end_date - ti.start_date).total_seconds()
    return float(ti.duration or 0.0)


def run_until_caught_up(dag, slug: str, size: int, max_runs: int) -> tuple[float, list[dict[str, Any]]]:
    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    done_before = 0
    while True:
        run_began = time.monotonic()
        result = dag.test()
        wall = time.monotonic() - run_began
        if result.state != "success":
            raise SystemExit(f"run {len(runs) + 1} ended {result.state}")
        tis = result.get_task_instances()
        fetches = sorted(_seconds(ti) for ti in tis if ti.task_id == "fetch" and ti.state == "success")
        ingest = sum(_seconds(ti) for ti in tis if ti.task_id == "ingest")
        commit = sum(_seconds(ti) for ti in tis if ti.task_id == "commit")
        done = state_of(slug)["next_index"]
        record = {
            "run": len(runs) + 1, "entries": done - done_before, "wall_s": round(wall, 2),
            "ingest_s": round(ingest, 2), "fetch_tasks": len(fetches), "fetch_s": round(sum(fetches), 2),
            "fetch_task_s_min_max": [round(fetches[0], 2), round(fetches[-1], 2)] if fetches else [],
            "fetch_task_s_mean": round(sum(fetches) / len(fetches), 2) if fetches else None,
            "commit_s": round(commit, 2), "other_s": round(wall - ingest - sum(fetches) - commit, 2),
        }
        runs.append(record)
        print(f"    run {record['run']}: {record['entries']:,} entries in {wall:.1f} s "
              f"(ingest {ingest:.1f} s, {len(fetches)} fetch tasks {sum(fetches):.1f} s, commit {commit:.1f} s, "
              f"dag.test overhead {record['other_s']:.1f} s)", flush=True)
        done_before = done
        if done >= size:
            return time.monotonic() - began, runs
        if len(runs) >= max_runs:
            raise SystemExit(f"not caught up after {max_runs} runs (next_index {done} of {size})")


def check_lake(lake: Path, slug: str, size: int) -> dict[str, Any]:
    import duckdb

    counts: dict[str, Any] = {}
    indexes = []
    for table in ("certs", "errors"):
        files = sorted(str(f) for f in (lake / table / f"log={slug}").rglob("*.parquet"))
        counts[f"{table}_files"] = len(files)
        if files:
            indexes.append(f"select index from read_parquet({files}, hive_partitioning=true)")
    if not indexes:
        return {**counts, "rows": 0, "distinct": 0, "exactly_once": size == 0}
    rows, distinct, low, high = duckdb.sql(
        f"select count(*), count(distinct index), min(index), max(index) from ({' union all '.join(indexes)})"
    ).fetchall()[0]
    ok = rows == distinct == size and low == 0 and high == size - 1
    return {**counts, "rows": rows, "distinct": distinct, "min": low, "max": high, "exactly_once": ok}


def check_kafka(bootstrap: str, topic: str, log_id_b64: str, size: int) -> dict[str, Any]:
    from ctlib.localsvc.broker import consume_all

    records = consume_all(bootstrap, topic, timeout=max(60.0, size / 2_000))
    keys = {r.key.decode() for r in records}
    wanted = {f"{log_id_b64}:{i}" for i in range(size)}
    return {"messages": len(records), "distinct_keys": len(keys), "missing": len(wanted - keys),
            "unexpected": len(keys - wanted), "every_key": keys == wanted}


# --------------------------------------------------------------------------- one fetch task


def _trim(text: str) -> str:
    return text.replace(str(PROJECT) + os.sep, "").replace(str(Path(sys.prefix)) + os.sep, "")


def profile_fetch(slug: str, config: Config, work: Path, topic: str) -> dict[str, Any]:
    """One fetch task's range [0, per_task), outside Airflow: its phases timed one by one
    (download only, decode, Parquet, Kafka), then fetch_range itself under cProfile."""
    from ctlib.ct.client import open_client
    from ctlib.decode.entries import ChainCache, LogRef, decode_entries
    from ctlib.ct.loglist import load_log_list
    from ctlib.settings import Settings
    from ctlib.kafka import producer_from_connection, publish, rows_as_messages
    from ctlib.lake.files import Lake, write_range

    import pyarrow as pa

    os.environ.update(config.env())
    settings = Settings.from_env()
    ctlog = next(log for log in load_log_list(settings.log_list_path).monitored() if log.slug == slug)
    n = config.per_task
    phases: dict[str, float] = {}

    t = time.monotonic()
    client = open_client(ctlog, settings)
    client.tree_head()
    windows = list(client.fetch_range(0, n, batch=settings.get_entries_batch, in_flight=settings.http_in_flight))
    client.close()
    phases["download_s"] = time.monotonic() - t
    t = time.monotonic()
    ref, cache, now = LogRef(ctlog.log_id, ctlog.slug), ChainCache(), datetime.now(UTC)
    batches = [decode_entries(ref, w, now, chain_cache=cache) for w in windows]
    certs = pa.concat_tables([b.certs for b in batches])
    phases["decode_s"] = time.monotonic() - t
    lake = Lake.open(str(work / "lake-profile"))
    t = time.monotonic()
    write_range(lake, "certs", slug, 0, n, certs)
    phases["parquet_s"] = time.monotonic() - t
    producer = producer_from_connection(settings.kafka_conn_id)
    t = time.monotonic()
    publish(producer, topic, rows_as_messages(certs), timeout=settings.kafka_flush_timeout, what="profile")
    phases["kafka_s"] = time.monotonic() - t

    from ctlib.ingest.run import fetch_range

    t = time.monotonic()
    fetch_range(ctlog, 0, n, settings, Lake.open(str(work / "lake-profile2")), lambda: producer)
    phases["fetch_range_s"] = time.monotonic() - t
    profiler = cProfile.Profile()
    t = time.monotonic()
    profiler.enable()
    fetch_range(ctlog, 0, n, settings, Lake.open(str(work / "lake-profile3")), lambda: producer)
    profiler.disable()
    phases["fetch_range_profiled_s"] = time.monotonic() - t
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(15)
    report = {k: round(v, 3) for k, v in phases.items()}
    print(f"\none fetch task's range of {n:,} entries ({config.name}) outside Airflow; the phases run separately, "
          "then fetch_range whole, then under cProfile: "
          + ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in report.items()))
    print("cProfile of fetch_range (main thread; get-entries threads show as waiting), top 15 cumulative:")
    print(_trim(out.getvalue()))
    return {"entries": n, **report}


# --------------------------------------------------------------------------- --scheduler


@contextlib.contextmanager
def metadata_database(work: Path) -> Iterator[str]:
    """A new, empty PostgreSQL database (LocalExecutor needs one): on the local PostgreSQL
    service when it runs on 127.0.0.1:5432, else in an embedded PostgreSQL (as the e2e test)."""
    from ctlib.localsvc import port_accepts

    if port_accepts(5432, "127.0.0.1"):
        from ctlib.localsvc.postgres import scratch_database

        with scratch_database("ct_bench") as url:
            yield url
        return
    from ctlib.localsvc.postgres import EmbeddedPostgres

    folder = work / "pg"
    folder.mkdir()
    work.chmod(0o755)
    folder.chmod(0o755)  # its system user must reach the data folder
    pg = EmbeddedPostgres(folder / "data", port=0)
    try:
        yield pg.ensure_running()
    finally:
        pg.stop()


def _utc(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


@contextlib.contextmanager
def standalone(work: Path, name: str, lake: Path, broker, *, start_at: str = "beginning",
               **settings: str) -> Iterator[tuple[Any, AirflowApi]]:
    """`airflow standalone` as `make run` starts it (ctlib.localsvc.run.Orchestrator) on a
    scratch PostgreSQL database, with DAGs paused at creation, the local log list of `work`,
    CT_START_AT=`start_at`, `lake`, the broker's Kafka connection and the CT_* `settings`; the
    environment's own AIRFLOW*/CT_* variables are left out. Yields the orchestrator and the
    REST API as the admin user (AirflowApi); stops everything on exit."""
    from ctlib.localsvc import free_port
    from ctlib.localsvc.run import Orchestrator

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CT_")) or k == "CT_TANSU_BIN"}
    with metadata_database(work) as url:
        env.update(
            AIRFLOW_HOME=str(work / f"{name}-home"), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=url,
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True", CT_ADMIN_PASSWORD=secrets.token_urlsafe(12),
            CT_LOG_LIST=str(work / "log_list.json"), CT_LAKE=str(lake), CT_START_AT=start_at,
            **settings, **broker.airflow_env(),
        )
        orch = Orchestrator(ui_port=free_port(), run_dir=work / f"{name}-run", env=env, lake=lake,
                            airflow_output=work / "standalone.log")
        try:
            orch.start()
            if not orch.wait_until_up(300):
                raise SystemExit(f"airflow standalone did not come up; see {work / 'standalone.log'}")
            yield orch, AirflowApi(orch.api_url(), orch.login)
        finally:
            orch.stop()


def run_scheduler(remote: RemoteLog, broker, config: Config, size: int, work: Path, topic: str,
                  timeout: float) -> dict[str, Any]:
    """The ingest DAG under `airflow standalone` (LocalExecutor, PostgreSQL; the stack of
    `make run`, ctlib.localsvc.run.Orchestrator) with CT_SCHEDULE=@continuous, so that runs
    follow each other at once and up to CT_FETCH_PARALLELISM fetch tasks run side by side.
    Only the ingest DAG is unpaused. Timed from the first run's start to the watermark
    reaching the backlog (polled every 0.5 s through the REST API), and from the first
    commit to catch-up (steady state, without the first run's start-up)."""
    lake = work / "lake-scheduler"
    dag_id = f"ct_ingest__{remote.slug}"
    began_setup = time.monotonic()
    with standalone(work, "scheduler", lake, broker, CT_SCHEDULE="@continuous", CT_KAFKA_CONN_ID="kafka_default",
                    CT_KAFKA_TOPIC=topic, CT_TASK_RETRIES="0", CT_HTTP_BACKOFF="0.1", **config.env()) as (_, api):
        while not api.get(f"dags/{dag_id}"):
            if time.monotonic() - began_setup > 300:
                raise SystemExit(f"{dag_id} not parsed after 300 s")
            time.sleep(1)
        print(f"  scheduler: airflow standalone up, {dag_id} parsed "
              f"({time.monotonic() - began_setup:.0f} s); unpausing it", flush=True)
        api.patch(f"dags/{dag_id}", {"is_paused": False})
        first_commit: tuple[float, int] | None = None
        deadline = time.monotonic() + timeout
        while True:
            value = api.get(f"variables/ct_state__{remote.slug}").get("value")
            done = json.loads(value)["next_index"] if value else 0
            now = time.time()
            if done and first_commit is None:
                first_commit = (now, done)
                print(f"    first commit: next_index {done:,}", flush=True)
            if done >= size:
                break
            failed = api.get(f"dags/{dag_id}/dagRuns", state="failed").get("dag_runs", [])
            if failed:
                raise SystemExit(f"failed run {failed[0]['dag_run_id']}; see {work / 'standalone.log'}")
            if time.monotonic() > deadline:
                raise SystemExit(f"not caught up after {timeout:.0f} s (next_index {done:,})")
            time.sleep(0.5)
        finished = now
        runs = api.listed(f"dags/{dag_id}/dagRuns", "dag_runs", order_by="start_date")
        started = min(_utc(r["start_date"]) for r in runs if r.get("start_date"))
        per_run = []
        for r in runs:
            tis = api.listed(f"dags/{dag_id}/dagRuns/{r['dag_run_id']}/taskInstances", "task_instances")
            fetch = [t for t in tis if t["task_id"] == "fetch" and t.get("duration") is not None]
            per_run.append({
                "run_id": r["dag_run_id"], "state": r["state"],
                "wall_s": round((_utc(r["end_date"]) or finished) - _utc(r["start_date"]), 2) if r.get("start_date") else None,
                "fetch_tasks": len(fetch), "fetch_s": round(sum(t["duration"] for t in fetch), 2),
                "ingest_s": next((round(t["duration"] or 0, 2) for t in tis if t["task_id"] == "ingest"), None),
                "commit_s": next((round(t["duration"] or 0, 2) for t in tis if t["task_id"] == "commit"), None),
            })
    total = finished - started
    steady = (size - first_commit[1]) / (finished - first_commit[0]) if first_commit and finished > first_commit[0] else None
    result = {
        "config": config.name, "runner": "airflow standalone (LocalExecutor, PostgreSQL), CT_SCHEDULE=@continuous",
        "settings": config.env(), "entries": size, "seconds": round(total, 2), "entries_per_s": round(size / total),
        "entries_per_s_from_first_commit": round(steady) if steady else None,
        "first_commit_next_index": first_commit[1] if first_commit else None,
        # Every run begun before catch-up: a small backlog is committed by ingest alone (no fetch task).
        "runs": sum(1 for r in runs if r.get("start_date") and _utc(r["start_date"]) <= finished),
        "meets_target": size / total >= TARGET_RATE,
        "per_run": per_run,
    }
    print(f"  => scheduler: {size:,} entries in {total:.1f} s from the first run's start: {size / total:,.0f} entries/s; "
          f"from the first commit: {result['entries_per_s_from_first_commit']} entries/s", flush=True)
    result["lake"] = check_lake(lake, remote.slug, size)
    result["kafka"] = check_kafka(broker.bootstrap_servers, topic, remote.log_id_b64, size)
    print(f"     lake: {result['lake']}\n     kafka: {result['kafka']}", flush=True)
    return result


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help=f"a backlog of {FULL:,} entries (default {SHORT:,})")
    parser.add_argument("--entries", type=int, default=None, help="backlog size (overrides --full)")
    parser.add_argument("--config", type=parse_config, action="append", default=None,
                        help=f"a preset ({', '.join(PRESETS)}) or per_run=..,per_task=..[,max_tasks=..,"
                             f"in_flight=..,parallelism=..]; repeatable (default: {DEFAULT_CONFIG})")
    parser.add_argument("--sweep", action="store_true", help="run every preset")
    parser.add_argument("--max-runs", type=int, default=200)
    parser.add_argument("--scheduler", action="store_true",
                        help="run the first configuration under airflow standalone (LocalExecutor) instead of "
                             "dag.test(); writes bench/results/catchup_scheduler.json")
    parser.add_argument("--scheduler-timeout", type=float, default=1800.0)
    parser.add_argument("--profile-fetch", action="store_true", help="also profile one fetch task")
    parser.add_argument("--no-kafka-check", action="store_true", help="skip reading the topic back")
    parser.add_argument("--verbose", action="store_true", help="Airflow logs at INFO")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME and lake")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results/catchup.json "
                        "(catchup_scheduler.json with --scheduler)")
    args = parser.parse_args()
    size = args.entries or (FULL if args.full else SHORT)
    configs = list(PRESETS.values()) if args.sweep else (args.config or [PRESETS[DEFAULT_CONFIG]])
    if args.scheduler:
        configs = configs[:1]
    out = args.out or RESULTS / ("catchup_scheduler.json" if args.scheduler else "catchup.json")

    work = Path(tempfile.mkdtemp(prefix="ct-bench-catchup-"))
    log_list = work / "log_list.json"
    print(f"catch-up of {size:,} entries (cap {CAP}, {DELAY * 1000:.0f} ms a request); set-up, not timed:", flush=True)
    remote = RemoteLog(size, log_list)
    print(f"  log: {remote.size:,} entries published at {remote.url} ({remote.setup_seconds:.0f} s)", flush=True)

    from ctlib.localsvc.broker import LocalBroker

    topics = [f"ct-certs-bench-{c.name}-{i}" for i, c in enumerate(configs)] + ["ct-certs-bench-profile"]
    broker = LocalBroker(topics=topics, log_path=work / "tansu.log").start()
    results: list[dict[str, Any]] = []
    server_counts: dict[str, Any] = {}
    fetch_profile = None
    try:
        if args.scheduler:
            print(f"  config {configs[0].name}: {configs[0].env()}", flush=True)
            results.append(run_scheduler(remote, broker, configs[0], size, work, topics[0], args.scheduler_timeout))
        else:
            results = run_dag_test(args, configs, topics, remote, broker, work, log_list, size)
            if args.profile_fetch:
                fetch_profile = profile_fetch(remote.slug, configs[0], work, topics[-1])
    finally:
        server_counts = remote.stop()
        broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results, size, server_counts, fetch_profile, out, args.scheduler)


def run_dag_test(args: argparse.Namespace, configs: list[Config], topics: list[str], remote: RemoteLog, broker,
                 work: Path, log_list: Path, size: int) -> list[dict[str, Any]]:
    results = []
    os.environ.update(broker.airflow_env())
    prepare_airflow(work / "airflow", args.verbose)
    os.environ.update(
        CT_LOG_LIST=str(log_list), CT_START_AT="beginning", CT_KAFKA_CONN_ID="kafka_default",
        CT_TASK_RETRIES="0", CT_HTTP_BACKOFF="0.1",
    )
    dag = load_dag(remote.slug)
    # Warm-up, not timed: the first task run in this process imports the task runner, ctlib,
    # pyarrow, the Kafka client... (~3 s) once; a scheduler pays that in every task process,
    # dag.test() only once, so it would weigh on whichever configuration came first.
    os.environ.update(configs[0].env(), CT_ENTRIES_PER_RUN="1000", CT_ENTRIES_PER_TASK="500",
                      CT_LAKE=str(work / "lake-warmup"), CT_KAFKA_TOPIC=topics[-1])
    forget_state(remote.slug)
    began = time.monotonic()
    if dag.test().state != "success":
        raise SystemExit("the warm-up run failed")
    print(f"  warm-up run of 1,000 entries ({time.monotonic() - began:.1f} s, not counted)", flush=True)
    for i, config in enumerate(configs):
        lake, topic = work / f"lake-{i}", topics[i]
        os.environ.update(config.env(), CT_LAKE=str(lake), CT_KAFKA_TOPIC=topic)
        forget_state(remote.slug)
        print(f"  config {config.name}: {config.env()}", flush=True)
        cpu_before, broker_before = time.process_time(), cpu_seconds(broker.pid)
        seconds, runs = run_until_caught_up(dag, remote.slug, size, args.max_runs)
        cpu = {"ingest_process": round(time.process_time() - cpu_before, 1)}
        broker_after = cpu_seconds(broker.pid)
        if broker_before is not None and broker_after is not None:
            cpu["broker"] = round(broker_after - broker_before, 1)
        rate = size / seconds
        print(f"  => {size:,} entries in {seconds:.1f} s: {rate:,.0f} entries/s end to end "
              f"({len(runs)} runs; CPU seconds {cpu}); checking...", flush=True)
        lake_check = check_lake(lake, remote.slug, size)
        kafka_check = None if args.no_kafka_check else check_kafka(
            broker.bootstrap_servers, topic, remote.log_id_b64, size)
        print(f"     lake: {lake_check}\n     kafka: {kafka_check}", flush=True)
        results.append({
            "config": config.name, "settings": config.env(), "entries": size,
            "seconds": round(seconds, 2), "entries_per_s": round(rate), "runs": len(runs),
            "meets_target": rate >= TARGET_RATE, "cpu_s": cpu, "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "lake": lake_check, "kafka": kafka_check, "per_run": runs,
        })
        shutil.rmtree(lake, ignore_errors=True)
    return results


def report(results: list[dict[str, Any]], size: int, server_counts: dict[str, Any],
           fetch_profile: dict[str, Any] | None, out: Path, scheduler: bool) -> None:
    best = max(results, key=lambda r: r["entries_per_s"])
    figures = {
        "benchmark": "catchup",
        "mode": "full" if size >= FULL else "short",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "runner": "airflow standalone (LocalExecutor, PostgreSQL), CT_SCHEDULE=@continuous" if scheduler else
                  "dag.test() in one process (mapped fetch tasks run one after the other); "
                  "log server in a child process; tansu broker",
        "backlog": size, "log_cap": CAP, "log_delay_s": DELAY,
        "entries_per_s": best["entries_per_s"], "best_config": best["config"], "target_entries_per_s": TARGET_RATE,
        "meets_target": best["meets_target"],
        "all_checks_pass": all(r["lake"]["exactly_once"] and (r["kafka"] is None or r["kafka"]["every_key"])
                               for r in results),
        "configs": results,
        "log_server_requests": server_counts,
        "fetch_profile": fetch_profile,
    }
    print(f"\ncatch-up of {size:,} entries: best {best['entries_per_s']:,} entries/s ({best['config']}; "
          f"target >= {TARGET_RATE:,})")
    for r in results:
        print(f"  {r['config']:<12} {r['entries_per_s']:>7,} entries/s  {r['runs']:>3} runs  {r['seconds']:7.1f} s  "
              f"lake exactly once: {r['lake']['exactly_once']}  kafka every key: "
              f"{None if r['kafka'] is None else r['kafka']['every_key']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    if not figures["all_checks_pass"]:
        raise SystemExit("a check failed: see above")


if __name__ == "__main__":
    main()
