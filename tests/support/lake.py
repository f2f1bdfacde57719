"""Reading the Parquet lake back in tests, as every reader does: the live files of a table
(ctlib.lake.manifest, so a compacted partition counts once) through pyarrow datasets in
DuckDB (ctlib.lake.reading), on a local folder or an S3 lake alike."""

from __future__ import annotations

import os

import duckdb

from ctlib.lake import reading
from ctlib.lake.files import Lake
from ctlib.lake.manifest import live_files


def open_lake(lake: str | os.PathLike[str] | Lake) -> Lake:
    """A lake location (a folder, a Path, `s3://...`) or a Lake, opened."""
    return lake if isinstance(lake, Lake) else Lake.open(os.fspath(lake))


def _select(lake: str | os.PathLike[str] | Lake, table: str, slug: str, sql: str) -> list[tuple]:
    opened = open_lake(lake)
    files = live_files(opened, table, slug=slug)
    if not files:
        return []
    with duckdb.connect() as con:
        reading.register(con, "t", opened, table, files)
        return con.sql(sql).fetchall()


def lake_select(lake: str | os.PathLike[str] | Lake, table: str, slug: str, columns: str) -> list[tuple]:
    """`columns` (SQL expressions) of log `slug`'s rows of `table`, ordered by them."""
    return _select(lake, table, slug, f"select {columns} from t order by all")


def lake_rows(lake: str | os.PathLike[str] | Lake, table: str, slug: str) -> list[tuple]:
    """(index, leaf_hash) of the certs table, or (index, reason) of another (errors), for
    log `slug`, by index."""
    column = "leaf_hash" if table == "certs" else "reason"
    return _select(lake, table, slug, f"select index, {column} from t order by index")


def incidents(lake: str | os.PathLike[str] | Lake, slug: str) -> list[tuple[str, str]]:
    """(kind, details) of the incidents recorded for log `slug`, oldest first."""
    return _select(lake, "incidents", slug, "select kind, details from t order by timestamp")
