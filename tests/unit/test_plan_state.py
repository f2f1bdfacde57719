import pytest

from ctlib.ingest.plan import check_coverage, plan_ranges
from ctlib.ingest.state import LogState, MemoryStateStore, PendingPlan, StateError


def test_nothing_new_plans_nothing():
    assert plan_ranges(10, 10, per_run=100, per_task=10, max_tasks=4) == []
    assert plan_ranges(10, 5, per_run=100, per_task=10, max_tasks=4) == []


def test_ranges_are_contiguous_and_bounded():
    ranges = plan_ranges(5, 1000, per_run=100, per_task=30, max_tasks=8)
    assert ranges == [(5, 35), (35, 65), (65, 95), (95, 105)]
    ranges = plan_ranges(0, 1000, per_run=10_000, per_task=100, max_tasks=3)
    assert ranges == [(0, 100), (100, 200), (200, 300)]
    assert plan_ranges(0, 7, per_run=100, per_task=100, max_tasks=3) == [(0, 7)]


def test_pending_ranges_are_reused_then_extended():
    # A failed run planned [0,7); the log grew: the same file name is rewritten, then new ranges follow.
    ranges = plan_ranges(0, 50, per_run=100, per_task=20, max_tasks=4, pending=[(0, 7)])
    assert ranges == [(0, 7), (7, 27), (27, 47), (47, 50)]
    # A pending plan that does not start at next_index is ignored.
    assert plan_ranges(7, 20, per_run=100, per_task=20, max_tasks=4, pending=[(0, 7)]) == [(7, 20)]


def test_coverage_check():
    check_coverage([(0, 5), (5, 9)], [(5, 9), (0, 5)], "log")
    with pytest.raises(ValueError, match="missing"):
        check_coverage([(0, 5), (5, 9)], [(0, 5)], "log")
    with pytest.raises(ValueError, match="gap or overlap"):
        check_coverage([(0, 5), (6, 9)], [(0, 5), (6, 9)], "log")


def test_state_json_roundtrip_and_validation():
    state = LogState(next_index=10, tree_size=20, first_index=3)
    assert LogState.from_json(state.to_json()) == state
    with pytest.raises(StateError, match="no next_index"):
        LogState.from_json({"tree_size": 1}, "x")
    with pytest.raises(StateError, match="not JSON"):
        LogState.from_json("{", "x")
    with pytest.raises(StateError):
        state.advanced(5, entries=0, errors=0)
    moved = state.advanced(15, entries=4, errors=1)
    assert (moved.next_index, moved.entries_ingested, moved.errors_ingested) == (15, 4, 1)


def test_pending_plan_damage_is_ignored():
    assert PendingPlan.from_json("not json") is None
    plan = PendingPlan(4, ((4, 8),))
    assert PendingPlan.from_json(plan.to_json()) == plan
    store = MemoryStateStore()
    store.save_plan("a", plan)
    assert store.load_plan("a") == plan


# ----------------------------------------------------------------- tiled logs: the partial tile

def _tiled_log():
    from ctlib.ct.loglist import CTLog

    return CTLog(description="Tiled", slug="tiled", operator="op", log_id="aWQ=", key="a2V5",
                 kind="static", url="http://127.0.0.1:1/tiled/", state="usable", mmd=60)


def _at(next_index):
    return LogState(next_index=next_index, tree_size=next_index, first_index=0)


def _ends(state, size, pending, now_ms, wait=30.0):
    from ctlib.ct.types import TreeHead
    from ctlib.ingest.run import _end_for_tiles
    from ctlib.settings import Settings

    settings = Settings.from_env({"CT_PARTIAL_TILE_WAIT": str(wait)})
    return _end_for_tiles(_tiled_log(), state, TreeHead(size, 0, b"", ""), pending, settings, now_ms=now_ms)


def test_partial_tile_timer_starts_in_a_run_that_reads_full_tiles():
    # Run 1 at t=0: tree 600 = two full tiles + 88 entries in tile 2. It reads the full tiles
    # and remembers that tile 2 was seen partial at t=0.
    end, tile, since = _ends(_at(0), 600, None, now_ms=0)
    assert (end, tile, since) == (512, 2, 0)
    # Run 2 at t=60 s, the log stopped growing: the tail has waited its 30 s, read it now.
    hint = PendingPlan(0, ((0, 512),), partial_tile=tile, partial_since_ms=since)
    assert _ends(_at(512), 600, hint, now_ms=60_000) == (600, -1, 0)
    # Run 2 at t=20 s instead: still waiting, the timer kept from run 1.
    assert _ends(_at(512), 600, hint, now_ms=20_000) == (512, 2, 0)


def test_partial_tile_timer_restarts_for_a_new_tile_and_ignores_whole_trees():
    hint = PendingPlan(0, (), partial_tile=2, partial_since_ms=0)
    # The log grew into tile 3: tile 2 is full now, tile 3's wait starts now.
    assert _ends(_at(512), 800, hint, now_ms=60_000) == (768, 3, 60_000)
    # A tree of whole tiles, or nothing new: no partial tile.
    assert _ends(_at(512), 768, hint, now_ms=60_000) == (768, -1, 0)
    assert _ends(_at(600), 600, hint, now_ms=60_000) == (600, -1, 0)
    # The watermark inside the partial tile (an earlier partial read): nothing before the wait.
    assert _ends(_at(600), 700, hint, now_ms=10_000) == (600, 2, 0)
    assert _ends(_at(600), 700, hint, now_ms=40_000) == (700, -1, 0)
