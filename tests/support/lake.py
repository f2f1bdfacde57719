"""Reading the Parquet lake back in tests (DuckDB): a log's rows of a table, its incidents."""

from __future__ import annotations

from pathlib import Path

import duckdb


def lake_rows(lake: Path, table: str, slug: str) -> list[tuple]:
    """(index, leaf_hash) of the certs table, or (index, reason) of another (errors), for
    log `slug`, by index."""
    files = list((lake / table / f"log={slug}").rglob("*.parquet"))
    if not files:
        return []
    return duckdb.sql(
        f"select index, leaf_hash from read_parquet({[str(f) for f in files]}, hive_partitioning=true) order by index"
        if table == "certs"
        else f"select index, reason from read_parquet({[str(f) for f in files]}, hive_partitioning=true) order by index"
    ).fetchall()


def incidents(lake, slug: str) -> list[tuple[str, str]]:
    """(kind, details) of the incidents recorded for log `slug`, oldest first."""
    files = list((lake / "incidents" / f"log={slug}").rglob("*.parquet"))
    if not files:
        return []
    return duckdb.sql(f"select kind, details from read_parquet({[str(f) for f in files]}) order by timestamp").fetchall()
