import pytest

from ctlib.plan import check_coverage, plan_ranges
from ctlib.state import LogState, MemoryStateStore, PendingPlan, StateError


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
