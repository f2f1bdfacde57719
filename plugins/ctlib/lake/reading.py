"""Reading the lake's live files (ctlib.lake.manifest) on any filesystem, a local disk or
an object store, through pyarrow datasets; DuckDB scans those (`register`), so no DuckDB
extension (httpfs) is ever downloaded.

`dataset(lake, table, files)`: one pyarrow dataset over `files` with the table's schema
(ctlib.lake.layout; a column a file lacks reads as null) plus the partition columns of the
path, `log` (string) and `date` (date32), as DuckDB's `hive_partitioning` gives them.
`register(con, name, lake, table, files)`: the same as a DuckDB view `name`; a table with no
file is an empty view with the same columns, so every query runs on an empty lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from ctlib.lake import layout
from ctlib.lake.files import Lake
from ctlib.lake.manifest import LiveFile

PARTITION_FIELDS = {
    **{table: [pa.field("log", pa.string()), pa.field("date", pa.date32())] for table in layout.LOG_TABLES},
    **{table: [pa.field("date", pa.date32())] for table in layout.DAY_TABLES},
}
"""The columns each table's paths give (`log=<slug>/date=<day>/`)."""


def schema_of(table: str) -> pa.Schema:
    """The table's columns and then its partition columns."""
    schema = layout.SCHEMAS[table]
    for extra in PARTITION_FIELDS.get(table, []):
        if extra.name not in schema.names:
            schema = schema.append(extra)
    return schema


def dataset(lake: Lake, table: str, files: Sequence[LiveFile | str]) -> ds.Dataset:
    """A dataset of `files` (live files, or paths on the lake's filesystem) of `table`."""
    paths = [f.path if isinstance(f, LiveFile) else f for f in files]
    schema = schema_of(table)
    if not paths:
        return ds.dataset(schema.empty_table())
    fields = PARTITION_FIELDS.get(table)
    partitioning = ds.partitioning(pa.schema(fields), flavor="hive") if fields else None
    return ds.dataset(paths, schema=schema, format="parquet", filesystem=lake.filesystem,
                      partitioning=partitioning, partition_base_dir=layout.table_dir(lake.root, table))


def register(con: Any, name: str, lake: Lake, table: str, files: Sequence[LiveFile | str]) -> None:
    """Make `name` a DuckDB view of `dataset(lake, table, files)` on the connection `con`."""
    con.register(name, dataset(lake, table, files))
