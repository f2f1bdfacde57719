"""A fixed corpus of realistic CT log entries for the benchmarks, generated once and cached.

`load(n, seed)` returns n entries as `RawEntry(index, leaf_input, extra_data)`, the bytes a
get-entries answer carries (base64-decoded), made by the local CT log's certificate factory
(`ctlib.testing.certs.CertFactory`: x509 and precert entries in its usual mix, final
certificates with embedded SCTs, chains of a small test PKI). Generating takes about
0.25 ms an entry (50,000: ~12 s; 500,000: ~2 min), so the entries are cached under
bench/results/cache/ (git-ignored) as Parquet, one file per (n, seed), columns
`index`, `leaf_input`, `extra_data`. A cached corpus of the same seed and at least n entries
serves a smaller request by its prefix (the factory's sequence depends only on the seed).

`as_get_entries(entries)` gives the same entries as get-entries JSON records
(`{"leaf_input": <base64>, "extra_data": <base64>}`).

    .venv/bin/python bench/corpus.py --entries 50000 [--seed 42]   # generate / check the cache
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ctlib.ct.types import RawEntry

CACHE = Path(__file__).resolve().parent / "results" / "cache"
DEFAULT_SEED = 42
_NAME = re.compile(r"corpus-n(\d+)-seed(-?\d+)\.parquet")
_SCHEMA = pa.schema([("index", pa.int64()), ("leaf_input", pa.binary()), ("extra_data", pa.binary())])


def _path(n: int, seed: int) -> Path:
    return CACHE / f"corpus-n{n}-seed{seed}.parquet"


def _cached(n: int, seed: int) -> Path | None:
    """The smallest cached corpus of this seed with at least n entries."""
    best: tuple[int, Path] | None = None
    for path in CACHE.glob("corpus-n*-seed*.parquet"):
        match = _NAME.fullmatch(path.name)
        if match and int(match[2]) == seed and int(match[1]) >= n:
            size = int(match[1])
            if best is None or size < best[0]:
                best = (size, path)
    return best[1] if best else None


def generate(n: int, seed: int = DEFAULT_SEED, *, progress: bool = True) -> list[RawEntry]:
    from ctlib.testing.certs import CertFactory

    factory = CertFactory(seed=seed)
    start_ms = int(time.time() * 1000) - n  # one entry a millisecond, ending now
    entries = []
    began = time.monotonic()
    for i in range(n):
        e = factory.next_entry(start_ms + i)
        entries.append(RawEntry(i, e.leaf_input, e.extra_data))
        if progress and (i + 1) % 50_000 == 0:
            print(f"  corpus: {i + 1:,} of {n:,} entries generated ({time.monotonic() - began:.0f} s)",
                  file=sys.stderr, flush=True)
    return entries


def _write(entries: list[RawEntry], path: Path) -> None:
    table = pa.Table.from_arrays(
        [
            pa.array([e.index for e in entries], pa.int64()),
            pa.array([e.leaf_input for e in entries], pa.binary()),
            pa.array([e.extra_data for e in entries], pa.binary()),
        ],
        schema=_SCHEMA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # Dictionary encoding folds the x509 entries' extra_data (one chain per intermediate).
    pq.write_table(table, tmp, compression="zstd", use_dictionary=["extra_data"])
    tmp.replace(path)


def load(n: int, seed: int = DEFAULT_SEED, *, progress: bool = True) -> list[RawEntry]:
    """n entries (indexes 0..n-1): from the cache, else generated and cached."""
    if n < 1:
        raise ValueError("a corpus needs at least one entry")
    path = _cached(n, seed)
    if path is None:
        if progress:
            print(f"  corpus: generating {n:,} entries (seed {seed}), cached for later runs",
                  file=sys.stderr, flush=True)
        entries = generate(n, seed, progress=progress)
        _write(entries, _path(n, seed))
        return entries
    table = pq.read_table(path).slice(0, n)
    return [
        RawEntry(i, leaf, extra)
        for i, leaf, extra in zip(
            table["index"].to_pylist(), table["leaf_input"].to_pylist(), table["extra_data"].to_pylist(), strict=True
        )
    ]


def as_get_entries(entries: list[RawEntry]) -> list[dict[str, str]]:
    """The entries as the records of a get-entries answer."""
    return [
        {"leaf_input": base64.b64encode(e.leaf_input).decode("ascii"),
         "extra_data": base64.b64encode(e.extra_data).decode("ascii")}
        for e in entries
    ]


def describe(entries: list[RawEntry]) -> dict[str, object]:
    """Counts by entry type and mean sizes, for the benchmarks' JSON."""
    precerts = sum(1 for e in entries if e.leaf_input[10:12] == b"\x00\x01")
    return {
        "entries": len(entries),
        "x509": len(entries) - precerts,
        "precert": precerts,
        "mean_leaf_input_bytes": round(sum(len(e.leaf_input) for e in entries) / len(entries)),
        "mean_extra_data_bytes": round(sum(len(e.extra_data) for e in entries) / len(entries)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate (or check) the cached benchmark corpus.")
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    began = time.monotonic()
    entries = load(args.entries, args.seed)
    print(f"{describe(entries)} in {time.monotonic() - began:.1f} s (cache: {_cached(args.entries, args.seed)})")


if __name__ == "__main__":
    main()
