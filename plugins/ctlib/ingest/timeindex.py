"""Time to index: where in a log the entries logged at a given time lie. Pure.

A CT log orders entries by when it sequenced them, and each carries the timestamp of its SCT,
so timestamps only roughly follow the index: a few entries may be older than one before them.
`TimeIndex` holds the (index, timestamp) points known of one log (from the lake, from earlier
searches, from probes) and finds a *crossing* of a time `t`: indexes L < R = L + 1 with
ts(L) < t <= ts(R). It probes the log (one entry of an RFC 6962 log, a whole 256-entry bundle
of a tiled log) by interpolation, with a bisection step whenever interpolation stops halving
the bracket, so a billion-entry log needs a few probes, never more than about 2 log2(size).

`window_range` turns a time window [start, end) into the index range to fetch, given the
largest disorder the log is assumed to have (`disorder_ms`: no entry is older than an entry
before it by more than that). With L1 the crossing of start - disorder and R2 that of
end + disorder, every entry logged in the window lies in [L1 + 1, R2): any index <= L1 has a
timestamp below ts(L1) + disorder < start, and any index >= R2 one of at least
ts(R2) - disorder >= end. The caller keeps exactly the entries whose own timestamp is in the
window, so an entry out of order near a boundary lands in the window holding its timestamp:
in exactly one window, whichever side of the boundary its neighbours are.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ctlib.ct.types import Point

Probe = Callable[[int, int], list[Point]]
"""`probe(index, count)` reads entry `index` from the log, and up to `count` - 1 entries after
it where one read gives them: its point and any neighbours read with it."""

SCAN = 256
"""A bracket this narrow is read whole in one probe (one get-entries answer, one tile)."""

CACHE_POINTS = 512
"""How many points `TimeIndex.cacheable` keeps for the next search of the same log."""


class TimeIndexError(RuntimeError):
    """The log's timestamps contradict the search (a probe returned no point for its index)."""


@dataclass(frozen=True, slots=True)
class Crossing:
    """`before` < `after` = before + 1 with ts(before) < t <= ts(after); before is -1 when
    the first entry is already at or after t, after is the tree size when no entry is."""

    t: int
    before: int
    after: int


class TimeIndex:
    """The known points of one log of `tree_size` entries, and the searches over them."""

    def __init__(self, tree_size: int, probe: Probe, points: Iterable[Point] = (), *, slug: str = "?") -> None:
        self.tree_size = tree_size
        self.slug = slug
        self._probe = probe
        self._ts: dict[int, int] = {}
        self._order: list[int] = []  # known indexes, ascending
        self.probes = 0
        self.add(p for p in points if 0 <= p[0] < tree_size)

    def add(self, points: Iterable[Point]) -> None:
        for index, ts in points:
            if index not in self._ts and 0 <= index < self.tree_size:
                bisect.insort(self._order, index)
            self._ts[index] = ts

    def timestamp(self, index: int, count: int = 1) -> int:
        """ts(index), probing the log when it is not known yet (`count`: entries worth reading
        from there in the same probe)."""
        if index not in self._ts:
            self.probes += 1
            self.add(self._probe(index, count))
            if index not in self._ts:
                raise TimeIndexError(f"{self.slug}: reading entry {index} gave no timestamp for it")
        return self._ts[index]

    def crossing(self, t: int) -> Crossing:
        """A crossing of time `t` (ms): see Crossing. Probes only inside the known bracket."""
        if self.tree_size == 0:
            return Crossing(t, -1, 0)
        left, right = self._bracket_within(t, -1, self.tree_size)
        bisect_next = False
        while right - left > 1:
            width = right - left
            if left < 0:
                mid = 0  # the first entry anchors the search (else the bracket would be closed)
            elif right >= self.tree_size:
                mid = self.tree_size - 1
            elif width <= SCAN:
                mid = left + 1  # read the whole bracket at once
            elif bisect_next:
                mid = (left + right) // 2
            else:
                low, high = self._ts[left], self._ts[right]
                share = (t - low) / (high - low) if high > low else 0.5
                mid = left + int(share * width)
            mid = min(max(mid, left + 1), right - 1)
            if self.timestamp(mid, right - mid if width <= SCAN else 1) < t:
                left = mid
            else:
                right = mid
            # A probe may have taught more than one point (a tile): tighten with all of them.
            new_left, new_right = self._bracket_within(t, left, right)
            bisect_next = not bisect_next and (new_right - new_left) * 2 > width
            left, right = new_left, new_right
        return Crossing(t, left, right)

    def _bracket_within(self, t: int, left: int, right: int) -> tuple[int, int]:
        """The tightest known (L, R) inside [left, right] with ts(L) < t <= ts(R), L < R
        (-1 and the tree size stand for the virtual ends)."""
        lo = bisect.bisect_right(self._order, left)
        hi = bisect.bisect_left(self._order, right)
        inside = self._order[lo:hi]
        new_right = next((i for i in inside if self._ts[i] >= t), right)
        new_left = left
        for i in inside:
            if i >= new_right:
                break
            if self._ts[i] < t:
                new_left = i
        return new_left, new_right

    def window_range(self, start_ms: int, end_ms: int, disorder_ms: int) -> tuple[int, int]:
        """[first, end) indexes holding every entry logged in [start_ms, end_ms) when no
        timestamp is below an earlier entry's by more than `disorder_ms` (module docstring)."""
        if end_ms <= start_ms:
            raise ValueError(f"{self.slug}: empty time window [{start_ms}, {end_ms})")
        first = self.crossing(start_ms - disorder_ms).after
        end = self.crossing(end_ms + disorder_ms).after
        if end < first:
            raise TimeIndexError(
                f"{self.slug}: timestamps are out of order by more than {disorder_ms} ms around "
                f"indexes {end}..{first}; raise CT_BACKFILL_DISORDER"
            )
        return first, end

    def cacheable(self, keep: int = CACHE_POINTS) -> list[Point]:
        """Up to `keep` known points spread evenly over the log, for the next search."""
        if len(self._order) <= keep:
            return [(i, self._ts[i]) for i in self._order]
        step = len(self._order) / keep
        return [(i, self._ts[i]) for i in (self._order[int(k * step)] for k in range(keep))]


def disorder_beyond(points: Iterable[Point] | np.ndarray, disorder_ms: int) -> Point | None:
    """The first point (in index order) whose timestamp is below the largest one before it by
    more than `disorder_ms`; None when the points keep within it. `points`: (index, ms) pairs,
    or an array of them."""
    pairs = np.asarray(points if isinstance(points, np.ndarray) else list(points), dtype=np.int64).reshape(-1, 2)
    if len(pairs) < 2:
        return None
    stamps = pairs[:, 1]
    late = np.flatnonzero(np.maximum.accumulate(stamps)[:-1] - stamps[1:] > disorder_ms)
    return None if not late.size else (int(pairs[late[0] + 1, 0]), int(pairs[late[0] + 1, 1]))
