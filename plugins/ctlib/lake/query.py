"""Analysts' SQL over the lake: DuckDB views `certs`, `errors`, `incidents`, `scores`,
`alerts`, `enrichment`, `health`, `watch_matches`, `notifications`, and a small CLI.

    python -m ctlib.query "select count(*) from certs"
    python -m ctlib.query --file include/sql/top_issuers_per_day.sql --format csv
    python -m ctlib.query --param pattern='%paypal%' --file include/sql/certs_for_domain.sql
    python -m ctlib.query --lake s3://bucket/prefix "select count(*) from certs"
    python -m ctlib.query --files certs          # the live files, for readers outside ctlib

Each view reads the table's live files (ctlib.lake.manifest.live_files: a compacted partition
through its manifest, so each entry is seen once) as a pyarrow dataset registered in DuckDB
(ctlib.lake.reading): the same on a local disk and on S3 (`s3://bucket/prefix`, configured as
ctlib.lake.files.Lake.open says: the AWS variables or CT_LAKE_CONN_ID), and DuckDB never needs
an extension from the network (httpfs): autoinstalling one is turned off. A view has the
table's columns (ctlib.lake.layout) and the partition columns of its paths (`log`, `date`);
a table with no file yet is an empty view with the same columns, so every query runs on a
fresh lake. `run` lists only the tables its SQL names (one listing per table: on S3 a listing
costs a request per thousand files, plus one per compacted partition's manifest).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa

from ctlib.lake import layout, reading
from ctlib.lake.files import Lake, LakeError
from ctlib.lake.manifest import ManifestError, live_files
from ctlib.settings import Settings

DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {"autoinstall_known_extensions": False}
"""No extension is ever fetched from the network (production may not reach it)."""


def open_lake(lake: str | Lake | None = None) -> Lake:
    """`lake` opened (ctlib.lake.files.Lake.open), CT_LAKE when None."""
    if isinstance(lake, Lake):
        return lake
    return Lake.open(lake or Settings.from_env().lake)


def connect(lake: str | Lake | None = None, *, tables: Iterable[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per lake table over its live files (the module
    docstring), of `tables` only when given. LakeError when the lake cannot be opened,
    ManifestError when a partition's manifest cannot be trusted."""
    opened = open_lake(lake)
    wanted = layout.SCHEMAS if tables is None else [t for t in layout.SCHEMAS if t in set(tables)]
    con = duckdb.connect(config=DUCKDB_CONFIG)
    for table in wanted:
        reading.register(con, table, opened, table, live_files(opened, table))
    return con


def tables_named(sql: str) -> list[str]:
    """The lake tables whose name appears as a word in `sql` (a superset of those it reads)."""
    return [t for t in layout.SCHEMAS if re.search(rf"\b{re.escape(t)}\b", sql, re.IGNORECASE)]


def live_uris(lake: str | Lake | None, table: str) -> list[str]:
    """The URIs of `table`'s live files: what a reader outside ctlib reads (each entry once)."""
    opened = open_lake(lake)
    return [opened.uri(f.path) for f in live_files(opened, table)]


def run(sql: str, *, lake: str | Lake | None = None, params: Mapping[str, str] | None = None) -> duckdb.DuckDBPyRelation:
    """Run `sql` over the views of the tables it names; `$name` placeholders are bound from
    `params`."""
    con = connect(lake, tables=tables_named(sql))
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


def _print_files(lake: str | None, table: str, fmt: str, out=sys.stdout) -> None:
    opened = open_lake(lake)
    for f in live_files(opened, table):
        uri = opened.uri(f.path)
        if fmt == "json":
            out.write(json.dumps({"uri": uri, "table": table, "log": f.slug, "date": f.day and f.day.isoformat(),
                                  "size": f.size}) + "\n")
        else:
            out.write(uri + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctlib.query", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("sql", nargs="?", help="SQL to run (or --file)")
    parser.add_argument("--file", type=Path, help="a .sql file to run")
    parser.add_argument("--files", metavar="TABLE", choices=list(layout.SCHEMAS),
                        help="print the URIs of TABLE's live files, one a line (json: with log, date, size), "
                             "for readers outside ctlib: read exactly these to see each entry once")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--lake", help="lake root: a path or s3://bucket/prefix (default CT_LAKE)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="bind $NAME in the SQL (repeatable)")
    args = parser.parse_args(argv)
    if sum(map(bool, (args.sql, args.file, args.files))) != 1:
        parser.error("give SQL, --file or --files (one of them)")
    try:
        if args.files:
            _print_files(args.lake, args.files, args.format)
            return 0
        sql = args.file.read_text() if args.file else args.sql
        params = dict(item.split("=", 1) for item in args.param)
        relation = run(sql, lake=args.lake, params=params)
    except (LakeError, ManifestError) as err:
        print(f"cannot read the lake: {err}", file=sys.stderr)
        return 2
    except duckdb.Error as err:
        print(f"query failed: {err}", file=sys.stderr)
        return 1
    if relation is not None:
        _print(relation, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
