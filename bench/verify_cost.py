"""Verification cost: entries per second on one core, decoding with and without Merkle
verification (leaf hashes folded into a compact range, merged, root compared with the signed
root), side by side on the same entries from the local CT log's certificate factory.

    .venv/bin/python bench/verify_cost.py [--entries 20000] [--out bench/results/verify_cost.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import ChainCache, LogRef, decode_entries
from ctlib.ct.merkle import CompactRange, MerkleTree, leaf_hash
from ctlib.testing.certs import CertFactory

BATCH = 1000  # entries per decode call, as one get-entries window


def corpus(n: int) -> list[RawEntry]:
    factory = CertFactory(seed=42)
    start_ms = int(time.time() * 1000) - n
    return [RawEntry(i, e.leaf_input, e.extra_data)
            for i, e in enumerate(factory.next_entry(start_ms + i) for i in range(n))]


def run(entries: list[RawEntry], verify: bool, signed_root: bytes) -> float:
    ref, cache, now = LogRef("bG9n", "bench"), ChainCache(), datetime.now(UTC)
    compact = CompactRange.empty()
    began = time.process_time()
    for offset in range(0, len(entries), BATCH):
        window = entries[offset:offset + BATCH]
        batch = decode_entries(ref, window, now, chain_cache=cache)
        if verify:
            compact = compact.merge(CompactRange.from_leaf_hashes(window[0].index, batch.leaf_hashes))
    if verify and compact.root() != signed_root:
        raise AssertionError("root mismatch")
    return len(entries) / (time.process_time() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "verify_cost.json")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    entries = corpus(args.entries)
    signed_root = MerkleTree(leaf_hash(e.leaf_input) for e in entries).root()
    without = max(run(entries, False, signed_root) for _ in range(args.repeats))
    with_ = max(run(entries, True, signed_root) for _ in range(args.repeats))
    figures = {
        "entries": args.entries,
        "decode_entries_per_s_without_verification": round(without),
        "decode_entries_per_s_with_verification": round(with_),
        "verification_overhead_pct": round(100 * (without / with_ - 1), 2),
    }
    print(json.dumps(figures, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
