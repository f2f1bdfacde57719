"""Time to index (ctlib.ingest.timeindex): crossings on ordered and disordered timestamps, few
probes, and windows whose entries land in exactly one window."""

from __future__ import annotations

import math
import random

import pytest

from ctlib.ingest.timeindex import TimeIndex, TimeIndexError, disorder_beyond


def _log(n: int, *, disorder: int = 0, seed: int = 1, start: int = 1_700_000_000_000, step: int = 50) -> list[int]:
    rng = random.Random(seed)
    return [start + i * step + (rng.randint(-disorder, disorder) if disorder else 0) for i in range(n)]


def _index(stamps: list[int], *, tile: int = 0, points=()) -> TimeIndex:
    def probe(i: int, count: int):
        if tile:
            first = i - i % tile
            return [(k, stamps[k]) for k in range(first, min(first + tile, len(stamps)))]
        return [(k, stamps[k]) for k in range(i, min(len(stamps), i + min(count, 32)))]  # a log capping at 32

    return TimeIndex(len(stamps), probe, points, slug="test_log")


@pytest.mark.parametrize("tile", [0, 256])
def test_crossing_of_ordered_timestamps_is_exact_and_cheap(tile: int) -> None:
    stamps = _log(1_000_000)
    for t in (stamps[0] - 1, stamps[0], stamps[123_456] + 1, stamps[-1], stamps[-1] + 1):
        index = _index(stamps, tile=tile)
        crossing = index.crossing(t)
        assert crossing.after == sum(s < t for s in stamps)  # ordered: the count below t
        assert crossing.before == crossing.after - 1
        assert index.probes <= 2 * math.log2(len(stamps)) + 2


def test_interpolation_needs_few_probes_on_a_steady_log() -> None:
    stamps = _log(2_000_000_000 // 1000)  # 2 million entries at 20/s
    index = _index(stamps)
    index.crossing(stamps[1_234_567])
    assert index.probes <= 8, index.probes


def test_known_points_save_probes() -> None:
    stamps = _log(100_000)
    cold = _index(stamps)
    cold.crossing(stamps[50_000])
    warm = _index(stamps, points=cold.cacheable())
    warm.crossing(stamps[50_000])
    assert warm.probes == 0
    assert len(cold.cacheable(keep=3)) == 3


def test_disordered_windows_hold_every_entry_exactly_once() -> None:
    jitter = 2_000  # ms; entries 50 ms apart, so many are out of order
    stamps = _log(20_000, disorder=jitter, seed=7)
    disorder = 2 * jitter  # no entry is more than this below one before it
    edges = [stamps[0] + k * 60_000 for k in range(1, 15)]
    seen: dict[int, int] = {}
    for start, end in zip(edges, edges[1:]):
        index = _index(stamps, tile=256 if start % 2 else 0)
        first, last = index.window_range(start, end, disorder)
        for i in range(first, last):
            if start <= stamps[i] < end:
                seen[i] = seen.get(i, 0) + 1
    expected = {i for i, s in enumerate(stamps) if edges[0] <= s < edges[-1]}
    assert set(seen) == expected and set(seen.values()) == {1}
    # Some entry near a boundary is out of order with a neighbour across it.
    assert any(stamps[i] >= e > stamps[i + 1] or stamps[i] < e <= stamps[i - 1]
               for e in edges[1:-1] for i in expected)


def test_too_much_disorder_is_reported() -> None:
    stamps = _log(1000)
    stamps[500], stamps[900] = stamps[900], stamps[500]  # 20 s out of order
    assert disorder_beyond(enumerate(stamps), 1000) == (501, stamps[501])  # below index 500's, 20 s later
    assert disorder_beyond(enumerate(_log(1000)), 0) is None


def test_empty_window_and_empty_log() -> None:
    with pytest.raises(ValueError, match="empty time window"):
        _index(_log(10)).window_range(5, 5, 0)
    assert _index([]).crossing(0).after == 0
    with pytest.raises(TimeIndexError, match="test_log: reading entry 3 gave no timestamp"):
        TimeIndex(10, lambda i, n: [], slug="test_log").timestamp(3)
