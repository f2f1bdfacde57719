"""Analysts' SQL over the lake: DuckDB views `certs`, `errors`, `incidents`, `scores`,
`alerts`, `enrichment`, `health`, `watch_matches`, `notifications` (Parquet, hive-partitioned where
partitioned), and a small CLI.

    python -m ctlib.query "select count(*) from certs"
    python -m ctlib.query --file include/sql/top_issuers_per_day.sql --format csv
    python -m ctlib.query --param pattern='%paypal%' --file include/sql/certs_for_domain.sql

A table with no file yet is an empty view with the table's columns, so every query runs
on a fresh lake.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from ctlib.lake import layout
from ctlib.settings import Settings


def _has_files(lake: str, table: str) -> bool:
    return any(Path(layout.table_dir(lake, table)).rglob("*.parquet")) if "://" not in lake else True


def connect(lake: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per lake table (plus `log_slug`/`date` from the
    partition path where the files do not carry them)."""
    lake = lake or Settings.from_env().lake
    con = duckdb.connect()
    for table, schema in layout.SCHEMAS.items():
        if _has_files(lake, table):
            glob = layout.table_glob(lake, table)
            con.execute(
                f"create view {table} as select * from read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
            )
        else:
            empty = schema.empty_table()
            con.register(f"_empty_{table}", empty)
            con.execute(f"create view {table} as select * from _empty_{table}")
    return con


def run(sql: str, *, lake: str | None = None, params: Mapping[str, str] | None = None) -> duckdb.DuckDBPyRelation:
    """Run `sql`; `$name` placeholders are bound from `params`."""
    con = connect(lake)
    return con.sql(sql, params=dict(params) if params else None)


def _print(relation: duckdb.DuckDBPyRelation, fmt: str, out=sys.stdout) -> None:
    if fmt == "table":
        out.write(str(relation) + "\n")
        return
    table = relation.to_arrow_table()
    if fmt == "csv":
        import pyarrow.csv as pacsv

        buffer = pa.BufferOutputStream()
        pacsv.write_csv(table, buffer)
        out.write(buffer.getvalue().to_pybytes().decode())
    else:
        for row in table.to_pylist():
            out.write(json.dumps(row, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctlib.query", description=__doc__.split("\n\n")[0])
    parser.add_argument("sql", nargs="?", help="SQL to run (or --file)")
    parser.add_argument("--file", type=Path, help="a .sql file to run")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--lake", help="lake root (default CT_LAKE)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="bind $NAME in the SQL (repeatable)")
    args = parser.parse_args(argv)
    if bool(args.sql) == bool(args.file):
        parser.error("give SQL or --file, not both")
    sql = args.file.read_text() if args.file else args.sql
    params = dict(item.split("=", 1) for item in args.param)
    try:
        relation = run(sql, lake=args.lake, params=params)
    except duckdb.Error as err:
        print(f"query failed: {err}", file=sys.stderr)
        return 1
    if relation is not None:
        _print(relation, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
