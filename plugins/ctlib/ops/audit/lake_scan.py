"""The lake side of the audit: DuckDB over one log's live files of `certs` and `errors`, on
a local disk or an object store alike.

A log's files are its live files (`ctlib.lake.manifest.live_files`: a compacted partition's
manifest-named merged file and the range files it has not absorbed), so a compacted day
counts each entry once, and neither a merged file no manifest names (a compaction that
stopped before its manifest) nor the range files a manifest absorbed are read. They are
scanned as pyarrow datasets registered in DuckDB (`ctlib.lake.reading`: no DuckDB extension),
reading only `index` and `log_slug` (plus what a `where` names; rows of another log_slug in
the log's folder are ignored), once per scan, and collapsed into count runs before Python
sees them: the audit reads millions of rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ctlib.lake import layout
from ctlib.lake.files import Lake
from ctlib.lake.manifest import LiveFile, ManifestError, live_files
from ctlib.lake.reading import register
from ctlib.ops.audit.intervals import CountRun, Run

TABLES = (layout.CERTS, layout.ERRORS)
"""The tables an index may be in: an undecodable entry is present, in `errors`."""

_ROWS = "_audit_rows"
"""The temporary table holding one scan's (index, table) rows: read once, queried twice."""

_RUNS_SQL = f"""
with c as (
  select index, count(*) as n from {_ROWS} group by index
), g as (
  select index, n, index - row_number() over (partition by n order by index) as grp from c
)
select min(index) as s, max(index) + 1 as e, n from g group by n, grp order by s
"""


def _view(table: str) -> str:
    return f"_audit_{table}"


def _live(handle: Lake, table: str, slug: str) -> list[LiveFile]:
    """`slug`'s live files of `table`; ValueError for a manifest that cannot be trusted (the
    audit reports the log as not scannable rather than guess)."""
    try:
        return live_files(handle, table, slug=slug)
    except ManifestError as err:
        raise ValueError(str(err)) from None


def scan_lake(lake: str, slug: str, *, tables: Sequence[str] = TABLES, con=None, where: str = "",
              params: Sequence[Any] = (), window: Run | None = None) -> tuple[list[CountRun], dict[str, int]]:
    """Count runs of `slug`'s indexes over `tables` of the lake at `lake` (a local path or
    an object store URI, `Lake.open`), and rows per table (inside `window` when given).

    Reads only `index` and `log_slug` (plus what `where` names) of the log's live files;
    rows of another log_slug in its folder are ignored. ValueError for a partition whose
    manifest cannot be read; OSError when the lake cannot be listed or read."""
    import duckdb

    if con is None:
        with duckdb.connect() as own:
            return scan_lake(lake, slug, tables=tables, con=own, where=where, params=params, window=window)
    handle = Lake.open(lake)
    selects, args, per_table = [], [], dict.fromkeys(tables, 0)
    views = []
    try:
        for table in tables:
            files = _live(handle, table, slug)
            if not files:
                continue
            register(con, _view(table), handle, table, files)
            views.append(_view(table))
            selects.append(f"select index, '{table}' as t from {_view(table)} "
                           f"where log_slug = ?{' and ' + where if where else ''}")
            args += [slug, *params]
        if not selects:
            return [], per_table
        # One pass over the files (an object store's reads are the cost), then two queries.
        con.execute(f"create or replace temp table {_ROWS} as {' union all '.join(selects)}", args)
        runs = [CountRun(s, e, n) for s, e, n in con.execute(_RUNS_SQL).fetchall()]
        lo, hi = window if window is not None else (-(2**63), 2**63 - 1)
        counted = con.execute(f"select t, count(*) from {_ROWS} where index >= ? and index < ? group by t",
                              [lo, hi]).fetchall()
        per_table.update(dict(counted))
        return runs, per_table
    finally:
        con.execute(f"drop table if exists {_ROWS}")
        for view in views:
            con.unregister(view)


def log_id_from_lake(lake: str, slug: str, con=None) -> str | None:
    """The log_id of `slug`'s certificates in the lake at `lake` (None when it has none)."""
    import duckdb

    if con is None:
        with duckdb.connect() as own:
            return log_id_from_lake(lake, slug, own)
    handle = Lake.open(lake)
    files = _live(handle, layout.CERTS, slug)
    if not files:
        return None
    view = _view(layout.CERTS)
    register(con, view, handle, layout.CERTS, files)
    try:
        found = con.execute(f"select log_id from {view} where log_slug = ? and log_id is not null limit 1",
                            [slug]).fetchall()  # all (of one row): a pending result would block unregister
    finally:
        con.unregister(view)
    return found[0][0] if found else None
