"""What the lake already knows of one log, for a backfill by time: (index, timestamp) points
near given times, and which indexes of a range it already holds.

Both read the live files (ctlib.lake.manifest.live_files: a compacted partition through its
manifest) of the few day partitions that can hold them (`<table>/log=<slug>/date=<day>/`),
never the whole log, as pyarrow datasets scanned by DuckDB (ctlib.lake.reading): the same on
a local disk and on an object store (S3), with no DuckDB extension.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta

from ctlib.ct.types import Point
from ctlib.lake import layout, reading
from ctlib.lake.files import Lake
from ctlib.lake.manifest import live_files

Run = tuple[int, int]  # [start, end) of indexes


def days_between(start_ms: int, end_ms: int) -> list[date]:
    """Every UTC day that [start_ms, end_ms] touches."""
    first = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    last = datetime.fromtimestamp(max(start_ms, end_ms) / 1000, UTC).date()
    return [first + timedelta(days=k) for k in range((last - first).days + 1)]


def _open(lake: str | Lake) -> Lake:
    return lake if isinstance(lake, Lake) else Lake.open(lake)


def _paths(lake: Lake, table: str, slug: str, days: Iterable[date]) -> list[str]:
    """The live files of `slug`'s `table` on `days`."""
    return [f.path for f in live_files(lake, table, slug=slug, days=days)]


def time_points(lake: str | Lake, slug: str, times_ms: Sequence[int], *, span_ms: int) -> list[Point]:
    """For each time t, the lake's certificates of `slug` logged last before t and first at or
    after t, looked for within `span_ms` of t: real points of the log to start a search from."""
    if not times_ms:
        return []
    opened = _open(lake)
    files = _paths(opened, layout.CERTS, slug, days_between(min(times_ms) - span_ms, max(times_ms) + span_ms))
    if not files:
        return []
    import duckdb

    points: set[Point] = set()
    rows = ("with r as (select index, epoch_ms(timestamp) as ts from certs "
            "where log_slug = ? and timestamp >= make_timestamp(? * 1000) and timestamp < make_timestamp(? * 1000)) ")
    with duckdb.connect() as con:
        reading.register(con, "certs", opened, layout.CERTS, files)
        for t in times_ms:
            for index, ts in con.execute(
                rows + "select arg_max(index, ts), max(ts) from r where ts < ? union all "
                "select arg_min(index, ts), min(ts) from r where ts >= ?",
                [slug, t - span_ms, t + span_ms, t, t],
            ).fetchall():
                if index is not None:
                    points.add((int(index), int(ts)))
    return sorted(points)


def held_runs(lake: str | Lake, slug: str, start: int, end: int, days: Iterable[date],
              own: tuple[int, int] | None = None) -> list[Run]:
    """The runs of indexes in [start, end) that `slug`'s live certs or errors files of `days`
    (and errors without a timestamp) already hold, ascending; not counting the files of the
    backfill window `own` (start, end ms), which its run writes again."""
    if start >= end:
        return []
    opened = _open(lake)
    days = list(days)
    by_table = {layout.CERTS: _paths(opened, layout.CERTS, slug, days),
                layout.ERRORS: _paths(opened, layout.ERRORS, slug, [*days, layout.UNKNOWN_DATE])}
    if own is not None:
        tag = layout.window_tag(*own) + ".parquet"
        by_table = {table: [f for f in files if not f.endswith(tag)] for table, files in by_table.items()}
    tables = [table for table, files in by_table.items() if files]
    if not tables:
        return []
    import duckdb

    with duckdb.connect() as con:
        for table in tables:
            reading.register(con, table, opened, table, by_table[table])
        union = " union all ".join(
            f"select index from {table} where log_slug = $slug and index >= $start and index < $end" for table in tables)
        rows = con.execute(
            f"with i as (select distinct index from ({union})), "
            "g as (select index, index - row_number() over (order by index) as grp from i) "
            "select min(index), max(index) + 1 from g group by grp order by 1",
            {"slug": slug, "start": start, "end": end},
        ).fetchall()
    return [(int(s), int(e)) for s, e in rows]
