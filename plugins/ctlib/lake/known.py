"""What the lake already knows of one log, for a backfill by time: (index, timestamp) points
near given times, and which indexes of a range it already holds. DuckDB over the few day
partitions that can hold them (`<table>/log=<slug>/date=<day>/`), never the whole log.

Only local lakes are read (layout.local_root); for an object store both answer "nothing
known", which costs a backfill a few more probes of the log and drops its guard against
overlapping an earlier backfill of another shape (the caller says so in its log)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from ctlib.ct.types import Point
from ctlib.lake import layout

Run = tuple[int, int]  # [start, end) of indexes


def is_local(lake: str) -> bool:
    try:
        layout.local_root(lake)
    except ValueError:
        return False
    return True


def days_between(start_ms: int, end_ms: int) -> list[date]:
    """Every UTC day that [start_ms, end_ms] touches."""
    first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    last = datetime.fromtimestamp(max(start_ms, end_ms) / 1000, UTC).date()
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def _files(lake: str, table: str, slug: str, days: Iterable[date]) -> list[str]:
    root = layout.local_root(lake)
    files = []
    for day in days:
        directory = layout.partition_dir(root, table, slug, day)
        if os.path.isdir(directory):
            files += sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".parquet"))
    return files


def time_points(lake: str, slug: str, times_ms: Sequence[int], *, span_ms: int) -> list[Point]:
    """For each time t, the lake's certificates of `slug` logged last before t and first at or
    after t, looked for within `span_ms` of t: real points of the log to start a search from."""
    if not is_local(lake) or not times_ms:
        return []
    files = _files(lake, layout.CERTS, slug, days_between(min(times_ms) - span_ms, max(times_ms) + span_ms))
    if not files:
        return []
    import duckdb

    points: set[Point] = set()
    rows = ("with r as (select index, epoch_ms(timestamp) as ts from read_parquet(?, union_by_name = true) "
            "where log_slug = ? and timestamp >= make_timestamp(? * 1000) and timestamp < make_timestamp(? * 1000)) ")
    with duckdb.connect() as con:
        for t in times_ms:
            for index, ts in con.execute(
                rows + "select arg_max(index, ts), max(ts) from r where ts < ? union all "
                "select arg_min(index, ts), min(ts) from r where ts >= ?",
                [files, slug, t - span_ms, t + span_ms, t, t],
            ).fetchall():
                if index is not None:
                    points.add((int(index), int(ts)))
    return sorted(points)


def held_runs(lake: str, slug: str, start: int, end: int, days: Iterable[date],
              own: tuple[int, int] | None = None) -> list[Run]:
    """The runs of indexes in [start, end) that `slug`'s certs or errors files of `days` (and
    errors without a timestamp) already hold, ascending; not counting the files of the
    backfill window `own` (start, end ms), which its run writes again."""
    if not is_local(lake) or start >= end:
        return []
    days = list(days)
    files = _files(lake, layout.CERTS, slug, days) + _files(lake, layout.ERRORS, slug, [*days, layout.UNKNOWN_DATE])
    if own is not None:
        tag = layout.window_tag(*own) + ".parquet"
        files = [f for f in files if not f.endswith(tag)]
    if not files:
        return []
    import duckdb

    with duckdb.connect() as con:
        rows = con.execute(
            "with i as (select distinct index from read_parquet(?, union_by_name = true) "
            "  where log_slug = ? and index >= ? and index < ?), "
            "g as (select index, index - row_number() over (order by index) as grp from i) "
            "select min(index), max(index) + 1 from g group by grp order by 1",
            [files, slug, start, end],
        ).fetchall()
    return [(int(s), int(e)) for s, e in rows]
