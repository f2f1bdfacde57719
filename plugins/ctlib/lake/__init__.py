"""The Parquet lake: its layout (tables, schemas, paths, globs; layout), atomic file writes
and the `Lake` handle (files), merging closed day partitions (compaction), and DuckDB views
for analysts (query)."""
