"""Soak: `airflow standalone` ingesting 40 local CT logs that grow 1,000 entries/s in all.

Set-up, not measured:
* the local CT log server (`ctlib.testing.ctlog.LogServer`) in a child process, as remote
  logs would be: 40 logs (4 of them static-ct-api, tiled), each published with 256 entries
  and not growing yet;
* a tansu broker (`ctlib.localsvc.broker.LocalBroker`) and a scratch PostgreSQL database;
* the stack of `make run` (`ctlib.localsvc.run.Orchestrator`: airflow standalone,
  LocalExecutor, parallelism 8) with the project's defaults (every DAG runs every minute,
  CT_START_AT=beginning); DAGs paused at creation, then every `ct_ingest__*` unpaused through
  the REST API (with --with-downstream also ct_score, ct_enrich and ct_watch); then a wait
  until every log has committed its first 256 entries, so the pipeline is in its steady,
  idle state.

Measured:
1. growth: every log grows 25 entries/s (40 x 25 = 1,000/s) for 3 minutes (10 with --full);
   then growth stops and the bench waits until every watermark reaches its log's size;
2. idle: 2 minutes (3 with --full) with no new entry: the CPU cost of an idle run.

Figures: freshness lag of every entry logged during growth, from its log timestamp to the
modification time of the Parquet file that holds it (the file appears under its final name
by a rename right after), at p50, p95, p99 and max, for RFC 6962 and tiled logs, also over
time (bench/results/soak_lag.png); CPU seconds per 1,000 entries from the start of growth
to catch-up (every process of the standalone session, reaped task processes included, and
the broker; the local CT logs and PostgreSQL are the world's, not ours), split by
component; peak memory (sum of PSS of the same processes, sampled every 5 s); CPU per idle
run; the audit of lake and Kafka (`ctlib.ops.audit`: every index exactly once in the lake,
every key in Kafka); failed runs; the time of a `/ct/metrics` scrape (with the API's JWT,
every 10 s during growth) at p50, p95 and max (`metrics_scrape_ms`). Targets: p95 lag <= 90 s,
no gap, no failed run.

    .venv/bin/python bench/soak_bench.py            # short: 3 + 2 minutes
    .venv/bin/python bench/soak_bench.py --full     # 10 + 3 minutes
    .venv/bin/python bench/soak_bench.py --logs 10 --rate 500 --minutes 1 --idle-minutes 1

`--profile firehose` is the 2026 CT firehose instead (`ctlib.testing.profiles`): 40 logs, 16
tiled, 3,200 entries/s in all, 3 hot logs at 500/s, 6 at 150/s, the rest slow; get-entries
capped at 32, 192 or 256 as each operator does, 50-150 ms latency on every request; the logs
replay a pool of pre-built certificates so the generator stays cheap. The log server's own
CPU share of a core during growth is printed (it is the world's, not counted in ours), and a
run whose logs grew less than 95% of the rate asked says it is INVALID.

`--with-downstream` also runs ct_score, ct_enrich and ct_watch, and measures:
* alert freshness: log timestamp to the alerts/ file holding the alert (target p95 <= 120 s);
* watch notification freshness: ct_watch gets a 1,000-item watchlist (CT_WATCHLIST in the
  work folder: domains, names and addresses that occur nowhere, and 5 planted domains) and
  the HTTP connection ct_webhook to a `WebhookReceiver` in the bench process. The replayed
  pool's issuances repeat (a repeat is rightly not notified again), so while growth is on
  the log server plants fresh certificates for the planted domains, about 1 a second in
  all, in logs drawn by their rates. For every watch notification of a certificate logged
  during growth: its arrival minus the certificate's log timestamp at p50, p95 and max
  (target p95 <= 120 s); exactly once: no key notified twice, every issuance of the growth
  window in watch_matches/ notified by catch-up + 2 minutes, and every planted issuance in
  certs/ matched (a breach fails the run). ct_score's phishing notifications go to the same
  receiver (counted, not measured);
* task CPU by DAG (ct_watch's per 1,000 entries among them), by sampling the LocalExecutor
  workers every second: their process title names the task instance they run (an
  approximation: neighbouring tasks of one worker may trade up to a second of CPU).

    .venv/bin/python bench/soak_bench.py --profile firehose [--with-downstream]

Writes bench/results/soak.json and soak_lag.png (firehose: soak_firehose[_downstream].json and
soak_lag_firehose[...].png). Run it on a quiet machine: it uses both
cores, and anything else running adds to the lag.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catchup_bench import RESULTS, _utc, cpu_seconds, standalone, stop_child
from ctlib.testing.airflow_api import AirflowApi

INITIAL = 256  # entries each log holds before growth (one full tile)
TARGET_P95_S = 90.0
TARGET_ALERT_P95_S = 120.0  # with --with-downstream: log timestamp to the alerts/ row
TARGET_NOTIFY_P95_S = 120.0  # with --with-downstream: log timestamp to the watch notification
VALID_SHARE = 0.95  # a run whose logs grew less than this share of the rate asked is invalid
SAMPLE_EVERY_S = 5.0
DOWNSTREAM_DAGS = ("ct_score", "ct_enrich", "ct_watch")
# With --with-downstream: a 1,000-item watchlist, WATCH_ITEMS that occur nowhere and the
# PLANTED_DOMAINS, for which the log server plants fresh certificates while growth is on
# (the replayed pool repeats its issuances, and a repeat is rightly not notified again).
WATCH_ITEMS = 1000
PLANTED_DOMAINS = tuple(f"soak-planted-{k}.example" for k in range(1, 6))
PLANT_PER_S = 1.0  # planted certificates a second, all logs together (~1 ms of signing each)
WEBHOOK_CONN = "ct_webhook"  # ct_watch's default CT_NOTIFY_WEBHOOK_CONN
NOTIFY_GRACE_S = 120.0  # after catch-up, for the last issuances of the growth window to be notified
TASK_SAMPLE_S = 1.0  # per-task CPU sampling interval (TaskCpu)
# Firehose: certificates in the replay pool every log replays. Real logs see ~200,000 new DNS
# names a minute; a small pool would repeat a few thousand, which the scorer (one score per
# distinct name and issuer within a run) would make far too cheap. 32,768 entries take ~10 s
# to build at set-up and hold ~40,000 distinct names.
REPLAY_POOL = 32_768

# --------------------------------------------------------------------------- the log server


def _serve_logs(conn, logs: int, tiled: int, log_list: str, profile: str, rate: float, pool: int,
                plant: tuple[str, ...] = ()) -> None:
    """Child process: `logs` logs behind one LogServer; grows them when told to.

    `uniform`: every log grows rate / logs entries/s, certificates generated one by one.
    `firehose`: `ctlib.testing.profiles.firehose_profile` (skewed rates, per-operator
    get-entries caps, 50-150 ms latency on every request), replaying a pool of pre-built
    certificates so the server stays cheap. With `plant` (domains), a `Planter` submits
    fresh certificates for them while growth is on. The child reports its own CPU time with
    every answer, so the bench can print the log server's share of a core."""
    from ctlib.testing.ctlog import LogServer

    server = LogServer()
    if profile == "firehose":
        from ctlib.testing.profiles import add_profile, firehose_profile

        specs = firehose_profile(total_rate=rate, logs=logs, tiled=tiled)
        add_profile(server, specs, initial_size=INITIAL, growing=False, pool_size=pool)
        rates = [spec.rate for spec in specs]
    else:
        classic = logs - tiled
        for i in range(1, logs + 1):
            name = f"Soak Tiled Log {i - classic}" if i > classic else f"Soak Log {i}"
            server.add_log(name, tiled=i > classic, initial_size=INITIAL)
        rates = [rate / logs] * logs
    server.write_log_list(log_list)
    server.start()
    planter = Planter(server.logs, rates, plant).start() if plant else None
    conn.send(("ready", {log.slug: log.tiled for log in server.logs}))
    serve_commands(conn, server, rates, planter)


class Planter:
    """Plants fresh certificates for watched domains while on: PLANT_PER_S a second in all,
    each for `watched_names` of one of `domains` (a host, the domain and www, or a wildcard),
    in a log drawn by its growth rate (where most submissions land).

    `LocalCTLog.submit` takes the log's generator lock, as the growth thread's replaying
    does, and a replay log stores the certificate as an explicit entry; the growth thread's
    next tick publishes it. Nothing is recorded here: the lake tells what was planted
    (certs/) and matched (watch_matches/)."""

    def __init__(self, logs: Sequence[Any], rates: Sequence[float], domains: tuple[str, ...],
                 per_s: float = PLANT_PER_S, seed: int = 0) -> None:
        self._logs, self._rates, self._domains = list(logs), list(rates), domains
        self._every = 1.0 / per_s
        self._rng = random.Random(f"soak-plant:{seed}")
        self._on = threading.Event()
        self._stop = threading.Event()
        self._busy = threading.Lock()  # held while submitting: `pause` waits for it
        self._touched: set[Any] = set()  # logs planted into since the last pause
        self._thread = threading.Thread(target=self._run, name="planter", daemon=True)

    def start(self) -> Planter:
        self._thread.start()
        return self

    def resume(self) -> None:
        self._on.set()

    def pause(self) -> None:
        """Stop planting and publish what was planted: once growth stops (rate 0) no tick
        publishes a log, and a certificate planted after its last tick would stay unseen."""
        self._on.clear()
        with self._busy:
            touched, self._touched = self._touched, set()
        for log in touched:
            log.publish()

    def stop(self) -> None:
        self._stop.set()
        self._on.set()  # wake the thread so it sees the stop
        self._thread.join(timeout=5)

    def _run(self) -> None:
        from ctlib.testing.ctlog import watched_names

        while not self._stop.is_set():
            self._on.wait()
            # The first certificate one interval after growth begins: inside the measured window.
            if self._stop.wait(self._every):
                return
            with self._busy:
                if not self._on.is_set():
                    continue
                log = self._rng.choices(self._logs, weights=self._rates)[0]
                log.submit(watched_names(self._rng, self._rng.choice(self._domains)))
                self._touched.add(log)


class Tamper:
    """Serves one entry of a classic log tampered (a byte flipped: it decodes, but no longer
    hashes to the signed root) to every get-entries answer that holds it, until `stop`: a log
    that lies about one entry until it is caught. The index is `ahead` entries past the log's
    published size, so the pipeline meets it during growth. `served` is when the lie first
    went out (epoch seconds), `times` how many answers held it."""

    def __init__(self, log: Any, ahead: int) -> None:
        self.log, self.index = log, log.sth.tree_size + ahead
        self.served: float | None = None
        self.times = 0
        self._lock = threading.Lock()
        inner = log.answer

        def answer(endpoint: str, query: dict[str, str]):
            lying = bool(log.faults.tampered)
            result = inner(endpoint, query)
            if lying and endpoint == "get-entries" and result.status == 200:
                # What the answer holds, not what was asked: a log may answer fewer entries.
                start = int(query.get("start", -1))
                if start <= self.index < start + len(json.loads(result.body)["entries"]):
                    with self._lock:
                        self.served = self.served or time.time()
                        self.times += 1
            return result

        log.faults.tampered = frozenset({self.index})
        log.answer = answer  # the HTTP handler calls log.answer(endpoint, query)

    def stop(self) -> None:
        """Tell the truth from now on."""
        self.log.faults.tampered = frozenset()


def serve_commands(conn, server, rates: list[float], planter: Planter | None = None) -> None:
    """The log server process's side of the pipe: "grow" True (every log at its rate) or
    False (growth stops), "sizes" (the published sizes and this process's CPU seconds, also
    the answer to "grow"), "stop" (stops the server, answers the requests served). A
    `planter` plants while growth is on. Faults, by the log's position in the log list:
    "faults" (position, {Faults attribute: value}) changes a log's misbehaviour, e.g.
    {"http_5xx_every": 1} and later 0; "tamper" (position, ahead) serves one entry tampered
    (`Tamper`) and answers its index, "untamper" (position) stops it; "tampered" answers
    {slug: (index, first served, answers that held it)}."""
    tampered: list[Tamper] = []
    while True:
        command, value = conn.recv()
        if command == "faults":
            position, changes = value
            for name, setting in changes.items():
                setattr(server.logs[position].faults, name, setting)
            conn.send(("faults", server.logs[position].slug))
            continue
        if command == "tamper":
            position, ahead = value
            tampered.append(Tamper(server.logs[position], ahead))
            conn.send(("tamper", tampered[-1].index))
            continue
        if command == "untamper":
            for t in tampered:
                if t.log is server.logs[value]:
                    t.stop()
            conn.send(("untamper", server.logs[value].slug))
            continue
        if command == "tampered":
            conn.send(("tampered", {t.log.slug: (t.index, t.served, t.times) for t in tampered}))
            continue
        if command == "grow":
            if planter is not None and not value:
                planter.pause()
            for log, log_rate in zip(server.logs, rates):
                log.rate = log_rate if value else 0.0
            if planter is not None and value:
                planter.resume()
            if not value:
                time.sleep(2.5)  # let a tick in progress publish what it grew
        if command in ("grow", "sizes"):
            conn.send(("sizes", {log.slug: log.sth.tree_size for log in server.logs}, time.process_time()))
        elif command == "stop":
            if planter is not None:
                planter.stop()
            server.stop()
            conn.send(("served", sum(log.counts().requests for log in server.logs)))
            return


class RemoteLogs:
    def __init__(self, logs: int, tiled: int, log_list: Path, profile: str = "uniform", rate: float = 0.0,
                 pool: int = REPLAY_POOL, plant: tuple[str, ...] = ()) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_logs,
                                 args=(child, logs, tiled, str(log_list), profile, rate, pool, plant), daemon=True)
        self._proc.start()
        if not self._conn.poll(300):
            raise SystemExit("the log server did not start in 5 minutes")
        self.tiled: dict[str, bool] = self._conn.recv()[1]
        self._lock = threading.Lock()  # one question at a time on the pipe (faults ask from threads)

    def grow(self, on: bool) -> tuple[dict[str, int], float]:
        """Start (or stop) every log's growth at its profile's rate; returns the published
        sizes and the log server's CPU seconds so far."""
        with self._lock:
            self._conn.send(("grow", on))
            _, sizes, cpu = self._conn.recv()
        return sizes, cpu

    def ask(self, command: str, value: Any = None) -> Any:
        """Send one command of `serve_commands` (e.g. "faults", "tamper") and return its answer."""
        with self._lock:
            self._conn.send((command, value))
            return self._conn.recv()[1]

    def stop(self) -> int:
        return stop_child(self._proc, self._conn, ("stop", None)) or 0


# --------------------------------------------------------------------------- processes


def _component(pid: int) -> str:
    """Which part of the stack a process is, from its command line (process title)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    for name, needles in (
        ("tasks", ("task runner", "supervisor", "worker", "LocalExecutor", "serve-logs", "serve_logs")),
        ("dag-processor", ("dag-processor", "dag_processor", "DagFileProcessor")),
        ("api-server", ("api-server", "api_server", "uvicorn", "gunicorn")),
        ("triggerer", ("triggerer",)),
        ("scheduler", ("scheduler",)),
        ("broker", ("tansu",)),
        ("standalone", ("standalone",)),
    ):
        if any(needle in cmd for needle in needles):
            return name
    return "other"


class Stack:
    """CPU and memory of the standalone session's processes and the broker (Linux /proc).

    A process's CPU is utime + stime + cutime + cstime: a task process that exited and was
    reaped counts in its parent, so a sum over live processes at two moments, subtracted,
    holds the CPU of everything that ran in between (children of a parent that itself
    exited move up to its parent)."""

    def __init__(self, session: int, broker_pid: int | None) -> None:
        self.session = session
        self.broker_pid = broker_pid
        self.peak_pss_mib = 0.0
        self.peak_pss_by_component: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        from ctlib.localsvc.run import session_members

        pids = session_members(self.session)
        return pids + [self.broker_pid] if self.broker_pid else pids

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far by component (with reaped children)."""
        out: Counter[str] = Counter()
        for pid in self.pids():
            seconds = cpu_seconds(pid, reaped_children=True)
            if seconds is not None:
                out[_component(pid)] += seconds
        return dict(out)

    def pss_mib(self) -> dict[str, float]:
        out: Counter[str] = Counter()
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        out[_component(pid)] += int(line.split()[1]) / 1024
                        break
            except (OSError, ValueError):
                continue
        return dict(out)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            by_component = self.pss_mib()
            total = sum(by_component.values())
            if total > self.peak_pss_mib:
                self.peak_pss_mib, self.peak_pss_by_component = total, by_component

    def start_sampling(self) -> None:
        self._thread = threading.Thread(target=self._sample, name="pss-sampler", daemon=True)
        self._thread.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-component CPU seconds spent between two `Stack.cpu()` readings (a component whose
    processes all exited shows up in its parent's reaped time, never negative here)."""
    keys = set(before) | set(after)
    spent = {k: round(max(0.0, after.get(k, 0.0) - before.get(k, 0.0)), 1) for k in sorted(keys)}
    spent["total"] = round(max(0.0, sum(after.values()) - sum(before.values())), 1)
    return spent


WORKER_TITLE = "airflow worker -- LocalExecutor:"  # then the id of the task instance it runs, or <idle>


class TaskCpu:
    """CPU seconds per task instance, sampled every TASK_SAMPLE_S (Linux /proc).

    A LocalExecutor worker supervises one task at a time in its own process, whose title
    names the task instance (its id), and forks the task's process; the worker's CPU with
    its reaped children plus its live children's is what its tasks cost, supervision
    included. Each worker's CPU between two samples goes to the task it ran at the first
    (else the one it runs at the second), so neighbouring tasks of one worker may trade up
    to an interval's CPU, and a whole task falling between two samples of an idle worker is
    missed. `dag_cpu` maps task instance ids to DAGs through the REST API."""

    def __init__(self, session: int) -> None:
        self.session = session
        self._by_task: dict[str, float] = {}
        self._last: dict[int, tuple[float, str | None]] = {}  # worker pid: (CPU so far, task id)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="task-cpu", daemon=True)

    def start(self) -> TaskCpu:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._by_task)

    def _run(self) -> None:
        from ctlib.localsvc.run import session_members

        while not self._stop.wait(TASK_SAMPLE_S):
            parent: dict[int, int] = {}
            cpu: dict[int, float] = {}
            workers: dict[int, str | None] = {}
            for pid in session_members(self.session):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except (OSError, IndexError):
                    continue
                parent[pid] = int(fields[1])
                cpu[pid] = cpu_seconds(pid, reaped_children=True) or 0.0
                if title.startswith(WORKER_TITLE):
                    running = title[len(WORKER_TITLE):].strip()
                    workers[pid] = None if running.startswith("<idle>") else running
            with self._lock:
                for pid, task in workers.items():
                    total = cpu[pid] + sum(cpu[c] for c, p in parent.items() if p == pid)
                    before = self._last.get(pid)
                    # A task process that exited but is not yet reaped (a zombie) counts nowhere
                    # until its worker reaps it: keep the high-water mark, not to count it twice.
                    self._last[pid] = (max(total, before[0]) if before else total, task)
                    owner = (before[1] or task) if before else None
                    if before and owner and total > before[0]:
                        self._by_task[owner] = self._by_task.get(owner, 0.0) + total - before[0]


def dag_cpu(api: AirflowApi, by_task: dict[str, float], dag_ids: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds of `by_task` (task instance id: seconds) summed by DAG for `dag_ids`; the
    rest (ingest, or a task instance retried since) under "other"."""
    owner: dict[str, str] = {}
    for dag_id in dag_ids:
        for ti in api.listed(f"dags/{dag_id}/dagRuns/~/taskInstances", "task_instances"):
            owner[str(ti.get("id"))] = dag_id
    out: dict[str, float] = {}
    for task, seconds in by_task.items():
        dag_id = owner.get(task, "other")
        out[dag_id] = out.get(dag_id, 0.0) + seconds
    return {k: round(v, 1) for k, v in sorted(out.items())}


# --------------------------------------------------------------------------- Airflow


def states(api: AirflowApi) -> dict[str, str]:
    """The Variables ct_state__<slug> (JSON text), as `ctlib.ingest.state.MappingStateStore` takes them."""
    return {v["key"]: v["value"] for v in api.listed("variables", "variables") if v["key"].startswith("ct_state__")}


def watermarks(api: AirflowApi) -> dict[str, int]:
    """next_index of every log with a stored state."""
    return {key.removeprefix("ct_state__"): json.loads(value)["next_index"] for key, value in states(api).items()}


def dag_runs(api: AirflowApi) -> list[dict[str, Any]]:
    """Every DAG run, by start date (one listing, for ingest and downstream alike)."""
    return api.listed("dags/~/dagRuns", "dag_runs", order_by="start_date")


def wait_for(what: str, check, timeout: float, every: float = 2.0) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - began


# --------------------------------------------------------------------------- lag


def lag_figures(lake: Path, since: float, until: float, tiled: dict[str, bool], plot: Path | None) -> dict[str, Any]:
    """Lag of every certificate logged in [since, until] (epoch seconds): Parquet file mtime
    minus the entry's log timestamp, overall and for classic and tiled logs."""
    import duckdb

    files = sorted((lake / "certs").rglob("*.parquet"))
    con = duckdb.connect()
    con.execute("create table files (filename varchar, mtime double)")
    con.executemany("insert into files values (?, ?)", [(str(f), f.stat().st_mtime) for f in files])
    con.execute("create table kinds (log_slug varchar, tiled boolean)")
    con.executemany("insert into kinds values (?, ?)", list(tiled.items()))
    con.execute(f"""
        create table lags as
        select c.log_slug, k.tiled, epoch_ms(c.timestamp) / 1000.0 as logged,
               f.mtime - epoch_ms(c.timestamp) / 1000.0 as lag
        from read_parquet('{lake}/certs/**/*.parquet', filename = true, hive_partitioning = true) c
        join files f using (filename) join kinds k using (log_slug)
        where epoch_ms(c.timestamp) / 1000.0 between {since} and {until}
    """)

    def stats(where: str) -> dict[str, Any]:
        n, p50, p95, p99, top = con.execute(f"""
            select count(*), quantile_cont(lag, 0.5), quantile_cont(lag, 0.95), quantile_cont(lag, 0.99), max(lag)
            from lags where {where}""").fetchone()
        return {"entries": n, **{k: round(v, 1) if v is not None else None
                                 for k, v in (("p50_s", p50), ("p95_s", p95), ("p99_s", p99), ("max_s", top))}}

    figures = {"all": stats("true"), "classic": stats("not tiled"), "tiled": stats("tiled")}
    series = con.execute(f"""
        select floor((logged - {since}) / 10) * 10 as t, quantile_cont(lag, 0.5), quantile_cont(lag, 0.95), max(lag)
        from lags group by 1 order by 1""").fetchall()
    figures["per_10s"] = [[int(t), round(a, 1), round(b, 1), round(c, 1)] for t, a, b, c in series]
    if plot is not None:
        figures["plot"] = draw(series, plot)
    return figures


def alert_lag_figures(lake: Path, since: float, until: float) -> dict[str, Any]:
    """Alert freshness: for every alert row of a certificate logged in [since, until], the
    modification time of its alerts/ file minus the certificate's log timestamp."""
    import duckdb

    files = sorted((lake / "alerts").rglob("*.parquet"))
    if not files:
        return {"alerts": 0, "p50_s": None, "p95_s": None, "max_s": None}
    con = duckdb.connect()
    con.execute("create table files (filename varchar, mtime double)")
    con.executemany("insert into files values (?, ?)", [(str(f), f.stat().st_mtime) for f in files])
    n, p50, p95, top = con.execute(f"""
        select count(*), quantile_cont(lag, 0.5), quantile_cont(lag, 0.95), max(lag) from (
            select f.mtime - epoch_ms(a.timestamp) / 1000.0 as lag
            from read_parquet('{lake}/alerts/**/*.parquet', filename = true, hive_partitioning = true) a
            join files f using (filename)
            where epoch_ms(a.timestamp) / 1000.0 between {since} and {until})""").fetchone()
    return {"alerts": n, **{k: round(v, 1) if v is not None else None
                            for k, v in (("p50_s", p50), ("p95_s", p95), ("max_s", top))}}


def write_watchlist(path: Path) -> None:
    """WATCH_ITEMS items in certspotter's format: the PLANTED_DOMAINS (as `.domain`) spread
    among domains, names and addresses that occur nowhere in the logs."""
    rng = random.Random("soak-watchlist")
    lines = ["10.20.30.40", "172.16.5.0/24", "fd12:3456:789a::/48"]  # private: the pool's IPs are RFC 5737 / 3849
    k = 0
    while len(lines) < WATCH_ITEMS - len(PLANTED_DOMAINS):
        k += 1
        domain = f"soak-watch-{k:04d}.example"
        lines.append(f".{domain}" if rng.random() < 0.8 else f"{rng.choice(('www', 'mail', 'vpn'))}.{domain}")
    for domain in PLANTED_DOMAINS:
        lines.insert(rng.randrange(len(lines) + 1), f".{domain}")
    path.write_text("# soak bench watchlist (ct_watch)\n" + "\n".join(lines) + "\n", encoding="utf-8")


def _watch_keys(con, lake: Path, since: float, until: float) -> tuple[int, set[str], set[str]]:
    """watch_matches: its rows, every issuance, and the issuances first logged in [since, until]."""
    if not any((lake / "watch_matches").glob("*.parquet")):
        return 0, set(), set()
    con.execute(f"create or replace view wm as select * from read_parquet('{lake}/watch_matches/*.parquet')")
    (rows,) = con.execute("select count(*) from wm").fetchone()
    every = {k for (k,) in con.execute("select distinct tbs_sha256 from wm").fetchall()}
    window = {k for (k,) in con.execute(
        f"select distinct tbs_sha256 from wm where epoch_ms(timestamp) / 1000.0 between {since} and {until}").fetchall()}
    return rows, every, window


def _planted_keys(con, lake: Path, since: float, until: float) -> set[str]:
    """Issuances in certs/ logged in [since, until] with a name under a PLANTED_DOMAIN."""
    pattern = r"(^|[ .])(" + "|".join(re.escape(d) for d in PLANTED_DOMAINS) + r")( |$)"
    return {k for (k,) in con.execute(f"""
        select distinct tbs_sha256
        from read_parquet('{lake}/certs/**/*.parquet', hive_partitioning = true)
        where epoch_ms(timestamp) / 1000.0 between {since} and {until}
          and regexp_matches(array_to_string(dns_names, ' '), ?)""", [pattern]).fetchall()}


def _watch_notified(receiver) -> list[tuple[str, float | None, float]]:
    """(key, log timestamp, arrival) of every watch notification the receiver took (ct_score
    sends its phishing batches there too)."""
    return [(str(r.body.get("key")), _utc(r.body.get("timestamp")), r.at.timestamp()) for r in receiver.accepted
            if isinstance(r.body, dict) and r.body.get("kind") == "watch"]


def await_notifications(receiver, lake: Path, since: float, until: float, deadline: float) -> None:
    """Wait (until `deadline`, epoch seconds) for every issuance of the growth window, in
    watch_matches or planted in certs/, to be notified."""
    import duckdb

    con = duckdb.connect()
    planted = _planted_keys(con, lake, since, until)
    while time.time() < deadline:
        if not (planted | _watch_keys(con, lake, since, until)[2]) - {k for k, _, _ in _watch_notified(receiver)}:
            return
        time.sleep(5)


def notify_figures(receiver, lake: Path, since: float, until: float, deadline: float) -> dict[str, Any]:
    """Watch notification freshness and exactly-once: for every watch notification of a
    certificate logged in [since, until], its arrival at the receiver minus the certificate's
    log timestamp; the keys notified more than once; the growth window's issuances
    (watch_matches) not notified by `deadline`; the planted issuances in certs/ that
    watch_matches lacks."""
    import duckdb

    con = duckdb.connect()
    rows, every, window = _watch_keys(con, lake, since, until)
    planted = _planted_keys(con, lake, since, until)
    notified = _watch_notified(receiver)
    times = Counter(k for k, _, _ in notified)
    duplicates = sorted(k for k, n in times.items() if n > 1)
    in_time = {k for k, _, at in notified if at <= deadline}
    missing = sorted(window - in_time)
    unmatched = sorted(planted - every)
    lags = [at - logged for _, logged, at in notified if logged is not None and since <= logged <= until]
    figures = summary(lags)
    phishing = sum(1 for r in receiver.accepted if isinstance(r.body, dict) and r.body.get("kind") == "phishing")
    return {"notifications": len(lags), "p50_s": figures["p50"], "p95_s": figures["p95"], "max_s": figures["max"],
            "watch_notifications_total": len(notified), "keys_notified": len(times),
            "duplicate_keys": len(duplicates), "duplicates": duplicates[:10],
            "watch_matches_rows": rows, "watch_matches_issuances": len(every), "growth_issuances": len(window),
            "missing_by_deadline": len(missing), "missing": missing[:10], "grace_s": NOTIFY_GRACE_S,
            "late": sum(1 for k in window if k not in in_time and k in times),
            "planted_in_certs": len(planted), "planted_unmatched": len(unmatched), "unmatched": unmatched[:10],
            "phishing_messages": phishing}


def draw(series: list[tuple], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    t = [row[0] for row in series]
    fig, ax = plt.subplots(figsize=(9, 4))
    for column, label in ((1, "p50"), (2, "p95"), (3, "max")):
        ax.plot(t, [row[column] for row in series], label=label)
    ax.axhline(TARGET_P95_S, color="grey", linestyle="--", linewidth=1, label=f"target p95 {TARGET_P95_S:.0f} s")
    ax.set_xlabel("entry logged, seconds since growth began (10 s buckets)")
    ax.set_ylabel("lag to Parquet (s)")
    ax.set_title("ct-airflow soak: freshness lag")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


class MetricsScraper:
    """Scrapes `/ct/metrics` as Prometheus would (the API's JWT from /auth/token) every `every`
    seconds, in a thread: each successful scrape's time in ms, and how many failed."""

    def __init__(self, api: AirflowApi, every: float = 10.0) -> None:
        self.api, self.every = api, every
        self.times: list[float] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def start(self) -> MetricsScraper:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=60)
        # Every scrape's time, in order: the first one, which may build the plugin's app in the
        # API server, is told apart from the steady ones.
        steady = summary(self.times[1:])
        return {**summary(self.times), "scrapes": len(self.times), "failed": self.failed,
                "first_ms": round(self.times[0], 1) if self.times else None,
                "steady_p95": steady["p95"], "steady_max": steady["max"],
                "each_ms": [round(t, 1) for t in self.times]}

    def _run(self) -> None:
        import requests

        while not self._stop.wait(self.every):
            began = time.perf_counter()
            try:
                answer = requests.get(f"{self.api.url}/ct/metrics", headers=self.api.headers, timeout=30)
                ok = answer.status_code == 200 and "ct_log_next_index" in answer.text
            except requests.RequestException:
                ok = False
            if ok:
                self.times.append((time.perf_counter() - began) * 1000)
            else:
                self.failed += 1


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"p50": round(pick(0.5), 1), "p95": round(pick(0.95), 1), "max": round(ordered[-1], 1)}


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="10 minutes of growth and 3 idle (default 3 and 2)")
    parser.add_argument("--profile", choices=("uniform", "firehose"), default="uniform",
                        help="uniform: every log grows alike (defaults 40 logs, 4 tiled, 1,000/s); firehose: "
                             "the 2026 CT firehose (ctlib.testing.profiles: defaults 40 logs, 16 tiled, 3,200/s, "
                             "skewed rates, per-operator caps, 50-150 ms latency)")
    parser.add_argument("--logs", type=int, default=40)
    parser.add_argument("--tiled", type=int, default=None, help="how many of the logs are tiled (4; firehose 16)")
    parser.add_argument("--rate", type=float, default=None,
                        help="entries per second, all logs together (1,000; firehose 3,200)")
    parser.add_argument("--minutes", type=float, default=None, help="minutes of growth")
    parser.add_argument("--idle-minutes", type=float, default=None, help="minutes with no new entry")
    parser.add_argument("--catchup-timeout", type=float, default=600.0)
    parser.add_argument("--with-downstream", action="store_true",
                        help="also run ct_score, ct_enrich and ct_watch (watchlist, planted certificates, a webhook)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (lake, logs)")
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = parser.parse_args()
    firehose = args.profile == "firehose"
    args.tiled = args.tiled if args.tiled is not None else (16 if firehose else 4)
    args.rate = args.rate if args.rate is not None else (3200.0 if firehose else 1000.0)
    if args.out == RESULTS / "soak.json" and firehose:
        args.out = RESULTS / ("soak_firehose_downstream.json" if args.with_downstream else "soak_firehose.json")
    minutes = args.minutes or (10.0 if args.full else 3.0)
    idle_minutes = args.idle_minutes or (3.0 if args.full else 2.0)
    if not 0 <= args.tiled <= args.logs or args.logs < 1 or args.rate <= 0:
        parser.error("need --logs >= 1, 0 <= --tiled <= --logs, --rate > 0")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ct-bench-soak-"))
    print(f"soak ({args.profile}): {args.logs} logs ({args.tiled} tiled) growing {args.rate:,.0f} entries/s in all "
          f"for {minutes:g} min, then {idle_minutes:g} min idle; set-up, not measured:", flush=True)
    remote = RemoteLogs(args.logs, args.tiled, work / "log_list.json", args.profile, args.rate,
                        plant=PLANTED_DOMAINS if args.with_downstream else ())
    try:
        result = soak(args, remote, work, minutes, idle_minutes)
    finally:
        requests = remote.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["log_server_requests"] = requests
    report(result, args.out)


def soak(args: argparse.Namespace, remote: RemoteLogs, work: Path, minutes: float, idle_minutes: float) -> dict[str, Any]:
    from ctlib.localsvc.broker import LocalBroker

    topic = "ct-certs-soak"
    lake = work / "lake"
    settings: dict[str, str] = {"CT_KAFKA_TOPIC": topic}
    receiver = None
    if args.with_downstream:
        from ctlib.testing.receivers import WebhookReceiver

        write_watchlist(work / "watchlist.txt")
        receiver = WebhookReceiver().start()
        settings |= {"CT_WATCHLIST": str(work / "watchlist.txt"), **receiver.airflow_conn_env(WEBHOOK_CONN)}
    broker = LocalBroker(topics=[topic, "ct-alerts", "ct-enriched"], log_path=work / "tansu.log").start()
    try:
        began = time.monotonic()
        with standalone(work, "soak", lake, broker, **settings) as (orch, api):
            return measure(args, api, orch, broker, remote, lake, topic, minutes, idle_minutes, began, receiver)
    finally:
        broker.stop()
        if receiver is not None:
            receiver.stop()


def measure(args, api: AirflowApi, orch, broker, remote: RemoteLogs, lake: Path, topic: str, minutes: float,
            idle_minutes: float, began: float, receiver=None) -> dict[str, Any]:
    from ctlib.ingest.state import MappingStateStore
    from ctlib.ops.audit import kafka_config, load_states, run_audit

    slugs = sorted(remote.tiled)
    dag_ids = [f"ct_ingest__{slug}" for slug in slugs]
    if args.with_downstream:
        dag_ids += list(DOWNSTREAM_DAGS)

    def parsed() -> bool:
        have = {d["dag_id"] for d in api.listed("dags", "dags")}
        return set(dag_ids) <= have

    wait_for("every DAG parsed", parsed, 600)
    for dag_id in dag_ids:
        api.patch(f"dags/{dag_id}", {"is_paused": False})
    print(f"  airflow standalone up, {len(dag_ids)} DAGs parsed and unpaused ({time.monotonic() - began:.0f} s)",
          flush=True)
    waited = wait_for("every log's first commit",
                      lambda: sum(v >= INITIAL for v in watermarks(api).values()) >= len(slugs), 600)
    print(f"  every log committed its first {INITIAL} entries ({waited:.0f} s later); growth begins", flush=True)

    stack = Stack(orch.airflow.pid, broker.pid)
    stack.start_sampling()
    tasks = TaskCpu(orch.airflow.pid).start() if args.with_downstream else None
    cpu_start = stack.cpu()
    task_cpu_start = tasks.snapshot() if tasks else {}
    sizes_start, server_cpu_start = remote.grow(True)
    grow_from = time.time()
    scraper = MetricsScraper(api).start()
    deadline = time.monotonic() + minutes * 60
    while time.monotonic() < deadline:
        time.sleep(min(30.0, max(0.0, deadline - time.monotonic())))
        done = sum(watermarks(api).values())
        print(f"    {(time.time() - grow_from) / 60:4.1f} min: {done:,} entries committed", flush=True)
    grow_until = time.time()
    metrics_scrape_ms = scraper.stop()
    sizes_end, server_cpu_end = remote.grow(False)
    grown = sum(sizes_end.values()) - sum(sizes_start.values())
    grown_per_s = grown / (grow_until - grow_from)
    valid = grown_per_s >= VALID_SHARE * args.rate
    server_share = (server_cpu_end - server_cpu_start) / (grow_until - grow_from)
    print(f"  growth stopped: {grown:,} new entries ({grown_per_s:,.0f}/s of {args.rate:,.0f}/s asked; log server "
          f"{server_share:.2f} of a core); waiting for every log to catch up", flush=True)
    if not valid:
        print(f"  INVALID RUN: the logs grew {grown_per_s:,.0f} entries/s, below {VALID_SHARE:.0%} of the "
              f"{args.rate:,.0f}/s asked (the load generator fell short)", flush=True)
    catchup_s = wait_for("catch-up", lambda: all(watermarks(api).get(s, 0) >= n for s, n in sizes_end.items()),
                         args.catchup_timeout)
    cpu_caught_up = stack.cpu()
    caught_up_at = time.time()
    task_cpu = {}
    if tasks:
        after = tasks.snapshot()
        task_cpu = {k: v - task_cpu_start.get(k, 0.0) for k, v in after.items() if v > task_cpu_start.get(k, 0.0)}
        tasks.stop()
    print(f"  caught up {catchup_s:.0f} s after growth stopped; idle for {idle_minutes:g} min", flush=True)

    idle_from = time.time()
    time.sleep(idle_minutes * 60)
    cpu_idle_end = stack.cpu()
    idle_until = time.time()
    stack.stop_sampling()

    every_run = dag_runs(api)
    runs = [r for r in every_run if r["dag_id"].startswith("ct_ingest__")]
    failed = [r["dag_run_id"] + " " + r["dag_id"] for r in runs if r["state"] == "failed"]
    growth_runs = [r for r in runs if r.get("start_date") and grow_from <= _utc(r["start_date"]) <= grow_until]
    idle_runs = [r for r in runs if r.get("start_date") and r.get("end_date")
                 and idle_from <= _utc(r["start_date"]) and _utc(r["end_date"]) <= idle_until]
    growth_cpu = cpu_between(cpu_start, cpu_caught_up)
    idle_cpu = cpu_between(cpu_caught_up, cpu_idle_end)
    idle_seconds = idle_until - idle_from

    print("  measuring lag and auditing lake and Kafka...", flush=True)
    plot = args.out.parent / (args.out.stem.replace("soak", "soak_lag", 1) + ".png")
    lag = lag_figures(lake, grow_from, grow_until, remote.tiled, plot)
    alert_lag = alert_lag_figures(lake, grow_from, grow_until) if args.with_downstream else None
    notify = None
    cpu_by_dag: dict[str, float] = {}
    if receiver is not None:
        deadline = caught_up_at + NOTIFY_GRACE_S
        if time.time() < deadline:
            print(f"  waiting up to {deadline - time.time():.0f} s more for the growth window's watch notifications",
                  flush=True)
            await_notifications(receiver, lake, grow_from, grow_until, deadline)
        notify = notify_figures(receiver, lake, grow_from, grow_until, deadline)
        cpu_by_dag = dag_cpu(api, task_cpu, DOWNSTREAM_DAGS)
    downstream_failed = [r["dag_run_id"] + " " + r["dag_id"] for r in every_run
                         if r["dag_id"] in DOWNSTREAM_DAGS and r["state"] == "failed"]
    stored = MappingStateStore(states(api))
    audits = run_audit(lake=str(lake), states=load_states(stored, stored.slugs()),
                       kafka=kafka_config(broker.bootstrap_servers, None), topic=topic)
    gaps = [f for a in audits for f in a.findings()]
    final = watermarks(api)
    watermark_short = {s: n - final.get(s, 0) for s, n in sizes_end.items() if final.get(s, 0) != n}
    return {
        "benchmark": "soak",
        "profile": args.profile,
        "mode": "full" if args.full else "short",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "logs": len(slugs), "tiled_logs": sum(remote.tiled.values()), "rate_per_s": args.rate,
        "growth_minutes": minutes, "idle_minutes": idle_minutes, "with_downstream": args.with_downstream,
        "entries_grown": grown, "grown_per_s": round(grown_per_s, 1), "valid": valid,
        "log_server": {"cpu_share_of_core": round(server_share, 3),
                       "cpu_s": round(server_cpu_end - server_cpu_start, 1)},
        "catchup_after_growth_s": round(catchup_s, 1),
        "metrics_scrape_ms": metrics_scrape_ms,
        "lag_s": lag,
        "alert_lag_s": alert_lag,
        "watch_notify_lag_s": notify,
        "task_cpu_s_growth_by_dag": cpu_by_dag or None,
        "task_cpu_s_per_1000_entries_by_dag": {k: round(v / grown * 1000, 3) for k, v in cpu_by_dag.items()}
        if cpu_by_dag and grown else None,
        "task_cpu_attributed_share": round(sum(cpu_by_dag.values()) / growth_cpu["tasks"], 2)
        if cpu_by_dag and growth_cpu.get("tasks") else None,
        "downstream_failed_runs": downstream_failed,
        "cpu_s_per_1000_entries": round(growth_cpu["total"] / grown * 1000, 2) if grown else None,
        "cpu_s_growth_by_component": growth_cpu,
        "cpu_share_growth": {k: round(v / growth_cpu["total"], 2) for k, v in growth_cpu.items()
                             if k != "total" and growth_cpu["total"]},
        "peak_pss_mib": round(stack.peak_pss_mib), "peak_pss_mib_by_component":
            {k: round(v) for k, v in sorted(stack.peak_pss_by_component.items())},
        "idle": {"runs": len(idle_runs), "cpu_s": idle_cpu,
                 "cpu_s_per_run_whole_stack": round(idle_cpu["total"] / len(idle_runs), 2) if idle_runs else None,
                 "cpu_s_per_run_tasks": round(idle_cpu.get("tasks", 0.0) / len(idle_runs), 2) if idle_runs else None,
                 "cpu_s_per_minute_whole_stack": round(idle_cpu["total"] / idle_seconds * 60, 1)},
        "runs_total": len(runs),
        "runs_during_growth": len(growth_runs),
        "run_seconds_during_growth": summary([_utc(r["end_date"]) - _utc(r["start_date"])
                                              for r in growth_runs if r.get("end_date")]),
        "run_start_delay_s_during_growth": summary([_utc(r["start_date"]) - _utc(r["run_after"])
                                                    for r in growth_runs if r.get("run_after")]),
        "failed_runs": failed,
        "audit": {"clean": not gaps and all(a.ok for a in audits) and not watermark_short,
                  "findings": gaps, "logs_short_of_size": watermark_short},
        "target_p95_s": TARGET_P95_S,
        "meets_target": valid and (lag["all"]["p95_s"] or 1e9) <= TARGET_P95_S and not failed and not gaps
        and not downstream_failed
        and (alert_lag is None or (alert_lag["p95_s"] or 0) <= TARGET_ALERT_P95_S)
        and (notify is None or ((notify["p95_s"] if notify["p95_s"] is not None else 1e9) <= TARGET_NOTIFY_P95_S
                                and not notify["duplicate_keys"] and not notify["missing_by_deadline"]
                                and not notify["planted_unmatched"])),
    }


def report(result: dict[str, Any], out: Path) -> None:
    lag = result["lag_s"]
    print(f"\nsoak ({result['profile']}, {result['mode']}): {result['logs']} logs ({result['tiled_logs']} tiled), "
          f"{result['entries_grown']:,} entries in {result['growth_minutes']:g} min: {result['grown_per_s']:,.0f}/s of "
          f"{result['rate_per_s']:,.0f}/s asked{'' if result['valid'] else ' -- INVALID RUN (below 95%)'}; "
          f"log server {result['log_server']['cpu_share_of_core']:.2f} of a core")
    for kind in ("all", "classic", "tiled"):
        f = lag[kind]
        print(f"  lag {kind:<8} p50 {f['p50_s']} s  p95 {f['p95_s']} s  p99 {f['p99_s']} s  max {f['max_s']} s  "
              f"({f['entries']:,} entries)")
    if result["alert_lag_s"] is not None:
        a = result["alert_lag_s"]
        print(f"  alert lag (log timestamp to alerts/ row) p50 {a['p50_s']} s  p95 {a['p95_s']} s  max {a['max_s']} s "
              f"({a['alerts']:,} alerts); downstream failed runs: {len(result['downstream_failed_runs'])}")
    n = result["watch_notify_lag_s"]
    if n is not None:
        print(f"  watch notify lag (log timestamp to webhook arrival) p50 {n['p50_s']} s  p95 {n['p95_s']} s  "
              f"max {n['max_s']} s ({n['notifications']:,} notifications of growth-window certificates)")
        print(f"  watch: {n['watch_matches_rows']:,} watch_matches rows, {n['watch_matches_issuances']:,} issuances "
              f"({n['growth_issuances']:,} in the growth window; {n['planted_in_certs']:,} planted in certs/, "
              f"{n['planted_unmatched']} never matched); {n['watch_notifications_total']:,} watch notifications, "
              f"{n['keys_notified']:,} keys, {n['duplicate_keys']} notified twice {n['duplicates'][:3]}, "
              f"{n['missing_by_deadline']} not notified by catch-up + {n['grace_s']:.0f} s {n['missing'][:3]} "
              f"({n['late']} late); {n['phishing_messages']} phishing messages")
    print(f"  CPU {result['cpu_s_per_1000_entries']} s per 1,000 entries; by component "
          f"{result['cpu_s_growth_by_component']}")
    if result.get("task_cpu_s_per_1000_entries_by_dag"):
        print(f"  task CPU s per 1,000 entries by DAG (sampled, {result['task_cpu_attributed_share']:.0%} of task "
              f"CPU attributed) {result['task_cpu_s_per_1000_entries_by_dag']}")
    print(f"  peak memory (PSS) {result['peak_pss_mib']:,} MiB {result['peak_pss_mib_by_component']}")
    m = result["metrics_scrape_ms"]
    print(f"  /ct/metrics scrape (every 10 s during growth, with a JWT) p50 {m['p50']} ms  p95 {m['p95']} ms  "
          f"max {m['max']} ms ({m['scrapes']} scrapes, {m['failed']} failed); the first {m.get('first_ms')} ms, "
          f"the others p95 {m.get('steady_p95')} ms, max {m.get('steady_max')} ms")
    idle = result["idle"]
    print(f"  idle: {idle['runs']} runs, {idle['cpu_s_per_run_whole_stack']} CPU s per run (whole stack; tasks "
          f"{idle['cpu_s_per_run_tasks']}), {idle['cpu_s_per_minute_whole_stack']} CPU s a minute")
    print(f"  runs during growth {result['runs_during_growth']}: seconds {result['run_seconds_during_growth']}, "
          f"start delay {result['run_start_delay_s_during_growth']}")
    print(f"  failed runs: {len(result['failed_runs'])}; audit clean: {result['audit']['clean']} "
          f"{result['audit']['findings'][:5]}")
    print(f"  target p95 <= {TARGET_P95_S:.0f} s (with downstream: alerts {TARGET_ALERT_P95_S:.0f} s, watch "
          f"notifications {TARGET_NOTIFY_P95_S:.0f} s, each issuance notified once), no gap, no failed run, "
          "a valid load: "
          f"{'met' if result['meets_target'] else 'NOT met'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    notified = result["watch_notify_lag_s"] or {}
    if (not result["audit"]["clean"] or result["failed_runs"] or result["downstream_failed_runs"]
            or notified.get("duplicate_keys") or notified.get("missing_by_deadline")
            or notified.get("planted_unmatched")):
        raise SystemExit("the soak lost, doubled or failed something: see above")


if __name__ == "__main__":
    main()
