"""Log server cost: can the local CT log server generate a firehose-shaped load cheaply?

Set-up, not measured: the local CT log server (`ctlib.testing.ctlog.LogServer`) in a child
process (spawn), as the soak benchmark runs it, hosting `ctlib.testing.profiles.
firehose_profile()`: 40 replay logs (16 tiled) growing 3,200 entries/s in all, skewed (3
at 500/s, 6 at 150/s, 31 sharing 800/s), RFC 6962 logs capping get-entries at 32, 192 or 256
entries, every request answered after 50-150 ms; each log starts with 256 published entries.

Measured for `--seconds` (default 60): the logs grow while a cheap reader in this process
reads every new entry: per RFC 6962 log, get-sth then get-entries of at most the log's cap,
several at once for the fast logs; per tiled log, the checkpoint then every new data tile
(partial tiles at the checkpoint's width), gzip accepted. Plain `requests`, a thread per log
plus a few per fast log; entries are counted, not decoded. Then growth stops and the reader
catches up, to check it got exactly what was grown.

Figures: entries grown per second against the rate asked (INVALID below 95% of it: the
server could not generate the load), the server process's CPU seconds per second of growth
(its share of one core, utime + stime from /proc/<pid>/stat), requests served, entries read.
Target: <= 0.25 of a core at 3,200 entries/s.

    .venv/bin/python bench/logserver_bench.py                  # 60 s at 3,200/s
    .venv/bin/python bench/logserver_bench.py --seconds 20 --rate 1000
    .venv/bin/python bench/logserver_bench.py --no-latency      # answers at once

Writes bench/results/logserver.json.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catchup_bench import RESULTS, cpu_seconds, stop_child  # noqa: E402

INITIAL = 256  # entries each log holds before growth (one full tile)
TARGET_CORE_SHARE = 0.25
VALID_SHARE = 0.95  # entries grown / asked below this: the run is INVALID
POLL_S = 1.0  # a reader asks for a new tree head this long after the previous one
CATCHUP_TIMEOUT_S = 60.0


# --------------------------------------------------------------------------- the log server


def _serve(conn, rate: float, logs: int, tiled: int, latency: bool) -> None:
    """Child process: the firehose profile behind one LogServer; grows on "grow", stops
    growing on "halt" (answering the published sizes and requests served at each), answers
    the sizes once growth has settled on "settle"."""
    from ctlib.testing.ctlog import LogServer
    from ctlib.testing.profiles import add_profile, firehose_profile

    began = time.monotonic()
    specs = firehose_profile(rate, logs, tiled)
    if not latency:
        specs = [replace(spec, latency=(0.0, 0.0)) for spec in specs]
    server = LogServer()
    hosted = add_profile(server, specs, initial_size=INITIAL, growing=False)
    server.start()
    described = [
        {"slug": log.slug, "url": server.url_of(log), "tiled": log.tiled, "cap": spec.cap, "rate": spec.rate,
         "operator": spec.operator}
        for log, spec in zip(hosted, specs)
    ]
    conn.send(("ready", {"logs": described, "startup_s": round(time.monotonic() - began, 2)}))

    def state() -> dict[str, Any]:
        return {"sizes": {log.slug: log.sth.tree_size for log in hosted},
                "requests": sum(log.counts().requests for log in hosted)}

    while True:
        command, _ = conn.recv()
        if command == "grow":
            for log, spec in zip(hosted, specs):
                log.rate = spec.rate
            conn.send(("state", state()))
        elif command == "halt":
            now = state()  # what was published while growing: the window's end
            for log in hosted:
                log.rate = 0.0
            conn.send(("state", now))
        elif command == "settle":
            time.sleep(2.5)  # a tick in progress publishes what it grew
            conn.send(("state", state()))
        elif command == "stop":
            server.stop()
            conn.send(("stopped", state()))
            return


class Server:
    """The log server child process."""

    def __init__(self, rate: float, logs: int, tiled: int, latency: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, rate, logs, tiled, latency), daemon=True)
        self.proc.start()
        if not self._conn.poll(300):
            raise SystemExit("the log server did not start in 5 minutes")
        self.info: dict[str, Any] = self._conn.recv()[1]

    def ask(self, command: str) -> dict[str, Any]:
        self._conn.send((command, None))
        return self._conn.recv()[1]

    def stop(self) -> None:
        stop_child(self.proc, self._conn, ("stop", None))


# --------------------------------------------------------------------------- the reader


@dataclass
class LogReader:
    """Reads one log from `next_index` on, as far as its published tree goes."""

    slug: str
    url: str
    tiled: bool
    cap: int | None
    rate: float
    next_index: int = 0
    entries: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    size: int = 0  # the last tree size seen
    _local: threading.local = field(default_factory=threading.local)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.headers["User-Agent"] = "ct-airflow logserver_bench"
        return s

    def get(self, path: str, **params: Any) -> requests.Response:
        response = self.session().get(self.url + path, params=params or None, timeout=30)
        with self._lock:
            self.requests += 1
        response.raise_for_status()
        return response

    def tree_size(self) -> int:
        if self.tiled:
            from ctlib.ct.sth import parse_checkpoint

            return parse_checkpoint(self.get("checkpoint").content).checkpoint.tree_size
        return int(self.get("ct/v1/get-sth").json()["tree_size"])

    def workers(self) -> int:
        """Requests in flight for this log: enough that latency (<= 150 ms) does not bound it."""
        per_request = self.cap or 256
        return max(1, min(8, math.ceil(self.rate * 0.3 / per_request) + 1))

    def fetch_range(self, start: int, end: int) -> int:
        """Entries [start, end) of an RFC 6962 log, in as many requests as its cap needs."""
        got = 0
        while start + got < end:
            body = self.get("ct/v1/get-entries", start=start + got, end=end - 1).json()
            n = len(body["entries"])
            if n == 0:
                raise RuntimeError(f"{self.slug}: get-entries [{start + got}, {end}) answered no entry")
            got += n
        return got

    def fetch_tile(self, index: int, width: int) -> None:
        from ctlib.ct.tiles import TileRef

        if not self.get(TileRef(0, index, width, data=True).path).content:
            raise RuntimeError(f"{self.slug}: data tile {index} width {width} is empty")

    def step(self, pool: ThreadPoolExecutor) -> None:
        """Read up to the current tree head."""
        size = self.size = self.tree_size()
        if size <= self.next_index:
            return
        if self.tiled:
            tiles = range(self.next_index // 256, (size + 255) // 256)
            jobs = [pool.submit(self.fetch_tile, tile, min(256, size - tile * 256)) for tile in tiles]
            for job in jobs:
                job.result()
            self.entries += size - self.next_index
        else:
            step = self.cap or 1000
            starts = range(self.next_index, size, step)
            jobs = [pool.submit(self.fetch_range, s, min(s + step, size)) for s in starts]
            self.entries += sum(job.result() for job in jobs)
        self.next_index = size

    def run(self, stop: threading.Event, until: dict[str, int]) -> None:
        """Poll and read until `stop` is set and the log's final size (in `until`) is read."""
        with ThreadPoolExecutor(self.workers(), thread_name_prefix=f"read-{self.slug[:20]}") as pool:
            while True:
                began = time.monotonic()
                try:
                    self.step(pool)
                except Exception as exc:  # noqa: BLE001 (a bench reports, never hides)
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                if stop.is_set() and self.slug in until and self.next_index >= until[self.slug]:
                    return
                if stop.is_set() and len(self.errors) > 20:
                    return
                time.sleep(max(0.0, POLL_S - (time.monotonic() - began)))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of growth (default 60)")
    parser.add_argument("--rate", type=float, default=3200.0, help="entries per second, all logs together")
    parser.add_argument("--logs", type=int, default=40)
    parser.add_argument("--tiled", type=int, default=16)
    parser.add_argument("--no-latency", action="store_true", help="answer at once (no 50-150 ms)")
    parser.add_argument("--out", type=Path, default=RESULTS / "logserver.json")
    args = parser.parse_args()
    if args.seconds <= 0 or args.rate <= 0 or args.logs < 1 or not 0 <= args.tiled <= args.logs:
        parser.error("need --seconds > 0, --rate > 0, --logs >= 1, 0 <= --tiled <= --logs")

    print(f"log server: {args.logs} replay logs ({args.tiled} tiled) growing {args.rate:,.0f} entries/s for "
          f"{args.seconds:g} s, read by a reader here", flush=True)
    server = Server(args.rate, args.logs, args.tiled, not args.no_latency)
    try:
        result = measure(args, server)
    finally:
        server.stop()
    report(result, args.out)


def measure(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    pid = server.proc.pid
    print(f"  server up (pid {pid}) in {server.info['startup_s']} s", flush=True)
    readers = [LogReader(log["slug"], log["url"], log["tiled"], log["cap"], log["rate"]) for log in server.info["logs"]]
    for reader in readers:
        reader.next_index = reader.size = INITIAL
    stop = threading.Event()
    until: dict[str, int] = {}
    threads = [threading.Thread(target=r.run, args=(stop, until), name=f"reader-{r.slug[:20]}", daemon=True)
               for r in readers]

    start = server.ask("grow")
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    for thread in threads:
        thread.start()
    deadline = t0 + args.seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(10.0, left))
        spent = (cpu_seconds(pid) or 0.0) - (cpu0 or 0.0)
        elapsed = time.monotonic() - t0
        print(f"    {elapsed:5.1f} s: server CPU {spent / elapsed:.3f} of a core, "
              f"{sum(r.entries for r in readers):,} entries read", flush=True)
    end = server.ask("halt")
    cpu1, t1 = cpu_seconds(pid), time.monotonic()
    seconds = t1 - t0
    cpu = (cpu1 or 0.0) - (cpu0 or 0.0)
    grown = sum(end["sizes"].values()) - sum(start["sizes"].values())
    rate = grown / seconds
    requests_served = end["requests"] - start["requests"]

    final_sizes = server.ask("settle")["sizes"]
    until.update(final_sizes)
    stop.set()
    caught = time.monotonic()
    for thread in threads:
        thread.join(max(0.1, CATCHUP_TIMEOUT_S - (time.monotonic() - caught)))
    final_grown = sum(final_sizes.values()) - sum(start["sizes"].values())
    read = sum(r.entries for r in readers)
    short = {r.slug: final_sizes[r.slug] - r.next_index for r in readers
             if r.next_index != final_sizes[r.slug]}
    errors = {r.slug: r.errors[:3] for r in readers if r.errors}
    by_kind = {}
    for kind, tiled in (("classic", False), ("tiled", True)):
        group = [r for r in readers if r.tiled == tiled]
        by_kind[kind] = {"logs": len(group), "entries_read": sum(r.entries for r in group),
                         "reader_requests": sum(r.requests for r in group)}
    return {
        "benchmark": "logserver",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "logs": len(readers), "tiled_logs": sum(r.tiled for r in readers),
        "latency": not args.no_latency,
        "startup_s": server.info["startup_s"],
        "growth_seconds": round(seconds, 1),
        "rate_asked_per_s": args.rate,
        "entries_grown": grown,
        "rate_grown_per_s": round(rate, 1),
        "valid": rate >= VALID_SHARE * args.rate,
        "server_cpu_s": round(cpu, 2),
        "server_core_share": round(cpu / seconds, 3),
        "server_cpu_ms_per_1000_entries": round(cpu / grown * 1e6, 1) if grown else None,
        "requests_served": requests_served,
        "requests_per_s": round(requests_served / seconds, 1),
        "entries_read": read,
        "entries_grown_until_halt_settled": final_grown,
        "read_everything": read == final_grown and not short,
        "logs_short": short,
        "reader_errors": errors,
        "by_kind": by_kind,
        "target_core_share": TARGET_CORE_SHARE,
        "meets_target": cpu / seconds <= TARGET_CORE_SHARE and rate >= VALID_SHARE * args.rate,
    }


def report(result: dict[str, Any], out: Path) -> None:
    validity = "" if result["valid"] else "  INVALID: below 95% of the rate asked"
    print(f"\nlog server ({result['logs']} logs, {result['tiled_logs']} tiled, "
          f"latency {'on' if result['latency'] else 'off'}, start-up {result['startup_s']} s):")
    print(f"  grown {result['rate_grown_per_s']:,.0f} entries/s of {result['rate_asked_per_s']:,.0f} asked "
          f"({result['entries_grown']:,} in {result['growth_seconds']} s){validity}")
    print(f"  server CPU {result['server_core_share']:.3f} of one core ({result['server_cpu_s']} s; "
          f"{result['server_cpu_ms_per_1000_entries']} ms per 1,000 entries); target <= {TARGET_CORE_SHARE}")
    print(f"  requests served {result['requests_served']:,} ({result['requests_per_s']}/s)")
    print(f"  reader: {result['entries_read']:,} entries read of {result['entries_grown_until_halt_settled']:,} "
          f"grown: {'everything' if result['read_everything'] else 'NOT everything'} "
          f"{result['logs_short'] or ''} {result['reader_errors'] or ''}")
    print(f"  target: {'met' if result['meets_target'] else 'NOT met'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
