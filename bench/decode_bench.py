"""Decode throughput: entries per second on one core, ctlib.decode.decode_entries side by side
with the construct + pyOpenSSL baseline (bench/faust_baseline.py) over the same fixed corpus
of realistic entries from the local CT log's certificate factory (bench/corpus.py).

ctlib is timed as the fetch task runs it: windows of 1,000 entries (one get-entries window),
one ChainCache for the whole run, the certs/errors Arrow tables built per window and
concatenated at the end. The baseline parses the same bytes into one dict per entry. Both
start from the base64-decoded bytes of get-entries; CPU time of this process
(time.process_time), pinned to one core; ctlib best of --repeats, the baseline best of
--baseline-repeats.

    .venv/bin/python bench/decode_bench.py            # short: 50,000 entries
    .venv/bin/python bench/decode_bench.py --full     # 200,000 entries
    .venv/bin/python bench/decode_bench.py --entries N --profile 20000   # + cProfile of ctlib

Writes bench/results/decode.json. Targets: >= 15,000 entries/s on one core, >= 5x the baseline.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
import faust_baseline  # noqa: E402
from ctlib.ct.types import RawEntry  # noqa: E402
from ctlib.decode.entries import ChainCache, LogRef, decode_entries  # noqa: E402

BATCH = 1000  # entries per decode call, as one get-entries window
SHORT, FULL = 50_000, 200_000
TARGET_RATE, TARGET_RATIO = 15_000, 5.0
RESULTS = Path(__file__).resolve().parent / "results"


def run_ctlib(entries: list[RawEntry]) -> tuple[float, int, int]:
    """(CPU seconds, certs rows, errors rows) for decoding every entry as the fetch task does."""
    ref, cache, now = LogRef("YmVuY2g=", "bench"), ChainCache(), datetime.now(UTC)
    began = time.process_time()
    certs, errors = [], []
    for offset in range(0, len(entries), BATCH):
        batch = decode_entries(ref, entries[offset:offset + BATCH], now, chain_cache=cache)
        certs.append(batch.certs)
        errors.append(batch.errors)
    certs_table, errors_table = pa.concat_tables(certs), pa.concat_tables(errors)
    return time.process_time() - began, certs_table.num_rows, errors_table.num_rows


def run_baseline(entries: list[RawEntry]) -> tuple[float, int]:
    began = time.process_time()
    _, failed = faust_baseline.parse_entries(entries)
    return time.process_time() - began, failed


def cross_check(entries: list[RawEntry]) -> int:
    """Both decoders see the same DNS names (SAN) in every entry of the sample; returns the
    number of entries compared. Raises AssertionError on a difference."""
    batch = decode_entries(LogRef("YmVuY2g=", "bench"), entries, datetime.now(UTC))
    assert batch.errors.num_rows == 0, batch.errors.to_pylist()[:1]
    ctlib_names = batch.certs["dns_names"].to_pylist()
    for entry, names in zip(entries, ctlib_names, strict=True):
        parsed = faust_baseline.parse_entry(entry.leaf_input, entry.extra_data)
        san = parsed["leaf_cert"]["extensions"].get("subjectAltName", "")
        theirs = sorted(n.removeprefix("DNS:") for n in san.split(", ") if n.startswith("DNS:"))
        assert sorted(names or []) == theirs, (entry.index, names, theirs)
    return len(entries)


def profile_ctlib(entries: list[RawEntry], top: int = 15) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    run_ctlib(entries)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help=f"{FULL:,} entries (default {SHORT:,})")
    parser.add_argument("--entries", type=int, default=None, help="corpus size (overrides --full)")
    parser.add_argument("--seed", type=int, default=corpus.DEFAULT_SEED)
    parser.add_argument("--repeats", type=int, default=3, help="ctlib runs; the best counts")
    parser.add_argument("--baseline-repeats", type=int, default=1, help="baseline runs; the best counts")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print a cProfile (top 15 cumulative) of ctlib over N entries")
    parser.add_argument("--out", type=Path, default=RESULTS / "decode.json")
    args = parser.parse_args()
    n = args.entries or (FULL if args.full else SHORT)

    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # one core: the figure is per core
    entries = corpus.load(n, args.seed)
    shape = corpus.describe(entries)
    checked = cross_check(entries[:1000])

    ctlib_runs = []
    for i in range(args.repeats):
        seconds, certs, errors = run_ctlib(entries)
        if certs + errors != n or errors:
            raise SystemExit(f"ctlib decoded {certs} certs and {errors} errors of {n} entries")
        ctlib_runs.append(n / seconds)
        print(f"ctlib    run {i + 1}: {n / seconds:10,.0f} entries/s ({seconds:.2f} s CPU)", flush=True)
    baseline_runs = []
    for i in range(args.baseline_repeats):
        seconds, failed = run_baseline(entries)
        if failed:
            raise SystemExit(f"the baseline failed on {failed} of {n} entries")
        baseline_runs.append(n / seconds)
        print(f"baseline run {i + 1}: {n / seconds:10,.0f} entries/s ({seconds:.2f} s CPU)", flush=True)

    ctlib_rate, baseline_rate = max(ctlib_runs), max(baseline_runs)
    ratio = ctlib_rate / baseline_rate
    figures = {
        "benchmark": "decode",
        "mode": "full" if n >= FULL else "short",
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_used": 1,
                    "python": platform.python_version(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2)},
        "corpus": {**shape, "seed": args.seed},
        "window": BATCH,
        "cross_checked_entries": checked,
        "ctlib_entries_per_s": round(ctlib_rate),
        "ctlib_runs_entries_per_s": [round(r) for r in ctlib_runs],
        "ctlib_us_per_entry": round(1e6 / ctlib_rate, 1),
        "baseline_entries_per_s": round(baseline_rate),
        "baseline_runs_entries_per_s": [round(r) for r in baseline_runs],
        "baseline_us_per_entry": round(1e6 / baseline_rate, 1),
        "ratio": round(ratio, 2),
        "target_entries_per_s": TARGET_RATE,
        "target_ratio": TARGET_RATIO,
        "meets_rate_target": ctlib_rate >= TARGET_RATE,
        "meets_ratio_target": ratio >= TARGET_RATIO,
        "baseline": "construct MerkleTreeLeaf/chain Structs + pyOpenSSL load_certificate of leaf and chain, "
                    "certstream-style dict per entry (bench/faust_baseline.py)",
        "baseline_deviation": "pyOpenSSL 26 has no X509.get_extension: extensions read through "
                              "to_cryptography().extensions; no as_der field",
    }
    print(f"decode over {n:,} entries ({shape['x509']:,} x509, {shape['precert']:,} precert), one core:")
    print(f"  ctlib.decode.decode_entries {ctlib_rate:10,.0f} entries/s   (target >= {TARGET_RATE:,})")
    print(f"  construct + pyOpenSSL       {baseline_rate:10,.0f} entries/s")
    print(f"  ratio                       {ratio:10.2f} x          (target >= {TARGET_RATIO:g}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"  written to {args.out.relative_to(Path.cwd()) if args.out.is_relative_to(Path.cwd()) else args.out}")
    if args.profile:
        print(f"\ncProfile of ctlib over {min(args.profile, n):,} entries (top 15 by cumulative time):")
        print(profile_ctlib(entries[: args.profile]))


if __name__ == "__main__":
    main()
