"""Backfill under load: live freshness while an Airflow backfill of a day of a busy log runs.

The issue's requirement: a long backfill doesn't starve live ingest; it runs in a pool of its
own (`ct_backfill`, 2 slots: ctlib.airflow.pools routes every task of a backfill run there)
with bounded concurrency. This bench measures it on the stack of `make run`.

Set-up, not measured (the machinery of bench/soak_bench.py):
* the local CT log server in a child process, as remote logs would be:
  - the live load: the firehose's shape (`ctlib.testing.profiles.firehose_profile`: skewed
    rates, per-operator get-entries caps, 50-150 ms latency on every request, replayed
    certificates) at half its size by default: 20 logs, 8 tiled, 1,600 entries/s in all
    (3 logs at ~300/s, 6 at ~90/s, 11 at ~15/s). Half, because this is a 2-core machine: the
    whole firehose takes ~54% of it before any backfill (README, Capacity), a load it follows
    with a stable baseline but little room, while half of it leaves the room a backfill needs,
    so what phase B shows is the backfill's cost, not a saturated machine. Its baseline is
    stable: live p95 67-70 s in three runs (two of 1 minute, one of 4), at 0.25-0.28 of the
    machine. The whole firehose: `--logs 40 --tiled 16 --rate 3200`;
  - one *busy* log (RFC 6962, Cloudflare-like: cap 256, the same latency) with 24 hours of
    backdated history at 20 entries/s (1,728,000 entries, timestamps out of order by up to
    5 s; `LogServer.add_log(..., replay=True, history=(24, 20), history_disorder=5)`: under
    10 s once the replay pool exists, ~0.6 GiB) and live growth of its own, 20 entries/s;
  every log publishes 256 entries stamped now, and none grows yet;
* a tansu broker, a scratch PostgreSQL database and `airflow standalone` (LocalExecutor,
  parallelism 8; the pools ct_enrichment and ct_backfill created with 2 slots each) with the
  project's defaults (every ingest DAG runs every minute), except CT_START_AT=latest: live
  ingestion starts at each log's tip, so the busy log's day of history is left to the
  backfill, as in `make demo`. Every `ct_ingest__*` DAG unpaused; a wait until each has
  committed its first run.

Measured, while every log grows at its rate:
0. warm-up, 1 minute, not counted;
A. baseline: live ingestion only, 4 minutes (10 with --full);
   then 1 minute not counted, so that the entries logged at the end of A are ingested before
   the backfill starts;
B. the same live load while an Airflow backfill of the busy log runs: created through the REST
   API (POST /api/v2/backfills, as the Backfills tab or `airflow backfill create` does) over
   the busy log's whole day of history (one run per minute of it: ~1,440 runs), with
   max_active_runs 4 (--max-active-runs), an operator's choice; the pool's 2 slots bound how
   many of their tasks run at once anyway. 4 minutes (10 with --full).
Then growth stops, the bench waits until every watermark reaches its log's size (the backfill
still running), cancels the backfill, waits for its runs in flight and audits.

Figures, per phase: live freshness lag as the soak measures it (log timestamp of every entry
logged in the phase to the modification time of the Parquet file holding it) at p50, p95, p99
and max, over all live logs and for the busy log alone, and the ratio B/A of the p95; the
live runs' durations and start delays (start minus run_after: waiting for the scheduler and
an executor slot); CPU of the stack (as the soak: the standalone session with reaped task
processes, and the broker) as a share of the machine, by component; the log server's share
of a core (the world's, not ours). The backfill's progress during B, from its window markers
(lake/.backfills/, written when a window is verified and stored), from the moment its
creation returned (making ~1,440 runs takes the API server a while; that time is part of B):
windows done per minute, entries stored per second, history covered per wall-clock minute,
so an estimate of the time the whole day takes (creation included); backfill run durations;
the most backfill tasks seen running at once in the pool (sampled every 10 s) and the pool
the tasks of the first and last backfill runs ran in. Failed runs, live and
backfill (the queued runs that cancelling fails are not counted); the audit of lake and Kafka
(`ctlib.ops.audit`, which also counts duplicates below where ingestion began). Target: live
p95 in phase B <= 90 s (the soak's target).

The run is INVALID, and the bench exits non-zero after writing its figures, when the logs
grew less than 95% of the rate asked in a phase, when a run failed, when the backfill stored
no window in phase B, when a backfill task ran outside the pool, or when the audit finds a
gap or a duplicate.

    .venv/bin/python bench/backfill_bench.py            # short: 1 + 4 + 1 + 4 minutes, ~14 minutes in all
    .venv/bin/python bench/backfill_bench.py --full     # 1 + 10 + 1 + 10 minutes, ~26 minutes in all
    .venv/bin/python bench/backfill_bench.py --minutes 1 --warmup-minutes 0.5   # a smoke run

Writes bench/results/backfill_bench.json. Run it on a quiet machine: it uses both cores, and
anything else running adds to the lag.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catchup_bench import RESULTS, _utc, standalone, stop_child
from ctlib.testing.airflow_api import AirflowApi
from soak_bench import (
    INITIAL,
    REPLAY_POOL,
    TARGET_P95_S,
    VALID_SHARE,
    Stack,
    cpu_between,
    dag_runs,
    lag_figures,
    serve_commands,
    states,
    summary,
    wait_for,
    watermarks,
)

BUSY_NAME = "Local Cloudflare 'Busy2026' log"
BUSY_OPERATOR = "Cloudflare"  # its per-operator figures (include/log_limits.yaml): cap 256, 50 requests/s
BUSY_CAP = 256
HISTORY_DISORDER_S = 5.0  # below CT_BACKFILL_DISORDER's default 10 s
GUARD_S = 60.0  # between A and B, not counted: A's last entries are ingested before the backfill starts
POOL_SAMPLE_S = 10.0
PRINT_EVERY_S = 30.0
MAX_ACTIVE_RUNS = 4
BACKFILL_POOL = "ct_backfill"  # the default of CT_BACKFILL_POOL; the bench leaves it unset
TOPIC = "ct-certs-backfill-bench"

# --------------------------------------------------------------------------- the log server


def _serve_logs(conn, logs: int, tiled: int, rate: float, busy_rate: float, history: tuple[float, float],
                log_list: str, pool: int) -> None:
    """Child process: the live profile's logs and the busy log behind one LogServer; grows them
    when told to. Reports its own CPU time with every answer."""
    from ctlib.testing.ctlog import Faults, LogServer
    from ctlib.testing.profiles import LATENCY, add_profile, firehose_profile

    began = time.monotonic()
    server = LogServer()
    specs = firehose_profile(total_rate=rate, logs=logs, tiled=tiled)
    add_profile(server, specs, initial_size=INITIAL, growing=False, pool_size=pool)
    built_live = time.monotonic() - began
    before_ms = time.time() * 1000
    busy = server.add_log(BUSY_NAME, operator=BUSY_OPERATOR, replay=True, pool_size=pool, initial_size=INITIAL,
                          faults=Faults(cap=BUSY_CAP, latency=LATENCY), history=history,
                          history_disorder=HISTORY_DISORDER_S)
    after_ms = time.time() * 1000
    rates = [spec.rate for spec in specs] + [busy_rate]
    server.write_log_list(log_list)
    server.start()
    disorder_ms = HISTORY_DISORDER_S * 1000
    conn.send(("ready", {
        "tiled": {log.slug: log.tiled for log in server.logs},
        "sizes": {log.slug: log.sth.tree_size for log in server.logs},
        "busy": busy.slug, "history_entries": busy.sth.tree_size - INITIAL,
        # Every history timestamp lies in [start, end] (add_log ends the window `disorder` before its now).
        "history_start_ms": int(before_ms - disorder_ms - history[0] * 3_600_000 - disorder_ms),
        "history_end_ms": int(after_ms),
        "build_live_s": round(built_live, 1), "build_busy_s": round((after_ms - before_ms) / 1000, 1),
    }))
    serve_commands(conn, server, rates)


class RemoteLogs:
    def __init__(self, args: argparse.Namespace, log_list: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        history = (args.history_hours, args.history_rate)
        self._proc = ctx.Process(target=_serve_logs, args=(child, args.logs, args.tiled, args.rate, args.busy_rate,
                                                           history, str(log_list), REPLAY_POOL), daemon=True)
        self._proc.start()
        if not self._conn.poll(600):
            raise SystemExit("the log server did not start in 10 minutes")
        ready = self._conn.recv()[1]
        self.tiled: dict[str, bool] = ready["tiled"]
        self.initial: dict[str, int] = ready["sizes"]
        self.busy: str = ready["busy"]
        self.info = {k: v for k, v in ready.items() if k not in ("tiled", "sizes")}

    def grow(self, on: bool) -> tuple[dict[str, int], float]:
        """Start (or stop) every log's growth; returns the published sizes and the log server's CPU seconds."""
        self._conn.send(("grow", on))
        _, sizes, cpu = self._conn.recv()
        return sizes, cpu

    def sizes(self) -> tuple[dict[str, int], float]:
        self._conn.send(("sizes", None))
        _, sizes, cpu = self._conn.recv()
        return sizes, cpu

    def stop(self) -> int:
        return stop_child(self._proc, self._conn, ("stop", None)) or 0


# --------------------------------------------------------------------------- Airflow


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def markers(lake: Path, slug: str) -> list[dict[str, Any]]:
    """The backfill's window markers (ctlib.lake.layout.backfill_marker): one per window
    verified and stored, with its entries and the time it was written (mtime)."""
    found = []
    for path in (lake / ".backfills" / f"log={slug}").glob("w*.json"):
        try:
            body = json.loads(path.read_text())
            start_ms, end_ms = (int(x) for x in path.stem[1:].split("-"))
            found.append({"mtime": path.stat().st_mtime, "window_s": (end_ms - start_ms) / 1000,
                          "entries": int(body.get("certs", 0)) + int(body.get("errors", 0))})
        except (OSError, ValueError):
            continue  # being written
    return found


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="10 minutes per phase (default 4)")
    parser.add_argument("--minutes", type=float, default=None, help="minutes of each phase, A and B")
    parser.add_argument("--warmup-minutes", type=float, default=1.0, help="growth before phase A, not counted")
    parser.add_argument("--logs", type=int, default=20, help="live logs besides the busy one (20)")
    parser.add_argument("--tiled", type=int, default=8, help="how many of the live logs are tiled (8)")
    parser.add_argument("--rate", type=float, default=1600.0,
                        help="entries per second of the live logs together, firehose-shaped (1,600)")
    parser.add_argument("--busy-rate", type=float, default=20.0, help="the busy log's live growth, entries/s (20)")
    parser.add_argument("--history-hours", type=float, default=24.0, help="the busy log's history (24)")
    parser.add_argument("--history-rate", type=float, default=20.0, help="entries/s of that history (20)")
    parser.add_argument("--max-active-runs", type=int, default=MAX_ACTIVE_RUNS,
                        help=f"the backfill's max_active_runs ({MAX_ACTIVE_RUNS})")
    parser.add_argument("--catchup-timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (lake, logs)")
    parser.add_argument("--out", type=Path, default=RESULTS / "backfill_bench.json")
    args = parser.parse_args()
    minutes = args.minutes or (10.0 if args.full else 4.0)
    if not 0 <= args.tiled <= args.logs or args.logs < 1 or args.rate <= 0 or args.busy_rate < 0:
        parser.error("need --logs >= 1, 0 <= --tiled <= --logs, --rate > 0, --busy-rate >= 0")
    if args.history_hours <= 0 or args.history_rate <= 0 or args.max_active_runs < 1 or args.warmup_minutes < 0:
        parser.error("need --history-hours > 0, --history-rate > 0, --max-active-runs >= 1, --warmup-minutes >= 0")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ct-bench-backfill-"))
    began = time.monotonic()
    history = round(args.history_hours * 3600 * args.history_rate)
    print(f"backfill bench: {args.logs} live logs ({args.tiled} tiled) growing {args.rate:,.0f} entries/s, and a "
          f"busy log growing {args.busy_rate:g}/s with {args.history_hours:g} h of history ({history:,} entries); "
          f"phases of {minutes:g} min without and with a backfill of that history; set-up, not measured:", flush=True)
    remote = RemoteLogs(args, work / "log_list.json")
    print(f"  log server: live logs built in {remote.info['build_live_s']} s, the busy log's "
          f"{remote.info['history_entries']:,} history entries in {remote.info['build_busy_s']} s", flush=True)
    try:
        result = run(args, remote, work, minutes)
    finally:
        requests = remote.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["log_server_requests"] = requests
    result["wall_minutes"] = round((time.monotonic() - began) / 60, 1)
    report(result, args.out)


def run(args: argparse.Namespace, remote: RemoteLogs, work: Path, minutes: float) -> dict[str, Any]:
    from ctlib.localsvc.broker import LocalBroker

    lake = work / "lake"
    broker = LocalBroker(topics=[TOPIC, "ct-alerts", "ct-enriched"], log_path=work / "tansu.log").start()
    try:
        began = time.monotonic()
        # Live ingestion starts at each log's tip: the day of history is the backfill's.
        with standalone(work, "backfill", lake, broker, start_at="latest",
                        CT_KAFKA_TOPIC=TOPIC) as (orch, api):
            return measure(args, api, orch, broker, remote, lake, minutes, began)
    finally:
        broker.stop()


class Phase:
    """One stretch of the growth: its times, the logs' sizes, the stack's and log server's CPU."""

    def __init__(self, name: str, remote: RemoteLogs, stack: Stack) -> None:
        self.name = name
        self.sizes_from, self.server_cpu_from = remote.sizes()
        self.cpu_from = stack.cpu()
        self.since = time.time()
        self.until = self.since
        self.sizes_to, self.server_cpu_to, self.cpu_to = self.sizes_from, self.server_cpu_from, self.cpu_from

    def end(self, remote: RemoteLogs, stack: Stack, stop_growth: bool = False) -> None:
        self.until = time.time()
        self.cpu_to = stack.cpu()
        self.sizes_to, self.server_cpu_to = remote.grow(False) if stop_growth else remote.sizes()

    @property
    def seconds(self) -> float:
        return self.until - self.since

    def grown(self) -> int:
        return sum(self.sizes_to.values()) - sum(self.sizes_from.values())

    def figures(self, asked_per_s: float) -> dict[str, Any]:
        cpu = cpu_between(self.cpu_from, self.cpu_to)
        cores = os.cpu_count() or 1
        grown_per_s = self.grown() / self.seconds
        return {
            "from": _iso(self.since), "seconds": round(self.seconds, 1),
            "entries_grown": self.grown(), "grown_per_s": round(grown_per_s, 1),
            "valid": grown_per_s >= VALID_SHARE * asked_per_s,
            "cpu_s_by_component": cpu,
            "cpu_share_of_machine": round(cpu["total"] / self.seconds / cores, 3),
            "log_server_share_of_core": round((self.server_cpu_to - self.server_cpu_from) / self.seconds, 3),
        }


def sleep_through(phase: str, seconds: float, api: AirflowApi, lake: Path, busy: str, t0: float, base: int,
                  sample: Callable[[], None] | None = None) -> None:
    """Wait `seconds`, printing progress (entries committed live since `base`, the watermarks'
    sum when growth began) every PRINT_EVERY_S and calling `sample` every POOL_SAMPLE_S."""
    deadline = time.monotonic() + seconds
    next_print = time.monotonic() + PRINT_EVERY_S
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, POOL_SAMPLE_S if sample else PRINT_EVERY_S))
        if sample:
            sample()
        if time.monotonic() >= next_print or time.monotonic() >= deadline:
            next_print += PRINT_EVERY_S
            done = sum(watermarks(api).values()) - base
            stored = markers(lake, busy)
            print(f"    {(time.time() - t0) / 60:4.1f} min ({phase}): {done:,} entries committed live; backfill: "
                  f"{len(stored):,} windows, {sum(m['entries'] for m in stored):,} entries stored", flush=True)


def measure(args, api: AirflowApi, orch, broker, remote: RemoteLogs, lake: Path, minutes: float,
            began: float) -> dict[str, Any]:
    from ctlib.ingest.state import MappingStateStore
    from ctlib.ops.audit import kafka_config, load_states, run_audit

    slugs = sorted(remote.tiled)
    busy = remote.busy
    busy_dag = f"ct_ingest__{busy}"
    dag_ids = [f"ct_ingest__{slug}" for slug in slugs]
    wait_for("every DAG parsed", lambda: set(dag_ids) <= {d["dag_id"] for d in api.listed("dags", "dags")}, 600)
    for dag_id in dag_ids:
        api.patch(f"dags/{dag_id}", {"is_paused": False})
    pool = api.get(f"pools/{BACKFILL_POOL}")
    if not pool:
        raise SystemExit(f"no pool {BACKFILL_POOL}: ctlib.localsvc.run.ensure_pool should have made it")
    print(f"  airflow standalone up, {len(dag_ids)} DAGs parsed and unpaused, pool {BACKFILL_POOL} has "
          f"{pool['slots']} slots ({time.monotonic() - began:.0f} s)", flush=True)
    waited = wait_for("every log's first commit", lambda: all(
        watermarks(api).get(s, -1) >= n for s, n in remote.initial.items()), 600)
    base = watermarks(api)
    first_index = base[busy]
    print(f"  every log committed its first run ({waited:.0f} s later; the busy log's live ingestion starts at "
          f"{first_index:,}); growth begins", flush=True)

    asked = args.rate + args.busy_rate
    stack = Stack(orch.airflow.pid, broker.pid)
    stack.start_sampling()
    t0 = time.time()
    remote.grow(True)
    if args.warmup_minutes:
        sleep_through("warm-up", args.warmup_minutes * 60, api, lake, busy, t0, sum(base.values()))
    a = Phase("A", remote, stack)
    sleep_through("A: live only", minutes * 60, api, lake, busy, t0, sum(base.values()))
    a.end(remote, stack)
    sleep_through("between A and B, not counted", GUARD_S, api, lake, busy, t0, sum(base.values()))

    history_from = remote.info["history_start_ms"] / 1000 - 60  # the run whose window holds the first entry
    history_to = math.ceil(remote.info["history_end_ms"] / 60_000) * 60.0
    b = Phase("B", remote, stack)
    created = api.send("POST", "backfills", timeout=300, body={
        "dag_id": busy_dag, "from_date": _iso(history_from), "to_date": _iso(history_to),
        "max_active_runs": args.max_active_runs, "run_backwards": False, "reprocess_behavior": "none",
    })
    backfill_id = created["id"]
    created_at = time.time()
    windows = api.total(f"dags/{busy_dag}/dagRuns", run_type="backfill")
    print(f"  backfill {backfill_id} of {busy_dag} created: {windows:,} runs, {_iso(history_from)} to "
          f"{_iso(history_to)}, max_active_runs {args.max_active_runs} (in {created_at - b.since:.1f} s)", flush=True)
    pool_seen: Counter[str] = Counter()
    peak = {"running": 0, "queued": 0, "samples": 0}

    def sample_pool() -> None:
        p = api.get(f"pools/{BACKFILL_POOL}")
        peak["samples"] += 1
        peak["running"] = max(peak["running"], int(p.get("running_slots", 0)))
        peak["queued"] = max(peak["queued"], int(p.get("queued_slots", 0)) + int(p.get("scheduled_slots", 0)))

    sleep_through("B: live + backfill", minutes * 60, api, lake, busy, t0, sum(base.values()), sample_pool)
    done_in_b = [m for m in markers(lake, busy) if b.since <= m["mtime"] <= time.time()]
    b.end(remote, stack, stop_growth=True)
    print("  growth stopped; waiting for every log to catch up (the backfill still running)", flush=True)
    catchup_s = wait_for("catch-up", lambda: all(watermarks(api).get(s, 0) >= n for s, n in b.sizes_to.items()),
                         args.catchup_timeout)

    def backfill_runs() -> list[dict[str, Any]]:
        return api.listed(f"dags/{busy_dag}/dagRuns", "dag_runs", run_type="backfill", order_by="start_date")

    failed_before_cancel = [r["dag_run_id"] for r in backfill_runs() if r["state"] == "failed"]
    api.send("PUT", f"backfills/{backfill_id}/cancel")
    wait_for("the backfill's runs in flight", lambda: not api.total(
        f"dags/{busy_dag}/dagRuns", run_type="backfill", state="running"), 600)
    print(f"  caught up {catchup_s:.0f} s after growth stopped; backfill cancelled, its runs in flight done",
          flush=True)
    stack.stop_sampling()

    runs = backfill_runs()
    succeeded = [r for r in runs if r["state"] == "success"]
    backfill_failed = sorted(set(failed_before_cancel) | {r["dag_run_id"] for r in runs
                                                         if r["state"] == "failed" and r.get("start_date")})
    started = [r for r in runs if r.get("start_date")]
    for r in started[:3] + started[-3:]:
        for ti in api.listed(f"dags/{busy_dag}/dagRuns/{r['dag_run_id']}/taskInstances", "task_instances"):
            if ti["state"] not in ("skipped", None):
                pool_seen[ti["pool"]] += 1
    live_runs = [r for r in dag_runs(api) if r["dag_id"].startswith("ct_ingest__") and r["run_type"] != "backfill"]
    live_failed = [r["dag_run_id"] + " " + r["dag_id"] for r in live_runs if r["state"] == "failed"]
    stored_all = markers(lake, busy)

    print("  measuring lag and auditing lake and Kafka...", flush=True)
    lag = {p.name: lag_figures(lake, p.since, p.until, remote.tiled, None) for p in (a, b)}
    busy_lag = {p.name: lag_figures(lake, p.since, p.until, {busy: False}, None)["all"] for p in (a, b)}
    stored = MappingStateStore(states(api))
    audits = run_audit(lake=str(lake), states=load_states(stored, stored.slugs()),
                       kafka=kafka_config(broker.bootstrap_servers, None), topic=TOPIC)
    gaps = [f for x in audits for f in x.findings()]
    final = watermarks(api)
    short = {s: n - final.get(s, 0) for s, n in b.sizes_to.items() if final.get(s, 0) < n}

    def live_in(p: Phase) -> list[dict[str, Any]]:
        return [r for r in live_runs if r.get("start_date") and p.since <= _utc(r["start_date"]) <= p.until]

    def run_figures(p: Phase) -> dict[str, Any]:
        mine = live_in(p)
        return {"runs": len(mine),
                "run_seconds": summary([_utc(r["end_date"]) - _utc(r["start_date"]) for r in mine if r.get("end_date")]),
                "start_delay_s": summary([_utc(r["start_date"]) - _utc(r["run_after"]) for r in mine
                                          if r.get("run_after")])}

    # Rates from the moment the backfill existed (its creation, ~1,400 runs, is a one-off cost).
    working_s = b.until - created_at
    covered_s = sum(m["window_s"] for m in done_in_b)
    speed = covered_s / working_s  # seconds of history stored per second of wall time
    entries_b = sum(m["entries"] for m in done_in_b)
    per_minute = len(done_in_b) / working_s * 60
    phases = {}
    for p in (a, b):
        phases[p.name] = {**p.figures(asked), "lag_s": lag[p.name], "busy_log_lag_s": busy_lag[p.name],
                          "live_runs": run_figures(p)}
    ratio = None
    if lag["A"]["all"]["p95_s"] and lag["B"]["all"]["p95_s"] is not None:
        ratio = round(lag["B"]["all"]["p95_s"] / lag["A"]["all"]["p95_s"], 2)
    backfill = {
        "id": backfill_id, "dag_id": busy_dag, "from_date": _iso(history_from), "to_date": _iso(history_to),
        "max_active_runs": args.max_active_runs, "pool": BACKFILL_POOL, "pool_slots": pool["slots"],
        "runs_created": windows, "history_entries": remote.info["history_entries"],
        "live_first_index": first_index,
        "create_s": round(created_at - b.since, 1), "working_s_in_b": round(working_s, 1),
        "windows_done_in_b": len(done_in_b), "windows_per_minute": round(per_minute, 1),
        "entries_stored_in_b": entries_b, "entries_per_s": round(entries_b / working_s, 1),
        "history_minutes_per_wall_minute": round(speed, 2),
        "estimated_minutes_for_whole_history":
            round((created_at - b.since + windows / per_minute * 60) / 60, 1) if per_minute else None,
        "windows_done_by_cancel": len(stored_all),
        "entries_stored_by_cancel": sum(m["entries"] for m in stored_all),
        "runs_succeeded": len(succeeded),
        "run_seconds": summary([_utc(r["end_date"]) - _utc(r["start_date"]) for r in succeeded if r.get("end_date")]),
        "pool_running_peak": peak["running"], "pool_waiting_peak": peak["queued"], "pool_samples": peak["samples"],
        "task_pools_seen": dict(pool_seen),
        "failed_runs": backfill_failed,
    }
    problems = []
    for p in (a, b):
        if not phases[p.name]["valid"]:
            problems.append(f"phase {p.name}: the logs grew {phases[p.name]['grown_per_s']:,.0f} entries/s, below "
                            f"{VALID_SHARE:.0%} of the {asked:,.0f}/s asked")
    if live_failed:
        problems.append(f"{len(live_failed)} live runs failed: {live_failed[:5]}")
    if backfill_failed:
        problems.append(f"{len(backfill_failed)} backfill runs failed: {backfill_failed[:5]}")
    if not done_in_b:
        problems.append("the backfill stored no window in phase B")
    if set(pool_seen) - {BACKFILL_POOL} or not pool_seen:
        problems.append(f"backfill tasks ran in the pools {dict(pool_seen)}, not only {BACKFILL_POOL}")
    if peak["running"] > pool["slots"]:
        problems.append(f"{peak['running']} backfill tasks ran at once in a pool of {pool['slots']} slots")
    if gaps or not all(x.ok for x in audits) or short:
        problems.append(f"the audit is not clean: {gaps[:5]} {short}")
    return {
        "benchmark": "backfill",
        "mode": "full" if args.full else "short",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "live": {"logs": args.logs, "tiled_logs": args.tiled, "rate_per_s": args.rate, "busy_log": busy,
                 "busy_rate_per_s": args.busy_rate, "profile": "firehose-shaped (ctlib.testing.profiles)"},
        "history": {"hours": args.history_hours, "rate_per_s": args.history_rate,
                    "disorder_s": HISTORY_DISORDER_S, "entries": remote.info["history_entries"],
                    "build_s": remote.info["build_busy_s"]},
        "phase_minutes": minutes, "warmup_minutes": args.warmup_minutes, "guard_s": GUARD_S,
        "phases": phases,
        "live_p95_ratio_b_over_a": ratio,
        "backfill": backfill,
        "catchup_after_growth_s": round(catchup_s, 1),
        "peak_pss_mib": round(stack.peak_pss_mib),
        "failed_live_runs": live_failed,
        "audit": {"clean": not gaps and all(x.ok for x in audits) and not short, "findings": gaps,
                  "logs_short_of_size": short},
        "target_p95_s": TARGET_P95_S,
        "problems": problems,
        "valid": not problems,
        "meets_target": not problems and (lag["B"]["all"]["p95_s"] or 1e9) <= TARGET_P95_S,
    }


def report(result: dict[str, Any], out: Path) -> None:
    a, b = result["phases"]["A"], result["phases"]["B"]
    bf = result["backfill"]
    live = result["live"]

    def ratio(x: float | None, y: float | None) -> str:
        return f"{y / x:.2f}" if x and y is not None else "-"

    rows = [
        ("live lag p50 (s)", a["lag_s"]["all"]["p50_s"], b["lag_s"]["all"]["p50_s"]),
        ("live lag p95 (s)", a["lag_s"]["all"]["p95_s"], b["lag_s"]["all"]["p95_s"]),
        ("live lag max (s)", a["lag_s"]["all"]["max_s"], b["lag_s"]["all"]["max_s"]),
        ("busy log lag p95 (s)", a["busy_log_lag_s"]["p95_s"], b["busy_log_lag_s"]["p95_s"]),
        ("live run start delay p95 (s)", a["live_runs"]["start_delay_s"]["p95"], b["live_runs"]["start_delay_s"]["p95"]),
        ("live run seconds p95", a["live_runs"]["run_seconds"]["p95"], b["live_runs"]["run_seconds"]["p95"]),
        ("CPU, share of the machine", a["cpu_share_of_machine"], b["cpu_share_of_machine"]),
        ("log server, share of a core", a["log_server_share_of_core"], b["log_server_share_of_core"]),
    ]
    print(f"\nbackfill bench ({result['mode']}): {live['logs']} live logs ({live['tiled_logs']} tiled) at "
          f"{live['rate_per_s']:,.0f} entries/s + the busy log at {live['busy_rate_per_s']:g}/s; phases of "
          f"{result['phase_minutes']:g} min; {result['wall_minutes']} min in all")
    print(f"  grown: A {a['grown_per_s']:,.0f}/s, B {b['grown_per_s']:,.0f}/s "
          f"({'valid' if a['valid'] and b['valid'] else 'INVALID: below 95% of the rate asked'}); "
          f"entries measured: A {a['lag_s']['all']['entries']:,}, B {b['lag_s']['all']['entries']:,}")
    print(f"  {'':<30} {'A: live only':>14} {'B: + backfill':>14} {'B/A':>6}")
    for name, x, y in rows:
        print(f"  {name:<30} {x if x is not None else '-':>14} {y if y is not None else '-':>14} {ratio(x, y):>6}")
    print(f"  CPU by component, A: {a['cpu_s_by_component']}\n                   B: {b['cpu_s_by_component']}")
    est = bf["estimated_minutes_for_whole_history"]
    est_text = f"~{est:,.0f} min ({est / 60:.1f} h)" if est else "-"
    print(f"  backfill of {bf['runs_created']:,} one-minute windows ({bf['history_entries']:,} entries), "
          f"max_active_runs {bf['max_active_runs']}, pool {bf['pool']} of {bf['pool_slots']} slots: created in "
          f"{bf['create_s']} s, then in {bf['working_s_in_b']:.0f} s of B {bf['windows_done_in_b']} windows "
          f"({bf['windows_per_minute']}/min), {bf['entries_stored_in_b']:,} entries "
          f"({bf['entries_per_s']:,}/s), {bf['history_minutes_per_wall_minute']} min of history per minute; "
          f"the whole history would take {est_text}")
    print(f"  backfill runs: {bf['runs_succeeded']} succeeded (seconds {bf['run_seconds']}), "
          f"{len(bf['failed_runs'])} failed; most tasks running in the pool at once {bf['pool_running_peak']} "
          f"(waiting {bf['pool_waiting_peak']}; {bf['pool_samples']} samples); pools of its tasks {bf['task_pools_seen']}")
    print(f"  caught up {result['catchup_after_growth_s']} s after growth stopped; peak memory (PSS) "
          f"{result['peak_pss_mib']:,} MiB; failed live runs {len(result['failed_live_runs'])}; audit clean: "
          f"{result['audit']['clean']} {result['audit']['findings'][:5]}")
    print(f"  target: live p95 <= {result['target_p95_s']:.0f} s while the backfill runs, a valid run: "
          f"{'met' if result['meets_target'] else 'NOT met'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if result["problems"]:
        raise SystemExit("INVALID RUN: " + "; ".join(result["problems"]))


if __name__ == "__main__":
    main()
