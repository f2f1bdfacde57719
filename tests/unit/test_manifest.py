"""The compaction manifest's rule (ctlib.lake.manifest): which files a reader reads, on a
local lake and on a local S3 server alike."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file, write_json
from ctlib.lake.manifest import (
    Manifest,
    ManifestError,
    live_files,
    live_names,
    read_manifest,
    superseded_names,
    write_manifest,
)

R1, R2, R3 = layout.range_file_name(0, 100), layout.range_file_name(100, 200), layout.range_file_name(200, 300)
M1, M2 = layout.merged_file_name(0, 200, 1), layout.merged_file_name(0, 300, 2)
DAY = date(2026, 11, 30)


def manifest(file: str, *absorbed: str, generation: int = 1) -> Manifest:
    return Manifest(generation=generation, file=file, rows=10, first=0, end=300, absorbed=frozenset(absorbed))


def test_without_a_manifest_every_range_file_is_live_and_no_merged_file():
    names = [R1, R2, M1, f".{R3}.host-1.abc.tmp", layout.MANIFEST + ".tmp", "_other.parquet"]
    assert live_names(names, None) == [R1, R2]
    assert superseded_names(names, None) == []


def test_a_manifest_shows_its_merged_file_instead_of_what_it_absorbed():
    names = [R1, R2, R3, M1, M2]
    current = manifest(M1, R1, R2)
    assert live_names(names, current) == [M1, R3]  # R3: written after the merge (a backfill), live beside it
    assert superseded_names(names, current) == sorted([R1, R2, M2])  # M2: a merge whose manifest never came


def test_each_row_once_whichever_side_of_the_manifest_a_reader_lands():
    """Rows per file; before the manifest, after it, and after the deletion of what it
    absorbed, the live files hold every row exactly once."""
    rows = {R1: {1, 2}, R2: {150}, R3: {250}, M1: {1, 2, 150}, M2: {1, 2, 150, 250}}

    def seen(names, current):
        out = []
        for name in live_names(names, current):
            out += sorted(rows[name])
        return sorted(out)

    everything = [1, 2, 150, 250]
    assert seen([R1, R2, R3], None) == everything
    assert seen([R1, R2, R3, M1], None) == everything  # merged, manifest not written yet
    assert seen([R1, R2, R3, M1], manifest(M1, R1, R2)) == everything
    assert seen([R3, M1], manifest(M1, R1, R2)) == everything  # absorbed files deleted
    assert seen([R3, M1, M2], manifest(M1, R1, R2)) == everything  # next generation written
    assert seen([R3, M1, M2], manifest(M2, R1, R2, R3, generation=2)) == everything
    # A repeated backfill rewrites R1 (same rows): hidden behind the merged file.
    assert seen([R1, R3, M1], manifest(M1, R1, R2)) == everything


def test_manifest_round_trip_and_corruption_is_an_error(tmp_path):
    lake = Lake.open(str(tmp_path))
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    assert read_manifest(lake, directory) is None
    written = manifest(M1, R1, R2)
    write_manifest(lake, directory, written)
    assert read_manifest(lake, directory) == written
    write_json(lake, f"{directory}/{layout.MANIFEST}", {"format": 1, "generation": 1})
    with pytest.raises(ManifestError, match="_manifest.json"):
        read_manifest(lake, directory)


def _table(indexes):
    return pa.table({"index": pa.array(indexes, pa.int64())})


def test_live_files_follow_the_manifest_on_local_and_s3(lake_location):
    lake = Lake.open(lake_location)
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    other_day = layout.partition_dir(lake.root, layout.CERTS, "log-a", date(2026, 12, 1))
    other_log = layout.partition_dir(lake.root, layout.CERTS, "log-b", DAY)
    for name, rows in ((R1, [1, 2]), (R2, [150]), (R3, [250]), (M1, [1, 2, 150])):
        write_file(lake, directory, name, _table(rows))
    write_file(lake, other_day, R3, _table([299]))
    write_file(lake, other_log, R1, _table([5]))
    write_file(lake, layout.day_dir(lake.root, layout.HEALTH, DAY), "1.parquet", _table([0]))

    def names(**where):
        return [(f.slug, f.day, f.name) for f in live_files(lake, layout.CERTS, **where)]

    assert names(slug="log-a", days=[DAY]) == [("log-a", DAY, R1), ("log-a", DAY, R2), ("log-a", DAY, R3)]
    write_manifest(lake, directory, manifest(M1, R1, R2))
    assert names(slug="log-a", days=[DAY]) == [("log-a", DAY, M1), ("log-a", DAY, R3)]
    assert names(slug="log-a") == [("log-a", DAY, M1), ("log-a", DAY, R3), ("log-a", date(2026, 12, 1), R3)]
    assert len(names()) == 4  # log-b too
    assert [f.span for f in live_files(lake, layout.CERTS, slug="log-b")] == [(0, 100)]
    assert [(f.day, f.slug) for f in live_files(lake, layout.HEALTH)] == [(DAY, None)]
    assert live_files(lake, layout.ALERTS) == []  # no such directory yet

    lake.filesystem.delete_file(f"{directory}/{M1}")
    with pytest.raises(ManifestError, match="not there"):
        live_files(lake, layout.CERTS, slug="log-a")


def test_duckdb_counts_each_row_once_through_the_live_files(lake_location):
    """ctlib.lake.reading: DuckDB over a pyarrow dataset of the live files, with the `log` and
    `date` columns of the path, on a local lake and on S3 (no DuckDB extension involved)."""
    import duckdb

    from ctlib.lake.reading import register

    lake = Lake.open(lake_location)
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    for name, rows in ((R1, [1, 2]), (R2, [150]), (M1, [1, 2, 150])):
        write_file(lake, directory, name, _table(rows))
    con = duckdb.connect()

    def count():
        register(con, "certs", lake, layout.CERTS, live_files(lake, layout.CERTS))
        return con.execute('select count(*), count(distinct index), min(log), min("date") from certs').fetchall()[0]

    assert count() == (3, 3, "log-a", DAY)
    write_manifest(lake, directory, manifest(M1, R1, R2))
    assert count() == (3, 3, "log-a", DAY)
    register(con, "alerts", lake, layout.ALERTS, [])
    assert con.execute("select count(*) from alerts").fetchall() == [(0,)]
    assert "registered_domain" in [c[0] for c in con.execute("describe alerts").fetchall()]


def test_a_manifest_written_between_listing_and_reading_is_followed(tmp_path, monkeypatch):
    """A compaction that writes its merged file and manifest after a reader listed the
    partition and before it read the manifest: the reader lists again, each row once."""
    from ctlib.lake import manifest as module

    lake = Lake.open(str(tmp_path))
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    write_file(lake, directory, R1, _table([1]))
    write_manifest(lake, directory, manifest(layout.merged_file_name(0, 100, 1), R1))  # an older generation
    write_file(lake, directory, layout.merged_file_name(0, 100, 1), _table([1]))
    listed = module._listing(lake, layout.table_dir(lake.root, layout.CERTS))

    def stale_listing(lake_, base):  # what the reader saw before the compaction's two writes
        write_file(lake, directory, M1, _table([1]))
        write_manifest(lake, directory, manifest(M1, R1, generation=2))
        return listed

    monkeypatch.setattr(module, "_listing", stale_listing)
    assert [f.name for f in live_files(lake, layout.CERTS)] == [M1]


def test_partition_listing_lists_again_when_the_manifest_is_newer(tmp_path, monkeypatch):
    """The same race through `partition_listing` (what compaction and the monitor page use):
    the listing and the manifest come back consistent."""
    from ctlib.lake import manifest as module
    from ctlib.lake.manifest import partition_listing

    lake = Lake.open(str(tmp_path))
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    write_file(lake, directory, R1, _table([1]))
    write_manifest(lake, directory, manifest(layout.merged_file_name(0, 100, 1), R1))
    write_file(lake, directory, layout.merged_file_name(0, 100, 1), _table([1]))
    stale = module._list_partition(lake, directory)
    real = module._list_partition
    calls = []

    def listing(lake_, directory_):
        calls.append(directory_)
        if len(calls) == 1:  # the compaction's two writes land right after the first listing
            write_file(lake, directory, M1, _table([1]))
            write_manifest(lake, directory, manifest(M1, R1, generation=2))
            return stale
        return real(lake_, directory_)

    monkeypatch.setattr(module, "_list_partition", listing)
    files, current = partition_listing(lake, directory)
    assert current.file == M1 and M1 in files and len(calls) == 2
    assert live_names(files, current) == [M1]
