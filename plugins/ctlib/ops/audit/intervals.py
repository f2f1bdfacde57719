"""Interval arithmetic on index ranges (pure): half-open runs `(start, end)`, and runs with a
count (`CountRun`: indexes present `count` times). No I/O; the scans produce these, the
verdicts are computed from them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Run = tuple[int, int]
"""Half-open index range [start, end)."""


@dataclass(frozen=True, slots=True, order=True)
class CountRun:
    """Indexes [start, end), each present `count` times."""

    start: int
    end: int
    count: int


def collapse(indexes: Iterable[int]) -> list[Run]:
    """Sorted indexes (repeats allowed) -> maximal runs of consecutive ones."""
    runs: list[Run] = []
    start: int | None = None  # None until the first index; `prev` is only read after it
    prev = 0
    for i in indexes:
        if start is None:
            start = prev = i
        elif i < prev:
            raise ValueError(f"indexes are not sorted: {i} after {prev}")
        elif i > prev + 1:
            runs.append((start, prev + 1))
            start = prev = i
        else:
            prev = i
    if start is not None:
        runs.append((start, prev + 1))
    return runs


def count_runs(counts: Iterable[tuple[int, int]]) -> list[CountRun]:
    """(index, count) pairs sorted by index -> runs of consecutive indexes with equal counts
    (what the DuckDB query computes, in Python for small inputs and tests)."""
    out: list[CountRun] = []
    for index, n in counts:
        if out and out[-1].end == index and out[-1].count == n:
            out[-1] = CountRun(out[-1].start, index + 1, n)
        else:
            if out and index < out[-1].end:
                raise ValueError(f"indexes are not sorted or repeat: {index}")
            out.append(CountRun(index, index + 1, n))
    return out


def runs_of_array(indexes) -> list[Run]:
    """Sorted distinct indexes (numpy int64) -> runs, without a Python loop per index."""
    import numpy as np

    if len(indexes) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indexes) != 1)
    starts = np.concatenate(([indexes[0]], indexes[breaks + 1]))
    ends = np.concatenate((indexes[breaks] + 1, [indexes[-1] + 1]))
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def normalize(runs: Iterable[Run]) -> list[Run]:
    """Sorted, with overlapping and touching runs merged; empty runs dropped."""
    out: list[Run] = []
    for start, end in sorted(r for r in runs if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(runs: Iterable[Run], holes: Iterable[Run]) -> list[Run]:
    """The indexes of `runs` that are in none of `holes`, as runs."""
    out: list[Run] = []
    holes = normalize(holes)
    for start, end in normalize(runs):
        at = start
        for h_start, h_end in holes:
            if h_end <= at:
                continue
            if h_start >= end:
                break
            if h_start > at:
                out.append((at, h_start))
            at = max(at, h_end)
            if at >= end:
                break
        if at < end:
            out.append((at, end))
    return out


def clip(runs: Iterable[Run], lo: int, hi: int) -> list[Run]:
    """The parts of `runs` inside [lo, hi)."""
    return [(max(s, lo), min(e, hi)) for s, e in runs if max(s, lo) < min(e, hi)]


def gaps(present: Iterable[CountRun | Run], lo: int, hi: int) -> list[Run]:
    """Indexes of [lo, hi) in no run of `present`."""
    runs = [(r.start, r.end) if isinstance(r, CountRun) else r for r in present]
    return subtract([(lo, hi)], runs)


def duplicates(present: Iterable[CountRun], lo: int, hi: int) -> list[CountRun]:
    """Runs of [lo, hi) present more than once (clipped, touching runs of equal count merged)."""
    out: list[CountRun] = []
    for r in present:
        start, end = max(r.start, lo), min(r.end, hi)
        if r.count < 2 or start >= end:
            continue
        if out and out[-1].end == start and out[-1].count == r.count:
            out[-1] = CountRun(out[-1].start, end, r.count)
        else:
            out.append(CountRun(start, end, r.count))
    return out


def size(runs: Iterable[Run | CountRun]) -> int:
    """How many indexes the runs span (each run once, whatever its count)."""
    return sum((r.end - r.start) if isinstance(r, CountRun) else (r[1] - r[0]) for r in runs)
