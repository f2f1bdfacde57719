"""Range planning: split the missing entries [next_index, tree_size) into fetch ranges. Pure."""

from __future__ import annotations

from collections.abc import Sequence

Range = tuple[int, int]  # [start, end)


def plan_ranges(
    next_index: int,
    tree_size: int,
    *,
    per_run: int,
    per_task: int,
    max_tasks: int,
    pending: Sequence[Range] = (),
) -> list[Range]:
    """Contiguous ranges from `next_index`, at most `per_task` entries each, `max_tasks` in
    all and `per_run` entries in all, never past `tree_size`.

    `pending` are the ranges of an earlier, uncommitted run from the same `next_index`: they
    are kept as they were (same files rewritten), and new ranges follow them.
    """
    if tree_size <= next_index:
        return []
    budget_end = min(tree_size, next_index + per_run)
    ranges: list[Range] = []
    position = next_index
    for start, end in pending:
        if start != position or end > tree_size or end <= start or len(ranges) >= max_tasks:
            break
        ranges.append((start, end))
        position = end
    while position < budget_end and len(ranges) < max_tasks:
        end = min(budget_end, position + per_task)
        ranges.append((position, end))
        position = end
    return ranges


def check_coverage(planned: Sequence[Range], done: Sequence[Range], slug: str) -> None:
    """Raise ValueError unless `done` covers exactly the `planned` ranges: no gap, no overlap."""
    if sorted(done) != sorted(planned):
        missing = sorted(set(planned) - set(done))
        extra = sorted(set(done) - set(planned))
        raise ValueError(f"{slug}: fetched ranges do not match the plan: missing {missing}, unexpected {extra}")
    ordered = sorted(planned)
    for (_, end), (start, _) in zip(ordered, ordered[1:]):
        if end != start:
            raise ValueError(f"{slug}: planned ranges leave a gap or overlap at {end}..{start}")
