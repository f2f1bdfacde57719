"""The lake side of the audit: DuckDB reads of a local lake's Parquet files, one query per
log over `<table>/log=<slug>/date=*/*.parquet` (paths from ctlib.lake.layout), reading only
`index` and `log_slug` (hive partitioning) and collapsing millions of rows into count runs
before Python sees them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ctlib.lake import layout
from ctlib.ops.audit.intervals import CountRun, Run

TABLES = (layout.CERTS, layout.ERRORS)
"""The tables an index may be in: an undecodable entry is present, in `errors`."""

_RUNS_SQL = """
with c as (
  select index, count(*) as n from ({rows}) group by index
), g as (
  select index, n, index - row_number() over (partition by n order by index) as grp from c
)
select min(index) as s, max(index) + 1 as e, n from g group by n, grp order by s
"""


def _has_files(con, pattern: str) -> bool:
    return con.execute("select count(*) from (select 1 from glob(?) limit 1)", [pattern]).fetchone()[0] > 0


def scan_lake(lake: str, slug: str, *, tables: Sequence[str] = TABLES, con=None, where: str = "",
              params: Sequence[Any] = (), window: Run | None = None) -> tuple[list[CountRun], dict[str, int]]:
    """Count runs of `slug`'s indexes over `tables` of the lake, and rows per table (inside
    `window` when given).

    Reads only `index` and `log_slug` (plus what `where` names) of
    `<table>/log=<slug>/date=*/*.parquet`; rows of another log_slug in the folder are ignored.
    Raises ValueError for a lake that is not local (layout.local_root)."""
    import duckdb

    root = layout.local_root(lake)
    if con is None:
        with duckdb.connect() as own:
            return scan_lake(lake, slug, tables=tables, con=own, where=where, params=params, window=window)
    selects, args, per_table = [], [], dict.fromkeys(tables, 0)
    for table in tables:
        pattern = layout.log_glob(root, table, slug)
        if not _has_files(con, pattern):
            continue
        selects.append(
            f"select index, '{table}' as t from read_parquet(?, hive_partitioning = true, union_by_name = true) "
            f"where log_slug = ?{' and ' + where if where else ''}"
        )
        args += [pattern, slug, *params]
    if not selects:
        return [], per_table
    rows = " union all ".join(selects)
    runs = [CountRun(s, e, n) for s, e, n in con.execute(_RUNS_SQL.format(rows=rows), args).fetchall()]
    lo, hi = window if window is not None else (-(2**63), 2**63 - 1)
    counted = con.execute(f"select t, count(*) from ({rows}) where index >= ? and index < ? group by t",
                          [*args, lo, hi]).fetchall()
    per_table.update(dict(counted))
    return runs, per_table


def log_id_from_lake(lake: str, slug: str, con=None) -> str | None:
    """The log_id of `slug`'s certificates in the lake (None when it has none)."""
    import duckdb

    if con is None:
        with duckdb.connect() as own:
            return log_id_from_lake(lake, slug, own)
    pattern = layout.log_glob(layout.local_root(lake), layout.CERTS, slug)
    if not _has_files(con, pattern):
        return None
    row = con.execute("select log_id from read_parquet(?, hive_partitioning = true) where log_slug = ? limit 1",
                      [pattern, slug]).fetchone()
    return row[0] if row else None
