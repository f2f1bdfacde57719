"""Compaction of one busy day: time and peak memory of `ctlib.lake.compaction.compact_partition`
on a local lake and on S3 (a local S3 server, moto_server), streaming in index windows
(MERGE_WINDOW, the code as it is) side by side with the whole day read at once (MERGE_WINDOW
larger than the day: what compaction did before the window), each in a process of its own so
its peak RSS is its own.

The day: `--entries` certificates (default 1,000,000; --full 3,000,000) in range files of
1,000 (ingest's files at a few hundred entries a second), rows cloned from a pool of 2,000
real decoded certificates (bench/corpus.py) with their own index and leaf hash, so the
merged file holds realistic columns. Written once to a local folder, and copied to S3 for
the S3 runs.

    .venv/bin/python bench/compaction_bench.py [--entries N] [--full]

Writes bench/results/compaction.json. Target: memory that does not grow with the day (the
streamed runs' peak RSS about the same for any --entries), every row once (checked).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SLUG = "bench_compaction_log"
DAY = date(2026, 1, 1)
FILE_ENTRIES = 1_000
POOL = 2_000


def _pool() -> pa.Table:
    """Decoded certificate rows of the corpus (the columns ingest writes)."""
    from ctlib.decode.entries import LogRef, decode_entries

    entries = corpus.load(POOL, progress=False)
    batch = decode_entries(LogRef("YmVuY2g=", SLUG), entries, datetime(2026, 1, 1, tzinfo=UTC))
    return batch.certs


def build_day(root: Path, entries: int) -> None:
    """`entries` rows in range files of FILE_ENTRIES under certs/log=SLUG/date=DAY/."""
    from ctlib.lake import layout
    from ctlib.lake.files import Lake, write_file

    pool = _pool()
    lake = Lake.open(str(root))
    directory = layout.partition_dir(lake.root, layout.CERTS, SLUG, DAY)
    start_ms = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    for start in range(0, entries, FILE_ENTRIES):
        end = min(entries, start + FILE_ENTRIES)
        indexes = pa.array(range(start, end), pa.int64())
        rows = pool.take(pc.remainder(indexes, pool.num_rows))
        rows = rows.set_column(rows.schema.get_field_index("index"), "index", indexes)
        rows = rows.set_column(rows.schema.get_field_index("leaf_hash"), "leaf_hash",
                               pa.array([f"{i:064x}" for i in range(start, end)]))
        stamps = pa.array([start_ms + i * 86_399_000 // entries for i in range(start, end)],
                          pa.timestamp("ms", tz="UTC"))
        rows = rows.set_column(rows.schema.get_field_index("timestamp"), "timestamp", stamps)
        write_file(lake, directory, layout.range_file_name(start, end), rows.cast(layout.CERTS_SCHEMA))


def _run(location: str, env: dict[str, str], window: int | None, entries: int, out) -> None:
    """In a child process: compact the day, report time, peak RSS and the check."""
    os.environ.update(env)
    import ctlib.lake.compaction as compaction
    from ctlib.lake import layout
    from ctlib.lake.files import Lake
    from ctlib.lake.manifest import live_files
    from ctlib.lake.reading import dataset

    if window is not None:
        compaction.MERGE_WINDOW = window
    lake = Lake.open(location)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    began, cpu = time.perf_counter(), time.process_time()
    result = compaction.compact_partition(lake, layout.CERTS, SLUG, DAY, first_index=0, next_index=entries,
                                          now=datetime(2026, 2, 1, tzinfo=UTC))
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = dataset(lake, layout.CERTS, live_files(lake, layout.CERTS, slug=SLUG)).to_table(columns=["index"])["index"]
    out.send({"outcome": result.outcome, "rows": result.rows, "seconds": round(seconds, 2), "cpu_s": round(cpu, 2),
              "peak_rss_mib": round(peak / 1024), "rss_before_mib": round(before / 1024),
              "every_row_once": len(index) == entries and pc.count_distinct(index).as_py() == entries})


def measure(location: str, env: dict[str, str], window: int | None, entries: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_run, args=(location, env, window, entries, send))
    child.start()
    result = receive.recv()
    child.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=None)
    parser.add_argument("--full", action="store_true", help="3,000,000 entries")
    parser.add_argument("--out", type=Path, default=RESULTS / "compaction.json")
    args = parser.parse_args()
    entries = args.entries or (3_000_000 if args.full else 1_000_000)

    from ctlib.testing.s3 import LocalS3

    work = Path(tempfile.mkdtemp(prefix="compaction-bench-"))
    try:
        print(f"building a day of {entries:,} entries in files of {FILE_ENTRIES:,}...", flush=True)
        began = time.perf_counter()
        pristine = work / "pristine"
        build_day(pristine, entries)
        size = sum(p.stat().st_size for p in pristine.rglob("*.parquet"))
        print(f"  {size / 2**20:,.0f} MiB in {entries // FILE_ENTRIES:,} files ({time.perf_counter() - began:.0f} s)",
              flush=True)
        runs = {}
        with LocalS3(log_path=work / "moto.log") as s3:
            for where in ("local", "s3"):
                for mode, window in (("streamed", None), ("whole day", entries + 1)):
                    if where == "local":
                        lake = work / f"local-{mode.replace(' ', '-')}"
                        shutil.copytree(pristine, lake)
                        location, env = str(lake), {}
                    else:
                        bucket = f"bench-{mode.replace(' ', '-')}"
                        s3.create_bucket(bucket)
                        env = s3.env()
                        location = f"s3://{bucket}/lake"
                        _upload(pristine, location, env)
                    result = measure(location, env, window, entries)
                    runs[f"{where}, {mode}"] = result
                    print(f"  {where:5} {mode:9}: {result['seconds']:6.1f} s, CPU {result['cpu_s']:6.1f} s, "
                          f"peak RSS {result['peak_rss_mib']:,} MiB, {result['outcome']}, "
                          f"every row once: {result['every_row_once']}", flush=True)
        for where in ("local", "s3"):
            streamed, whole = runs[f"{where}, streamed"], runs[f"{where}, whole day"]
            print(f"  {where}: streamed peak RSS {streamed['peak_rss_mib'] / whole['peak_rss_mib']:.2f}x of the "
                  f"whole day's, time {streamed['seconds'] / whole['seconds']:.2f}x")
        RESULTS.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"entries": entries, "file_entries": FILE_ENTRIES, "day_mib": round(size / 2**20),
                                        "runs": runs, "machine": platform.platform(),
                                        "cpus": os.cpu_count()}, indent=2))
        print(f"wrote {args.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _upload(local_root: Path, location: str, env: dict[str, str]) -> None:
    """Copy the local lake's files to `location` on S3."""
    os.environ.update(env)
    from ctlib.lake.files import Lake

    lake = Lake.open(location)
    for path in sorted(local_root.rglob("*.parquet")):
        relative = path.relative_to(local_root).as_posix()
        with lake.filesystem.open_output_stream(f"{lake.root}/{relative}") as out:
            out.write(path.read_bytes())


if __name__ == "__main__":
    main()
