"""Chaos soak: many faults together against a live load, then the claim Jepsen-style tests
check: nothing acknowledged is lost and nothing is doubled.

Set-up, not measured:
* the local CT log server (`ctlib.testing.ctlog.LogServer`) in a child process, as remote logs
  would be: 40 logs (8 of them static-ct-api, tiled), each published with 256 entries;
* an embedded PostgreSQL of its own (so it can be restarted), a tansu broker, a webhook
  receiver for ct_watch's notifications and a 1,000-item watchlist (soak_bench's);
* Airflow as production runs it, each component a process (and session) of its own:
  `airflow api-server`, `airflow dag-processor`, `airflow scheduler` (LocalExecutor,
  parallelism 8), under a supervisor that restarts a component 3 s after it dies, killing
  what is left of its session first, as `restart: always` restarts a container. Dead tasks
  and schedulers are found in about a minute (heartbeat timeout 60 s), not the default 5.
* every ingest DAG and ct_score, ct_enrich and ct_watch unpaused; each log's first 256
  entries committed.

Then the logs grow 1,000 entries/s in all for 5 minutes (20 with --full), while the faults of
`ctlib.testing.chaos.plan_faults` (fixed seed, --seed) hit at their moments, all between 20 s
and 3.5 min of growth (1 and 17 min with --full):
* SIGKILL of the scheduler, the dag-processor and the API server, 2 times each (3 with --full),
  and of a running task's process (its runner, the process executing the task's code), 4
  times (8);
* the broker stopped for 30-60 s, twice: SIGSTOP, then SIGCONT. tansu keeps its data in
  memory only, so a killed broker would come back empty and lose what it had acknowledged,
  which Apache Kafka (on disk) does not; a stopped one answers nothing, which is what clients
  see of a dead broker, and keeps its data;
* PostgreSQL restarted once (fast shutdown: every connection dropped, then started again);
* one log answering 500/503 to every request for 2 minutes;
* one classic log serving a tampered entry (a byte flipped, as a lying log would) from one
  moment until an incident names it: a fetch that got the lie but failed for another reason
  (the broker down, a kill) never reached the commit's root check, and its retry is lied to
  again.

Growth then stops; the soak waits for every ingest watermark to reach its log's size and for
ct_score's and ct_watch's watermarks to reach ingest's, and checks its claims:
1. `python -m ctlib.audit --kafka`, as an operator runs it: every index of every log in the
   lake exactly once, every certificate's key in Kafka, every certificate below ct_score's
   watermark scored once (exit 0);
2. no bad entry: every log's leaf hashes in the lake hash to the root its state verified;
3. the tampered log has an incident in the lake, and the tampered entry was served;
4. the lag (at moment t: the age of the oldest entry logged and not yet in the lake) is below
   90 s within 3 minutes of the end of the last fault, and stays below;
5. none of the stack's secrets (JWT secret, API secret key, Fernet key, admin password) is in
   any task log the scheduler's tasks wrote or in the components' output.

It prints a timeline (faults, restarts, lag, runs failed and recovered every 30 s), writes
bench/results/chaos_soak[_full].json and a PNG plot beside it, and exits 1 when a claim fails.

    .venv/bin/python bench/chaos_soak.py            # short: 5 minutes of growth
    .venv/bin/python bench/chaos_soak.py --full     # 20 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catchup_bench import RESULTS, _utc
from ctlib.testing import chaos
from ctlib.testing.airflow_api import AirflowApi
from soak_bench import INITIAL, WEBHOOK_CONN, RemoteLogs, states, watermarks, write_watchlist

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
TOPIC = "ct-certs-chaos"
DOWNSTREAM_DAGS = ("ct_score", "ct_enrich", "ct_watch")
WATCHED_CONSUMERS = ("score", "watch")  # ct_score and ct_watch: their watermarks must reach ingest's
LAG_LIMIT_S = 90.0
RECOVERY_LIMIT_S = 180.0
HEARTBEAT_TIMEOUT_S = 60
SAMPLE_EVERY_S = 10.0
PRINT_EVERY_S = 30.0
TAMPER_AHEAD = 40  # entries past the log's size: the tampered index is met during growth
TAMPER_CAUGHT_WITHIN_S = 300.0  # the lying log lies until an incident names it, at most this long


class Timeline:
    """Events (seconds since growth began, source, text), printed as they happen."""

    def __init__(self) -> None:
        self.began = time.time()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.began = time.time()

    def add(self, source: str, text: str, **extra: Any) -> None:
        at = time.time() - self.began
        with self._lock:
            self.events.append({"t_s": round(at, 1), "source": source, "event": text, **extra})
        sign = "-" if at < 0 else " "
        print(f"  {sign}{int(abs(at)) // 60:02d}:{int(abs(at)) % 60:02d}  {source:<14} {text}", flush=True)


# --------------------------------------------------------------------------- the stack


class ChaosStack:
    """PostgreSQL, the broker and the Airflow components of one soak, with the handles the
    faults need."""

    def __init__(self, work: Path, remote: RemoteLogs, timeline: Timeline, receiver: Any) -> None:
        from cryptography.fernet import Fernet

        from ctlib.localsvc import free_port
        from ctlib.localsvc.broker import LocalBroker
        from ctlib.localsvc.postgres import EmbeddedPostgres
        from ctlib.localsvc.run import airflow_env, ensure_admin_password, standalone_env

        self.work, self.remote, self.timeline = work, remote, timeline
        (work / "pg").mkdir()
        for folder in (work, work / "pg"):
            folder.chmod(0o755)  # the embedded server's system user must reach its data folder
        self.pg = EmbeddedPostgres(work / "pg" / "data", port=free_port())
        self.db_url = self.pg.ensure_running()
        self.broker = LocalBroker(topics=[TOPIC, "ct-alerts", "ct-enriched"], log_path=work / "tansu.log").start()
        self.lake = work / "lake"
        self.logs_dir = work / "logs"
        self.logs_dir.mkdir()
        self.api_port = free_port()
        write_watchlist(work / "watchlist.txt")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "CT_"))
               or k == "CT_TANSU_BIN"}
        env.update({
            "AIRFLOW_HOME": str(work / "airflow-home"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            # Dead tasks and schedulers are found in about a minute, not 5.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "15",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "30",
            "CT_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "CT_LOG_LIST": str(work / "log_list.json"),
            "CT_LOG_LIST_SNAPSHOT": str(work / "cache" / "log_list.json"),
            "CT_LAKE": str(self.lake),
            "CT_START_AT": "beginning",
            "CT_KAFKA_TOPIC": TOPIC,
            "CT_WATCHLIST": str(work / "watchlist.txt"),
            # A run meets the broker's outage within this, then fails visibly and is retried.
            "CT_KAFKA_FLUSH_TIMEOUT": "30",
            "CT_TASK_RETRY_DELAY": "10",
            # A tiled log's last partial tile is read by the first run that sees it, not a run
            # later: once growth stops (real logs never stop) it would add a minute of lag to
            # the catch-up that has nothing to do with the faults.
            "CT_PARTIAL_TILE_WAIT": "0",
            **self.broker.airflow_env(),
            **receiver.airflow_conn_env(WEBHOOK_CONN),
        })  # fmt: skip
        airflow_env(env)
        standalone_env(env, self.api_port)
        self.login = ensure_admin_password(env)
        self.env = env
        self._migrate()
        airflow = str(VENV_BIN / "airflow")
        self.api_server = chaos.Component("api-server", [airflow, "api-server"], env, self.logs_dir, cwd=PROJECT_ROOT)
        self.dag_processor = chaos.Component("dag-processor", [airflow, "dag-processor"], env, self.logs_dir,
                                             cwd=PROJECT_ROOT)
        self.scheduler = chaos.Component(
            "scheduler", [airflow, "scheduler"], env, self.logs_dir, cwd=PROJECT_ROOT,
            extra_env=lambda: {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())})
        self.supervisor = chaos.Supervisor([self.api_server, self.dag_processor, self.scheduler],
                                           on_event=timeline.add)
        self.api_url = f"http://127.0.0.1:{self.api_port}"

    def _migrate(self) -> None:
        from ctlib.localsvc.run import ensure_pool, migrate

        migrate(self.env)
        ensure_pool(self.env)

    def start(self) -> AirflowApi:
        import requests

        self.supervisor.start()
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(f"{self.api_url}/api/v2/version", timeout=5).status_code in (200, 401, 403):
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the API server did not come up:\n{self.api_server.tail()}")
            time.sleep(2)
        assert self.login is not None
        return AirflowApi(self.api_url, self.login)

    def stop(self) -> None:
        self.supervisor.stop()
        self.broker.stop()
        self.pg.stop()


# --------------------------------------------------------------------------- faults


class Injector:
    """Applies the planned faults at their moments (seconds after `timeline.began`)."""

    def __init__(self, stack: ChaosStack, plan: list[chaos.Fault], slugs: list[str], timeline: Timeline) -> None:
        self.stack, self.plan, self.slugs, self.timeline = stack, plan, slugs, timeline
        self.rng = random.Random("chaos-injector")
        self.applied: list[dict[str, Any]] = []
        self.tampered: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Injector:
        for fault in self.plan:
            thread = threading.Thread(target=self._at, args=(fault,), name=f"fault-{fault.kind}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def _at(self, fault: chaos.Fault) -> None:
        if self._stop.wait(max(0.0, self.timeline.began + fault.at_s - time.time())):
            return
        try:
            detail = self._apply(fault)
        except Exception as err:  # a fault that could not be applied is a finding, not a crash
            detail = f"NOT APPLIED: {type(err).__name__}: {err}"
        self.applied.append({"kind": fault.kind, "planned_s": fault.at_s, "duration_s": fault.duration_s,
                             "detail": detail})

    def _apply(self, fault: chaos.Fault) -> str:
        stack, say = self.stack, self.timeline.add
        if fault.kind in (chaos.KILL_SCHEDULER, chaos.KILL_DAG_PROCESSOR, chaos.KILL_API_SERVER):
            component = {chaos.KILL_SCHEDULER: stack.scheduler, chaos.KILL_DAG_PROCESSOR: stack.dag_processor,
                         chaos.KILL_API_SERVER: stack.api_server}[fault.kind]
            deadline = time.monotonic() + 60
            while not component.alive() and time.monotonic() < deadline:  # down on its own: wait for its restart
                time.sleep(0.5)
            if not component.alive():
                say("FAULT", f"{fault.kind}: not running for 60 s, NOT APPLIED")
                return "NOT APPLIED: not running"
            pid = component.pid
            component.sigkill()
            say("FAULT", f"SIGKILL {component.name} (pid {pid})")
            return f"pid {pid}"
        if fault.kind == chaos.KILL_TASK:
            deadline = time.monotonic() + 60
            while not self._stop.is_set() and time.monotonic() < deadline:
                runners = chaos.task_runners(stack.scheduler.pid) if stack.scheduler.alive() else {}
                if runners:
                    pid, ti = self.rng.choice(sorted(runners.items()))
                    os.kill(pid, signal.SIGKILL)
                    say("FAULT", f"SIGKILL task runner pid {pid} (task instance {ti})")
                    return f"pid {pid} ti {ti}"
                time.sleep(0.5)
            say("FAULT", "kill task: no running task found within 60 s")
            return "no running task"
        if fault.kind == chaos.BROKER_DOWN:
            pid = stack.broker.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            say("FAULT", f"broker stopped (SIGSTOP) for {fault.duration_s:.0f} s")
            self._stop.wait(fault.duration_s)
            os.kill(pid, signal.SIGCONT)
            say("FAULT", "broker back (SIGCONT)")
            return f"{fault.duration_s:.0f} s"
        if fault.kind == chaos.POSTGRES_RESTART:
            say("FAULT", "PostgreSQL: fast shutdown")
            began = time.monotonic()
            stack.pg.stop()
            time.sleep(2)
            stack.pg.ensure_running()
            say("FAULT", f"PostgreSQL back ({time.monotonic() - began:.0f} s down)")
            return f"{time.monotonic() - began:.0f} s"
        if fault.kind == chaos.LOG_5XX:
            assert fault.target is not None
            slug = self.stack.remote.ask("faults", (fault.target, {"http_5xx_every": 1}))
            say("FAULT", f"log {slug} answers 5xx to everything for {fault.duration_s:.0f} s")
            self._stop.wait(fault.duration_s)
            self.stack.remote.ask("faults", (fault.target, {"http_5xx_every": 0}))
            say("FAULT", f"log {slug} answers again")
            return f"{slug} {fault.duration_s:.0f} s"
        if fault.kind == chaos.LOG_TAMPER:
            assert fault.target is not None
            index = self.stack.remote.ask("tamper", (fault.target, TAMPER_AHEAD))
            slug = self.slugs[fault.target]
            self.tampered = (slug, index)
            say("FAULT", f"log {slug} serves index {index} tampered until an incident names it")
            # A fetch that got the lie but failed for another reason (the broker down, a kill)
            # never reached the commit's root check; the log lies again to its retry.
            deadline = time.monotonic() + TAMPER_CAUGHT_WITHIN_S
            while not incidents_of(stack.lake, slug) and time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(2)
            caught = bool(incidents_of(stack.lake, slug))
            stack.remote.ask("untamper", fault.target)
            times = stack.remote.ask("tampered").get(slug, (index, None, 0))[2]
            say("FAULT", f"log {slug} tells the truth again: the lie went out in {times} answer(s), "
                         f"{'caught' if caught else 'NOT caught'}")
            return f"{slug} index {index}; served {times} time(s); {'caught' if caught else 'NOT CAUGHT'}"
        raise ValueError(f"unknown fault {fault.kind!r}")


# --------------------------------------------------------------------------- observing


def downstream_watermarks(api: AirflowApi) -> dict[str, dict[str, int]]:
    """{consumer: {slug: next_index}} from the Variables ct_downstream__<consumer>__<slug>."""
    from ctlib.downstream.progress import parse_key

    out: dict[str, dict[str, int]] = {}
    for v in api.listed("variables", "variables"):
        parsed = parse_key(v["key"])
        if parsed:
            consumer, slug = parsed
            out.setdefault(consumer, {})[slug] = int(json.loads(v["value"]).get("next_index", 0))
    return out


class Sampler:
    """Every SAMPLE_EVERY_S: the committed entries and the runs failed and succeeded, through
    the REST API (a sample is skipped while the API server is down); a timeline line every
    PRINT_EVERY_S."""

    def __init__(self, stack: ChaosStack, timeline: Timeline) -> None:
        self.stack, self.timeline = stack, timeline
        self.samples: list[dict[str, Any]] = []
        self.api: AirflowApi | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        last_print = 0.0
        while not self._stop.wait(SAMPLE_EVERY_S):
            at = time.time() - self.timeline.began
            try:
                if self.api is None:
                    self.api = AirflowApi(self.stack.api_url, self.stack.login)  # type: ignore[arg-type]
                committed = sum(watermarks(self.api).values())
                run_states = Counter(r["state"] for r in self.api.listed("dags/~/dagRuns", "dag_runs"))
            except Exception as err:  # the API server or the database is down: a gap in the samples
                self.api = None if "401" in str(err) else self.api
                self.samples.append({"t_s": round(at, 1), "unavailable": type(err).__name__})
                continue
            sample = {"t_s": round(at, 1), "committed": committed, "runs": dict(run_states)}
            self.samples.append(sample)
            if at - last_print >= PRINT_EVERY_S:
                last_print = at
                self.timeline.add("sample", f"{committed:,} entries committed; runs {dict(sorted(run_states.items()))}")


def batches(lake: Path) -> dict[str, list[chaos.Batch]]:
    """{slug: [Batch]} of every certs and errors file of the lake: its oldest entry's log
    timestamp and its modification time (the file appears under its final name by a rename
    right after)."""
    import duckdb

    con = duckdb.connect()
    out: dict[str, list[chaos.Batch]] = {}
    for table in ("certs", "errors"):
        files = [f for f in (lake / table).rglob("*.parquet") if not f.name.startswith(".")]
        if not files:
            continue
        con.execute("create or replace table files (filename varchar, mtime double)")
        con.executemany("insert into files values (?, ?)", [(str(f), f.stat().st_mtime) for f in files])
        rows = con.execute(f"""
            select c.log_slug, min(epoch_ms(c.timestamp)) / 1000.0, any_value(f.mtime)
            from read_parquet('{lake}/{table}/**/*.parquet', filename = true, hive_partitioning = true) c
            join files f using (filename) where c.timestamp is not null group by c.log_slug, filename""").fetchall()
        for slug, logged, committed in rows:
            out.setdefault(slug, []).append(chaos.Batch(logged, committed))
    return out


SECRET_SETTINGS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY",
                   "CT_ADMIN_PASSWORD")


def leaked_secrets(env: dict[str, str], folders: list[Path]) -> dict[str, list[str]]:
    """{setting: [files]} of the stack's secrets (SECRET_SETTINGS), as is or base64, found in
    any file under `folders`: every task log the scheduler's tasks wrote, and the components'
    own output, after a run in which everything failed at least once."""
    import base64

    needles = {}
    for name in SECRET_SETTINGS:
        value = env[name].encode()
        needles[name] = [value, base64.b64encode(value)[:-4] or value]  # without padding-dependent tail
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in (f for f in folder.rglob("*") if f.is_file()):
            data = path.read_bytes()
            for name, forms in needles.items():
                if any(form in data for form in forms):
                    found.setdefault(name, []).append(str(path.relative_to(folder.parent)))
    return found


def lake_roots(lake: Path, sizes: dict[str, int]) -> dict[str, str]:
    """{slug: base64 Merkle root of the lake's leaf hashes [0, size)} for every log whose
    lake holds each of those indexes once (certs and errors together)."""
    import base64

    import duckdb

    from ctlib.ct.merkle import root_hash

    con = duckdb.connect()
    out = {}
    for slug, size in sizes.items():
        rows = con.execute(f"""
            select index, leaf_hash from read_parquet('{lake}/certs/log={slug}/**/*.parquet', hive_partitioning = true)
            where index < {size} order by index""").fetchall()
        if [i for i, _ in rows] != list(range(size)):
            out[slug] = f"lake holds {len(rows)} rows for {size} indexes"  # errors/ rows have no leaf hash here
            continue
        out[slug] = base64.b64encode(root_hash([bytes.fromhex(h) for _, h in rows])).decode()
    return out


def incidents_of(lake: Path, slug: str) -> list[dict[str, Any]]:
    import duckdb

    files = [f for f in (lake / "incidents" / f"log={slug}").rglob("*.parquet") if not f.name.startswith(".")]
    if not files:
        return []
    con = duckdb.connect()
    rows = con.execute(f"select * from read_parquet({[str(f) for f in files]!r})")
    names = [d[0] for d in rows.description]
    return [{k: str(v) for k, v in zip(names, row)} for row in rows.fetchall()]


def run_outcomes(api: AirflowApi) -> dict[str, Any]:
    """Runs by state; failed runs of each DAG and whether a later run of it succeeded."""
    runs = api.listed("dags/~/dagRuns", "dag_runs", order_by="start_date")
    failed = [r for r in runs if r["state"] == "failed"]
    recovered = 0
    for r in failed:
        later = [x for x in runs if x["dag_id"] == r["dag_id"] and x["state"] == "success"
                 and (_utc(x.get("start_date")) or 0) > (_utc(r.get("start_date")) or 0)]
        recovered += bool(later)
    return {"runs": len(runs), "by_state": dict(Counter(r["state"] for r in runs)), "failed": len(failed),
            "failed_then_recovered": recovered, "failed_by_dag": dict(Counter(r["dag_id"] for r in failed)),
            "not_finished": [r["dag_id"] for r in runs if r["state"] in ("running", "queued")]}


def draw(timeline: list[tuple[float, float]], faults: list[dict[str, Any]], last_fault_end: float,
         growth_s: float, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(11, 4.5))
    ax.plot([t / 60 for t, _ in timeline], [lag for _, lag in timeline], color="black", linewidth=1.2,
            label="lag (oldest entry not yet in the lake)")
    colours = {}
    palette = iter(plt.get_cmap("tab10").colors)
    for fault in faults:
        if fault["kind"] not in colours:
            colours[fault["kind"]] = next(palette)
        colour = colours[fault["kind"]]
        start = fault["planned_s"] / 60
        if fault["duration_s"]:
            ax.axvspan(start, start + fault["duration_s"] / 60, color=colour, alpha=0.2)
        else:
            ax.axvline(start, color=colour, linewidth=1, linestyle=":")
    for kind, colour in colours.items():
        ax.plot([], [], color=colour, label=kind)
    ax.axhline(LAG_LIMIT_S, color="grey", linestyle="--", linewidth=1, label=f"{LAG_LIMIT_S:.0f} s")
    ax.axvline(last_fault_end / 60, color="red", linewidth=1, label="last fault ends")
    ax.axvline((last_fault_end + RECOVERY_LIMIT_S) / 60, color="red", linewidth=1, linestyle="--",
               label=f"+{RECOVERY_LIMIT_S / 60:.0f} min")
    ax.axvline(growth_s / 60, color="grey", linewidth=1, label="growth stops")
    ax.set_xlabel("minutes since growth began")
    ax.set_ylabel("lag (s)")
    ax.set_title("ct-airflow chaos soak: lag under faults")
    ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="20 minutes of growth (default 5)")
    parser.add_argument("--seed", type=int, default=18, help="the fault plan's seed")
    parser.add_argument("--logs", type=int, default=40)
    parser.add_argument("--tiled", type=int, default=8)
    parser.add_argument("--rate", type=float, default=1000.0, help="entries per second, all logs together")
    parser.add_argument("--minutes", type=float, default=None, help="minutes of growth (5; --full 20)")
    parser.add_argument("--catchup-timeout", type=float, default=900.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (lake, component logs)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    minutes = args.minutes or (20.0 if args.full else 5.0)
    out = args.out or RESULTS / ("chaos_soak_full.json" if args.full else "chaos_soak.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ct-bench-chaos-"))
    print(f"chaos soak: {args.logs} logs ({args.tiled} tiled) growing {args.rate:,.0f} entries/s in all for "
          f"{minutes:g} min under faults (seed {args.seed}); set-up, not measured:", flush=True)
    remote = RemoteLogs(args.logs, args.tiled, work / "log_list.json", "uniform", args.rate)
    ok = False
    try:
        result = soak(args, remote, work, minutes)
        out.write_text(json.dumps(result, indent=2) + "\n")
        ok = report(result, out)
    finally:
        remote.stop()
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        raise SystemExit(1)


def soak(args: argparse.Namespace, remote: RemoteLogs, work: Path, minutes: float) -> dict[str, Any]:
    from ctlib.testing.receivers import WebhookReceiver

    timeline = Timeline()
    receiver = WebhookReceiver().start()
    stack = ChaosStack(work, remote, timeline, receiver)
    try:
        return run(args, remote, stack, timeline, minutes, receiver)
    finally:
        stack.stop()
        receiver.stop()


def run(args: argparse.Namespace, remote: RemoteLogs, stack: ChaosStack, timeline: Timeline, minutes: float,
        receiver: Any) -> dict[str, Any]:
    from ctlib.testing.chaos import plan_faults

    began = time.monotonic()
    api = stack.start()
    slugs = list(remote.tiled)
    dag_ids = [f"ct_ingest__{slug}" for slug in slugs] + list(DOWNSTREAM_DAGS)
    wait_for("every DAG parsed", lambda: set(dag_ids) <= {d["dag_id"] for d in api.listed("dags", "dags")}, 600)
    for dag_id in dag_ids:
        api.patch(f"dags/{dag_id}", {"is_paused": False})
    wait_for("every log's first commit",
             lambda: sum(v >= INITIAL for v in watermarks(api).values()) >= len(slugs), 600)
    print(f"  stack up, {len(dag_ids)} DAGs unpaused, every log's first {INITIAL} entries committed "
          f"({time.monotonic() - began:.0f} s); growth and faults begin", flush=True)

    # The faults start after a first stretch of load and end a stretch before growth stops,
    # so the recovery is measured under load (the rest of it during catch-up).
    start_s, tail_s = (60.0, 180.0) if args.full else (20.0, 90.0)
    classic = [i for i, slug in enumerate(slugs) if not remote.tiled[slug]]
    plan = plan_faults(args.seed, minutes * 60 - tail_s, start_s=start_s, kills_each=3 if args.full else 2,
                       task_kills=8 if args.full else 4, logs=len(slugs), classic_logs=classic)
    last_fault_end = max(f.end_s for f in plan)
    sizes_start, _ = remote.grow(True)
    timeline.start()
    injector = Injector(stack, plan, slugs, timeline).start()
    sampler = Sampler(stack, timeline).start()
    time.sleep(minutes * 60)
    sizes_end, _ = remote.grow(False)
    growth_s = time.time() - timeline.began
    injector.join()
    grown = sum(sizes_end.values()) - sum(sizes_start.values())
    timeline.add("load", f"growth stopped: {grown:,} new entries ({grown / growth_s:,.0f}/s); waiting for catch-up")

    api = AirflowApi(stack.api_url, stack.login)  # type: ignore[arg-type]  # a fresh token after restarts
    caught_up = wait_quietly(lambda: all(watermarks(api).get(s, 0) >= n for s, n in sizes_end.items()),
                             args.catchup_timeout)
    timeline.add("load", f"ingest {'caught up' if caught_up else 'did NOT catch up'}")

    def downstream_done() -> bool:
        ingest, down = watermarks(api), downstream_watermarks(api)
        return all(down.get(c, {}).get(s, 0) >= n for c in WATCHED_CONSUMERS for s, n in ingest.items())

    downstream_caught_up = wait_quietly(downstream_done, args.catchup_timeout)
    timeline.add("load", f"ct_score and ct_watch {'caught up' if downstream_caught_up else 'did NOT catch up'}")
    sampler.stop()
    return claims(args, remote, stack, api, timeline, plan, injector, sampler, sizes_end, growth_s,
                  last_fault_end, grown, caught_up, downstream_caught_up, minutes, receiver)


def claims(args, remote, stack: ChaosStack, api: AirflowApi, timeline: Timeline, plan, injector: Injector,
           sampler: Sampler, sizes_end: dict[str, int], growth_s: float, last_fault_end: float, grown: int,
           caught_up: bool, downstream_caught_up: bool, minutes: float, receiver: Any) -> dict[str, Any]:
    print("  checking the claims: audit (lake, Kafka, scores), Merkle roots, incident, lag...", flush=True)
    audit = subprocess.run(
        [sys.executable, "-m", "ctlib.audit", "--lake", str(stack.lake), "--kafka",
         "--bootstrap", stack.broker.bootstrap_servers, "--topic", TOPIC, "--kafka-timeout", "60"],
        env=stack.env, capture_output=True, text=True, timeout=900, cwd=PROJECT_ROOT)  # fmt: skip
    audit_text = (audit.stdout + audit.stderr).strip()
    stored = {key.removeprefix("ct_state__"): json.loads(value) for key, value in states(api).items()}
    task_logs = Path(stack.env["AIRFLOW_HOME"]) / "logs"
    leaks = leaked_secrets(stack.env, [task_logs, stack.logs_dir])
    log_files = sum(1 for f in task_logs.rglob("*.log"))
    roots = lake_roots(stack.lake, {slug: s["tree_size"] for slug, s in stored.items()
                                    if s.get("next_index") == s.get("tree_size")})
    root_mismatch = {slug: {"lake": roots.get(slug), "verified": s.get("root_hash")}
                     for slug, s in stored.items() if roots.get(slug) != s.get("root_hash")}
    tampered = remote.ask("tampered")
    tampered_slug, tampered_index = injector.tampered or (None, None)
    _, served_at, served_times = tampered.get(tampered_slug, (None, None, 0)) if tampered_slug else (None, None, 0)
    incidents = incidents_of(stack.lake, tampered_slug) if tampered_slug else []

    lag = chaos.lag_timeline([b for bs in batches(stack.lake).values() for b in bs], timeline.began,
                             timeline.began + growth_s + 600)
    while len(lag) > 1 and lag[-1][1] == 0.0 and lag[-2][1] == 0.0 and lag[-1][0] > growth_s:
        lag.pop()  # the quiet tail after catch-up
    recovered = chaos.recovered_at(lag, last_fault_end, LAG_LIMIT_S)
    peak_t, peak = max(lag, key=lambda p: p[1]) if lag else (None, None)
    outcomes = run_outcomes(api)
    restarts = [e for e in timeline.events if e["event"].startswith("restarted")]
    result = {
        "benchmark": "chaos_soak", "mode": "full" if args.full else "short",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "seed": args.seed, "logs": len(sizes_end), "tiled_logs": sum(remote.tiled.values()),
        "rate_per_s": args.rate, "growth_minutes": minutes, "entries_grown": grown,
        "grown_per_s": round(grown / growth_s, 1), "entries_total": sum(sizes_end.values()),
        "faults_planned": [vars(f) for f in plan], "faults_applied": injector.applied,
        "faults_by_kind": dict(Counter(f["kind"] for f in injector.applied)),
        "component_restarts": dict(Counter(e["source"] for e in restarts)),
        # Exits the plan did not cause show up here with their own codes (-9 is our SIGKILL).
        "component_exits": [{"component": e["source"], "t_s": e["t_s"], "event": e["event"].split(";")[0]}
                            for e in timeline.events if e["event"].startswith("exited")],
        "last_fault_end_s": round(last_fault_end, 1),
        "lag": {"peak_s": peak, "peak_at_s": peak_t, "recovered_at_s": recovered,
                "recovery_s": round(recovered - last_fault_end, 1) if recovered is not None else None,
                "limit_s": LAG_LIMIT_S, "recovery_limit_s": RECOVERY_LIMIT_S, "every_5s": lag},
        "runs": outcomes,
        "ingest_caught_up": caught_up, "downstream_caught_up": downstream_caught_up,
        "audit": {"exit": audit.returncode, "report": audit_text[-6000:]},
        "merkle_roots_mismatch": root_mismatch,
        "secrets_in_logs": {"task_log_files": log_files, "found": leaks},
        "tamper": {"log": tampered_slug, "index": tampered_index,
                   "served_s": round(served_at - timeline.began, 1) if served_at else None,
                   "answers_with_the_lie": served_times,
                   "incidents": incidents},
        "watch_notifications": sum(1 for r in receiver.accepted if isinstance(r.body, dict)
                                   and r.body.get("kind") == "watch"),
        "timeline": timeline.events, "samples": sampler.samples,
    }
    result["claims"] = {
        "every entry once in the lake, every key in Kafka, every certificate scored (audit)":
            audit.returncode == 0 and caught_up and downstream_caught_up,
        "no bad entry: every log's lake hashes to its verified root": not root_mismatch and len(roots) == len(stored),
        "the tampered log has an incident": bool(served_at) and bool(incidents),
        f"lag under {LAG_LIMIT_S:.0f} s within {RECOVERY_LIMIT_S / 60:.0f} min of the last fault":
            recovered is not None and recovered - last_fault_end <= RECOVERY_LIMIT_S,
        f"no secret of the stack in {log_files:,} task logs and the components' output": not leaks and log_files > 0,
        "every planned fault applied": all(not str(a["detail"]).startswith(("NOT APPLIED", "no running"))
                                           for a in injector.applied) and len(injector.applied) == len(plan),
    }
    plot = Path(args.out or RESULTS / ("chaos_soak_full.json" if args.full else "chaos_soak.json"))
    result["plot"] = draw(lag, injector.applied, last_fault_end, growth_s, plot.with_suffix(".png"))
    return result


def wait_for(what: str, check, timeout: float, every: float = 2.0) -> None:
    if not wait_quietly(check, timeout, every):
        raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_quietly(check, timeout: float, every: float = 5.0) -> bool:
    """Poll `check` until true or `timeout`; an error (the API restarting) counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:  # a component restarting: poll again
            pass
        time.sleep(every)
    return False


def report(result: dict[str, Any], out: Path) -> bool:
    lag = result["lag"]
    runs = result["runs"]
    print(f"\nchaos soak ({result['mode']}, seed {result['seed']}): {result['logs']} logs ({result['tiled_logs']} "
          f"tiled), {result['entries_grown']:,} entries in {result['growth_minutes']:g} min "
          f"({result['grown_per_s']:,.0f}/s of {result['rate_per_s']:,.0f}/s asked)")
    print(f"  faults injected ({len(result['faults_applied'])}): {result['faults_by_kind']}")
    print(f"  component restarts: {result['component_restarts']}; exits "
          f"{[(e['component'], e['t_s'], e['event']) for e in result['component_exits']]}")
    print(f"  runs: {runs['by_state']}; {runs['failed']} failed, {runs['failed_then_recovered']} of them followed "
          f"by a successful run of the same DAG; failed by DAG {runs['failed_by_dag']}")
    print(f"  lag peak {lag['peak_s']} s at {lag['peak_at_s']} s; last fault ended at {result['last_fault_end_s']} s; "
          f"lag below {lag['limit_s']:.0f} s from {lag['recovered_at_s']} s on (recovery {lag['recovery_s']} s, "
          f"limit {lag['recovery_limit_s']:.0f} s)")
    tamper = result["tamper"]
    print(f"  tampered entry: log {tamper['log']} index {tamper['index']} first served at {tamper['served_s']} s, "
          f"in {tamper['answers_with_the_lie']} answer(s); "
          f"{len(tamper['incidents'])} incident(s) {[i.get('kind') for i in tamper['incidents']]}")
    print(f"  audit (exit {result['audit']['exit']}):")
    for line in result["audit"]["report"].splitlines()[-12:]:
        print(f"    {line}")
    if result["merkle_roots_mismatch"]:
        print(f"  Merkle roots that do not match: {result['merkle_roots_mismatch']}")
    print(f"  written: {out} and {result['plot']}")
    for claim, held in result["claims"].items():
        print(f"  {'HOLDS' if held else 'FAILS'}  {claim}")
    return all(result["claims"].values())


if __name__ == "__main__":
    main()
