"""ctlib.lake.compaction on a real lake of many small range files over several days, on a local
folder and on a local S3 server (`lake_location`): readers following the manifest (live files,
DuckDB over ctlib.lake.reading) see the same rows, every column, each once, before, during and
after; one sorted merged file per closed partition; idempotent; deletion deferred by GRACE;
a crash after every step readable and finished by the next run; backfills into compacted
days merged."""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import ctlib.lake.compaction as compaction
from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.lake import layout
from ctlib.lake.compaction import (
    GRACE,
    STEPS,
    absorbed_by,
    compact_log,
    compact_partition,
    compaction_horizon,
    latest_committed_day,
)
from ctlib.lake.files import Lake, write_json, write_range
from ctlib.lake.layout import ERRORS_SCHEMA, merged_file_name, range_file_name, window_file_name
from ctlib.lake.manifest import ManifestError, live_files, read_manifest
from ctlib.lake.reading import dataset, register
from ctlib.testing.certs import CertFactory

SLUG = "local_compact_log"
DAY0 = date(2026, 1, 1)
DAYS = 5
TODAY = date(2026, 2, 1)
ENTRIES = 600
SIZES = (7, 23, 11, 40, 3, 19, 31, 13, 29, 17)  # range lengths, cycled: ragged like real runs
ERROR_EVERY = 37  # every 37th entry is undecodable: errors/ gets files too
TABLES = ("certs", "errors")


class Crash(BaseException):
    """A simulated crash: not an Exception, so no cleanup handler runs (as with a kill -9)."""


@pytest.fixture(scope="module")
def sample_certs() -> pa.Table:
    """Real decoded certificate rows to clone (cert generation is the slow part)."""
    factory = CertFactory(seed=11)
    entries = [RawEntry(i, e.leaf_input, e.extra_data)
               for i, e in enumerate(factory.next_entry(1_767_225_600_000 + i) for i in range(48))]
    batch = decode_entries(LogRef("bG9n", SLUG), entries, datetime(2026, 1, 6, tzinfo=UTC))
    assert batch.errors.num_rows == 0
    return batch.certs


def _timestamp_of(index: int) -> datetime:
    # Entries spread evenly over DAYS days, so ranges straddle midnight now and then.
    return datetime.combine(DAY0, datetime.min.time(), UTC) + timedelta(seconds=index * DAYS * 86400 / ENTRIES)


def _certs(sample: pa.Table, indexes: list[int], at: datetime | None = None, slug: str = SLUG,
           leaf_hash: str | None = None) -> pa.Table:
    """Rows of CERTS_SCHEMA for `indexes` (cloned real certificates), timestamped like the
    log's entries, or all at `at` (late entries); `leaf_hash` replaces every row's."""
    table = sample.take([i % sample.num_rows for i in indexes])
    for name, values, type_ in (
        ("log_slug", [slug] * len(indexes), pa.string()),
        ("index", indexes, pa.int64()),
        ("leaf_hash", [leaf_hash or f"{i:064x}" for i in indexes], pa.string()),
        ("timestamp", [at or _timestamp_of(i) for i in indexes], pa.timestamp("ms", tz="UTC")),
    ):
        table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), pa.array(values, type_))
    return table


def _errors(indexes: list[int], slug: str = SLUG) -> pa.Table:
    ingested = datetime(2026, 1, 6, tzinfo=UTC)
    return pa.Table.from_pylist([
        {"log_id": "bG9n", "log_slug": slug, "index": i, "timestamp": _timestamp_of(i),
         "reason": f"{SLUG} index {i}: malformed entry", "leaf_input_b64": f"AAA{i}",
         "extra_data_b64": "", "ingested_at": ingested}
        for i in indexes
    ], schema=ERRORS_SCHEMA)


def write_ranges(lake: Lake, sample: pa.Table, start: int, end: int, slug: str = SLUG) -> list[tuple[int, int]]:
    """Ingest-like writes of [start, end): ragged ranges, one file per range and day."""
    ranges, s, k = [], start, 0
    while s < end:
        e = min(end, s + SIZES[k % len(SIZES)])
        indexes = list(range(s, e))
        write_range(lake, "certs", slug, s, e, _certs(sample, [i for i in indexes if i % ERROR_EVERY], slug=slug))
        write_range(lake, "errors", slug, s, e, _errors([i for i in indexes if not i % ERROR_EVERY], slug))
        ranges.append((s, e))
        s, k = e, k + 1
    return ranges


@pytest.fixture(scope="module")
def pristine_lake(tmp_path_factory, sample_certs) -> Path:
    root = tmp_path_factory.mktemp("pristine") / "lake"
    write_ranges(Lake.open(str(root)), sample_certs, 0, ENTRIES)
    return root


@pytest.fixture
def lake(lake_location, pristine_lake) -> Lake:
    """A fresh copy of the lake for each test, in a local folder (files keep their mtimes) or
    in a fresh bucket of the local S3 server."""
    if "://" not in lake_location:
        shutil.copytree(pristine_lake, lake_location)
        return Lake.open(lake_location)
    opened = Lake.open(lake_location)
    pafs.copy_files(str(pristine_lake), opened.root, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=opened.filesystem)
    return opened


def rows(lake: Lake, table: str) -> pa.Table:
    """Every row of a table as a reader following the manifest sees it, every column (DuckDB
    over the live files)."""
    con = duckdb.connect()
    register(con, "t", lake, table, live_files(lake, table))
    return con.sql("select * from t").to_arrow_table()


def same_multiset(a: pa.Table, b: pa.Table) -> bool:
    con = duckdb.connect()
    con.register("a", a)
    con.register("b", b)
    missing = con.sql("select count(*) from (select * from a except all select * from b)").fetchall()[0][0]
    extra = con.sql("select count(*) from (select * from b except all select * from a)").fetchall()[0][0]
    return a.num_rows == b.num_rows and missing == 0 and extra == 0


def directory(lake: Lake, table: str, day: date, slug: str = SLUG) -> str:
    return layout.partition_dir(lake.root, table, slug, day)


def files_of(lake: Lake, table: str, day: date) -> list[str]:
    """Every file of a partition (data, manifest, hidden), by name."""
    selector = pafs.FileSelector(directory(lake, table, day), allow_not_found=True)
    return sorted(i.base_name for i in lake.filesystem.get_file_info(selector) if i.type == pafs.FileType.File)


def live_of(lake: Lake, table: str, day: date) -> list[str]:
    return [f.name for f in live_files(lake, table, slug=SLUG, days=[day])]


def snapshot(lake: Lake) -> dict[str, tuple[int, object]]:
    infos = lake.filesystem.get_file_info(pafs.FileSelector(lake.root, recursive=True))
    return {i.path: (i.size, i.mtime) for i in infos if i.type == pafs.FileType.File}


def run(lake: Lake, slug: str = SLUG, **kwargs) -> compaction.LogCompaction:
    args = {"first_index": 0, "next_index": ENTRIES, "mmd_seconds": 0, "today": TODAY} | kwargs
    return compact_log(lake, slug, **args)


CLOSED = [DAY0 + timedelta(days=d) for d in range(DAYS - 1)]  # mmd 0: all but the newest day
NEWEST = DAY0 + timedelta(days=DAYS - 1)


# --------------------------------------------------------------------------- merging


def test_each_closed_partition_becomes_one_sorted_merged_file_with_the_same_rows(lake):
    before = {t: rows(lake, t) for t in TABLES}
    originals = {(t, d): files_of(lake, t, d) for t in TABLES for d in CLOSED}
    newest_before = files_of(lake, "certs", NEWEST)
    assert all(len(files_of(lake, "certs", d)) >= 5 for d in CLOSED), "many small files to start with"

    report = run(lake)

    assert report.horizon == NEWEST and report.deleted == 0
    assert report.count("compacted") == 2 * len(CLOSED) and report.count("skipped") == 0
    for table in TABLES:
        assert same_multiset(before[table], rows(lake, table)), f"{table}: same rows, every column"
        for day in CLOSED:
            (name,) = live_of(lake, table, day)
            first, end, generation = layout.parse_merged(name)
            spans = [layout.parse_range(n) for n in originals[table, day]]
            assert (first, end, generation) == (spans[0][0], max(e for _, e in spans), 1)
            with lake.filesystem.open_input_file(f"{directory(lake, table, day)}/{name}") as source:
                index = pq.read_table(source, columns=["index"])["index"].to_pylist()
            assert index == sorted(set(index)), "sorted by index, each once"
            assert first <= index[0] and index[-1] < end
            manifest = read_manifest(lake, directory(lake, table, day))
            assert manifest.file == name and manifest.rows == len(index) and manifest.generation == 1
            assert manifest.absorbed == set(originals[table, day])
            # Deletion is deferred: the absorbed files are still there, only hidden.
            assert files_of(lake, table, day) == sorted([*originals[table, day], name, layout.MANIFEST])
    assert files_of(lake, "certs", NEWEST) == newest_before, "the open day is left alone"
    assert read_manifest(lake, directory(lake, "certs", NEWEST)) is None


def test_a_merge_streams_in_index_windows_with_bounded_row_groups(lake, sample_certs, monkeypatch):
    """A day is merged MERGE_WINDOW indexes at a time (a busy log's day does not fit in
    memory): with tiny windows and row groups, windows cutting through files and row groups,
    and a repeated backfill straddling a window edge, every row is still there once."""
    monkeypatch.setattr(compaction, "MERGE_WINDOW", 16)
    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 10)
    before = rows(lake, "certs")
    run(lake)
    # Generation 2 merges generation 1 (row groups of 10) with a copy of indexes 30..49, written
    # again as a backfill would (same leaves), across the window edge at 32 and 48.
    day_rows = dataset(lake, "certs", live_files(lake, "certs", slug=SLUG, days=[DAY0])).to_table()
    again = day_rows.filter(pc.and_(pc.greater_equal(day_rows["index"], 30), pc.less(day_rows["index"], 50)))
    assert again.num_rows == 19  # index 37 is an undecodable entry (errors/)
    write_range(lake, "certs", SLUG, 30, 50, again.select(layout.CERTS_SCHEMA.names).cast(layout.CERTS_SCHEMA))
    later = run(lake, now=datetime.now(UTC) + compaction.BACKFILL_QUIET + timedelta(minutes=1))
    (merged,) = [p for p in later.partitions if (p.table, p.day) == ("certs", DAY0)]
    assert (merged.outcome, merged.generation, merged.duplicates) == ("compacted", 2, 19)
    assert same_multiset(before, rows(lake, "certs"))
    (name,) = live_of(lake, "certs", DAY0)
    with lake.filesystem.open_input_file(f"{directory(lake, 'certs', DAY0)}/{name}") as source:
        meta = pq.read_metadata(source)
    assert max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) == 10


def test_the_merged_file_records_what_it_absorbed(lake):
    originals = files_of(lake, "certs", DAY0)
    run(lake)
    (name,) = live_of(lake, "certs", DAY0)
    assert absorbed_by(lake, f"{directory(lake, 'certs', DAY0)}/{name}") == set(originals)
    assert absorbed_by(lake, f"{directory(lake, 'certs', DAY0)}/{originals[0]}") == set(), "not a merged file"


def test_a_second_run_changes_nothing(lake):
    run(lake)
    files = snapshot(lake)
    again = run(lake)
    assert again.count("compacted") == 0 and again.count("skipped") == 0 and again.deleted == 0
    assert again.count("unchanged") == 2 * len(CLOSED)
    assert snapshot(lake) == files


def test_superseded_files_are_deleted_only_after_the_grace_period(lake):
    before = {t: rows(lake, t) for t in TABLES}
    originals = {(t, d): files_of(lake, t, d) for t in TABLES for d in [*CLOSED, NEWEST]}
    t0 = datetime.now(UTC)
    run(lake, now=t0)
    merged = {(t, d): live_of(lake, t, d) for t in TABLES for d in CLOSED}

    early = run(lake, now=t0 + GRACE - timedelta(minutes=1))
    assert early.deleted == 0 and early.count("compacted") == 0
    assert all(set(originals[t, d]) < set(files_of(lake, t, d)) for t in TABLES for d in CLOSED)

    late = run(lake, now=t0 + GRACE + timedelta(minutes=1))
    assert late.deleted == sum(len(originals[t, d]) for t in TABLES for d in CLOSED)
    for table in TABLES:
        for day in CLOSED:
            assert files_of(lake, table, day) == sorted([*merged[table, day], layout.MANIFEST])
        assert files_of(lake, table, NEWEST) == originals[table, NEWEST], "the open day is left alone"
        assert same_multiset(before[table], rows(lake, table))
    assert run(lake, now=t0 + 2 * GRACE).deleted == 0


def test_late_file_is_merged_into_the_next_generation(lake, sample_certs):
    first_merge = run(lake)
    (gen1,) = live_of(lake, "certs", DAY0)
    # An honest log never does this (MMD); a log that does gets its late entries merged too.
    late = _certs(sample_certs, [600, 601, 602], at=_timestamp_of(1))
    write_range(lake, "certs", SLUG, 600, 603, late)
    assert live_of(lake, "certs", DAY0) == [gen1, range_file_name(600, 603)], "live beside the merged file"
    before = rows(lake, "certs")
    report = run(lake, next_index=603)
    assert [(p.table, p.day) for p in report.partitions if p.outcome == "compacted"] == [("certs", DAY0)]
    (gen2,) = live_of(lake, "certs", DAY0)
    assert layout.parse_merged(gen2) == (layout.parse_merged(gen1)[0], 603, 2)
    manifest = read_manifest(lake, directory(lake, "certs", DAY0))
    assert [p.file for p in first_merge.partitions if (p.table, p.day) == ("certs", DAY0)] == [gen1]
    assert range_file_name(600, 603) in manifest.absorbed and gen1 not in manifest.absorbed
    assert len(manifest.absorbed) > 3
    assert same_multiset(before, rows(lake, "certs"))
    # The next sweep after GRACE deletes generation 1 and everything absorbed.
    run(lake, next_index=603, now=datetime.now(UTC) + GRACE + timedelta(minutes=1))
    assert files_of(lake, "certs", DAY0) == [gen2, layout.MANIFEST]


# --------------------------------------------------------------------------- which days, which files


def test_horizon_keeps_days_that_may_still_receive_entries():
    assert compaction_horizon(None, 86400, TODAY) is None, "nothing committed: nothing closed"
    assert compaction_horizon(date(2026, 1, 10), 0, TODAY) == date(2026, 1, 10)
    assert compaction_horizon(date(2026, 1, 10), 60, TODAY) == date(2026, 1, 9)
    assert compaction_horizon(date(2026, 1, 10), 86400, TODAY) == date(2026, 1, 9)
    assert compaction_horizon(date(2026, 1, 10), 86401, TODAY) == date(2026, 1, 8)
    assert compaction_horizon(date(2026, 3, 1), 0, TODAY) == TODAY, "never today or later"


def test_latest_committed_day_ignores_uncommitted_and_backfilled_files(lake):
    assert latest_committed_day(lake, SLUG, 0, ENTRIES) == NEWEST
    assert latest_committed_day(lake, SLUG, 0, 200) == DAY0 + timedelta(days=1)
    assert latest_committed_day(lake, SLUG, 0, 0) is None, "nothing committed"
    assert latest_committed_day(lake, SLUG, ENTRIES, ENTRIES) is None, "backfilled history does not count"
    run(lake)
    assert latest_committed_day(lake, SLUG, 0, 200) == DAY0 + timedelta(days=1), "merged files count too"


def test_default_mmd_leaves_two_days_open(lake):
    report = run(lake, mmd_seconds=86400)
    assert report.horizon == NEWEST - timedelta(days=1)
    assert sorted({p.day for p in report.partitions}) == CLOSED[:-1]


def test_days_back_restricts_to_recent_days(lake):
    report = run(lake, today=NEWEST + timedelta(days=1), days_back=3)
    assert sorted({p.day for p in report.partitions}) == [NEWEST - timedelta(days=2), NEWEST - timedelta(days=1)]


def test_partitions_that_cannot_be_merged_safely_are_skipped_untouched(lake, sample_certs):
    day1, day2 = DAY0 + timedelta(days=1), DAY0 + timedelta(days=2)
    files = snapshot(lake)

    uncommitted = compact_partition(lake, "certs", SLUG, day1, first_index=0, next_index=150)
    assert uncommitted.outcome == "skipped" and "not committed" in uncommitted.detail

    fresh = compact_partition(lake, "certs", SLUG, day1, first_index=ENTRIES, next_index=ENTRIES + 10)
    assert fresh.outcome == "skipped" and "backfill" in fresh.detail

    foreign = f"{directory(lake, 'certs', day2)}/notes.parquet"
    with lake.filesystem.open_output_stream(foreign) as out:
        pq.write_table(pa.table({"x": [1]}), out)
    odd = compact_partition(lake, "certs", SLUG, day2, first_index=0, next_index=ENTRIES)
    assert odd.outcome == "skipped" and "not a range file" in odd.detail
    lake.filesystem.delete_file(foreign)

    assert snapshot(lake) == files, "nothing written, nothing deleted"
    assert all(read_manifest(lake, directory(lake, t, d)) is None for t in TABLES for d in CLOSED)

    # A range file holding an index outside its name's range is never merged.
    write_range(lake, "certs", SLUG, 0, 5, _certs(sample_certs, [2, 7], at=_timestamp_of(300)))
    outside = compact_partition(lake, "certs", SLUG, day2, first_index=0, next_index=ENTRIES)
    assert outside.outcome == "skipped"
    assert f"{range_file_name(0, 5)} holds index 2..7, outside its range" in outside.detail

    later = datetime.now(UTC) + compaction.BACKFILL_QUIET + timedelta(minutes=1)
    quiet = compact_partition(lake, "certs", SLUG, DAY0, first_index=ENTRIES, next_index=ENTRIES + 10, now=later)
    assert quiet.outcome == "compacted", "backfilled history is merged once it is quiet"


def test_an_unreadable_manifest_skips_its_partition_and_deletes_nothing(lake):
    t0 = datetime.now(UTC)
    run(lake, now=t0)
    write_json(lake, f"{directory(lake, 'certs', DAY0)}/{layout.MANIFEST}", {"format": 1, "generation": 1})
    files = files_of(lake, "certs", DAY0)
    report = run(lake, now=t0 + GRACE + timedelta(minutes=1))
    (bad,) = [p for p in report.partitions if p.outcome == "skipped"]
    assert (bad.table, bad.day) == ("certs", DAY0) and "_manifest.json" in bad.detail
    assert files_of(lake, "certs", DAY0) == files, "nothing deleted on a manifest that cannot be trusted"
    assert report.deleted > 0, "the other partitions were swept"


# --------------------------------------------------------------------------- concurrency


def test_a_reader_following_the_manifest_always_counts_every_row_once(lake, sample_certs):
    """A reader thread counts rows and distinct indexes through the live files while three
    logs are compacted (24 manifests), then while the superseded files are deleted."""
    slugs = [SLUG, "local_compact_log_2", "local_compact_log_3"]
    for slug in slugs[1:]:
        write_ranges(lake, sample_certs, 0, ENTRIES, slug)
    expected = tuple(rows(lake, t).num_rows for t in TABLES)
    seen: list[tuple[int, ...]] = []
    retries: list[str] = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            try:
                counts = []
                for table in TABLES:
                    index = dataset(lake, table, live_files(lake, table)).to_table(columns=["index", "log"])
                    distinct = pc.count_distinct(pc.binary_join_element_wise(
                        pc.cast(index["index"], pa.string()), index["log"], "@")).as_py()
                    assert distinct == index.num_rows, f"{table}: a row twice"
                    counts.append(index.num_rows)
            except FileNotFoundError as err:  # chose a file that was deleted before it was read
                retries.append(f"FileNotFoundError: {err}")
                continue
            except ManifestError as err:  # listed before a merged file's write, read its manifest after it
                retries.append(f"ManifestError: {err}")
                continue
            seen.append(tuple(counts))

    def reads_after(count: int) -> None:
        """Wait until the reader has started and finished reads after `count` reads."""
        target = count + 2
        while len(seen) + len(retries) < target:
            done.wait(0.01)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        reads_after(0)
        reports = [run(lake, slug) for slug in slugs]  # 3 logs x 4 days x 2 tables = 24 manifests
        compacting = len(seen)
        # Readers that listed before the last manifest are done: as if GRACE had passed.
        reads_after(len(seen) + len(retries))
        later = datetime.now(UTC) + GRACE + timedelta(minutes=1)
        swept = [run(lake, slug, now=later) for slug in slugs]
        reads_after(len(seen) + len(retries))
    finally:
        done.set()
        thread.join()
    assert sum(r.count("compacted") for r in reports) == 24
    assert sum(r.deleted for r in swept) > 24
    assert compacting >= 3 and len(seen) >= 6, "the reader ran throughout"
    assert set(seen) == {expected}, f"counts seen: {set(seen)}"
    assert not [r for r in retries if r.startswith("FileNotFoundError")], retries[:3]
    print(f"{len(seen)} exact reads, {len(retries)} retried: {retries[:2]}")


def test_a_file_written_into_the_partition_during_a_merge_stays_live_and_is_merged_next(lake, sample_certs,
                                                                                      monkeypatch):
    """A writer (a log breaking its MMD) adds a file between the merge's listing and its
    manifest: not absorbed, so live beside the merged file; the next run merges it."""
    def writer_sneaks_in(step):
        if step == "merged" and not sneaked:
            late = _certs(sample_certs, [700, 701], at=_timestamp_of(0))
            sneaked.extend(write_range(lake, "certs", SLUG, 700, 702, late))

    sneaked: list[str] = []
    before = rows(lake, "certs")
    monkeypatch.setattr(compaction, "_reached", writer_sneaks_in)
    result = compact_partition(lake, "certs", SLUG, DAY0, first_index=0, next_index=ENTRIES)
    monkeypatch.setattr(compaction, "_reached", lambda step: None)
    assert result.outcome == "compacted" and sneaked
    assert live_of(lake, "certs", DAY0) == [result.file, range_file_name(700, 702)]
    assert range_file_name(700, 702) not in read_manifest(lake, directory(lake, "certs", DAY0)).absorbed
    after = rows(lake, "certs")
    assert after.num_rows == before.num_rows + 2
    assert same_multiset(before, after.filter(pc.less(after["index"], 700)))
    again = compact_partition(lake, "certs", SLUG, DAY0, first_index=0, next_index=702)
    assert again.outcome == "compacted" and again.generation == 2
    assert same_multiset(after, rows(lake, "certs"))


# --------------------------------------------------------------------------- crashes


@contextlib.contextmanager
def crashing_at(step: str, nth: int = 1) -> Iterator[None]:
    """Run the body with compaction crashing at the `nth` time it reaches `step`; expects the
    crash. (Its own patch scope: the test's monkeypatch holds the S3 variables.)"""
    reached = []

    def crash(at):
        if at == step:
            reached.append(at)
            if len(reached) == nth:
                raise Crash(at)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(Crash):
        patch.setattr(compaction, "_reached", crash)
        yield


def _assert_each_row_once(lake: Lake, before: dict[str, pa.Table], when: str) -> None:
    for table, expected in before.items():
        assert same_multiset(expected, rows(lake, table)), f"{table} {when}"


@pytest.mark.parametrize("step", [s for s in STEPS if s != "deleted"])  # "merged", "manifest"
def test_crash_after_a_step_of_a_merge_and_the_next_run_finishes(step, lake):
    before = {t: rows(lake, t) for t in TABLES}
    originals = files_of(lake, "certs", DAY0)
    with crashing_at(step):
        run(lake)
    _assert_each_row_once(lake, before, f"after a crash at {step!r}")
    (written,) = [n for n in files_of(lake, "certs", DAY0) if layout.parse_merged(n)]
    if step == "merged":  # the merged file is there, not live: the old files are
        assert live_of(lake, "certs", DAY0) == originals
        assert read_manifest(lake, directory(lake, "certs", DAY0)) is None
    else:
        assert live_of(lake, "certs", DAY0) == [written]
    assert all(read_manifest(lake, directory(lake, t, d)) is None
               for t in TABLES for d in CLOSED if (t, d) != ("certs", DAY0)), "stopped at the first partition"

    report = run(lake)
    assert report.count("compacted") == 2 * len(CLOSED) - (step == "manifest")
    _assert_each_row_once(lake, before, "after the next run")
    assert live_of(lake, "certs", DAY0) == [written], "the same merged file (name): written again or kept"
    assert read_manifest(lake, directory(lake, "certs", DAY0)).generation == 1
    assert all(len(live_of(lake, t, d)) == 1 for t in TABLES for d in CLOSED)


def test_crash_in_the_middle_of_the_deferred_deletion(lake):
    before = {t: rows(lake, t) for t in TABLES}
    t0 = datetime.now(UTC)
    run(lake, now=t0)
    merged = {(t, d): live_of(lake, t, d) for t in TABLES for d in CLOSED}
    with crashing_at("deleted", nth=3):
        run(lake, now=t0 + GRACE + timedelta(minutes=1))
    _assert_each_row_once(lake, before, "after a crash mid-deletion")
    assert len(files_of(lake, "certs", DAY0)) > 2, "stopped before the end of the sweep"

    report = run(lake, now=t0 + GRACE + timedelta(minutes=2))
    assert report.deleted > 0 and report.count("compacted") == 0
    _assert_each_row_once(lake, before, "after the next run")
    assert all(files_of(lake, t, d) == sorted([*merged[t, d], layout.MANIFEST]) for t in TABLES for d in CLOSED)


def test_a_merged_file_left_by_a_crash_is_deleted_once_a_newer_manifest_exists(lake, sample_certs):
    before = rows(lake, "certs")
    with crashing_at("merged"):
        run(lake)
    (orphan,) = [n for n in files_of(lake, "certs", DAY0) if layout.parse_merged(n)]
    # Meanwhile a late file comes: the next merge covers more, under another name.
    write_range(lake, "certs", SLUG, 600, 603, _certs(sample_certs, [600, 601, 602], at=_timestamp_of(1)))
    t0 = datetime.now(UTC)
    run(lake, next_index=603, now=t0)
    (live,) = live_of(lake, "certs", DAY0)
    assert live != orphan and orphan in files_of(lake, "certs", DAY0)
    assert rows(lake, "certs").num_rows == before.num_rows + 3
    run(lake, next_index=603, now=t0 + GRACE + timedelta(minutes=1))
    assert files_of(lake, "certs", DAY0) == [live, layout.MANIFEST]


# --------------------------------------------------------------------------- backfills into compacted days


FIRST = 41  # ingest started here: ranges [0, 7), [7, 30), [30, 41) come by backfill later


def test_a_backfill_into_a_compacted_day_is_live_at_once_and_merged_into_the_next_generation(lake, sample_certs):
    """(a) New entries below first_index written into a compacted partition."""
    everything = {t: rows(lake, t) for t in TABLES}
    for table in TABLES:
        for name in files_of(lake, table, DAY0):
            if layout.parse_range(name)[1] <= FIRST:
                lake.filesystem.delete_file(f"{directory(lake, table, DAY0)}/{name}")
    run(lake, first_index=FIRST)
    (gen1,) = live_of(lake, "certs", DAY0)
    assert layout.parse_merged(gen1) == (FIRST, layout.parse_merged(gen1)[1], 1)

    write_ranges(lake, sample_certs, 0, FIRST)  # the backfill
    backfilled = [range_file_name(0, 7), range_file_name(7, 30), range_file_name(30, 41)]
    assert live_of(lake, "certs", DAY0) == [*backfilled, gen1], "live beside the merged file"
    _assert_each_row_once(lake, everything, "right after the backfill")

    young = run(lake, first_index=FIRST)
    assert {(p.table, p.day): p.outcome for p in young.partitions}[("certs", DAY0)] == "skipped"
    assert "younger than" in next(p.detail for p in young.partitions if p.day == DAY0)

    t0 = datetime.now(UTC) + compaction.BACKFILL_QUIET + timedelta(minutes=1)
    quiet = run(lake, first_index=FIRST, now=t0)
    assert sorted((p.table, p.day, p.generation) for p in quiet.partitions if p.outcome == "compacted") == [
        ("certs", DAY0, 2), ("errors", DAY0, 2)]
    (gen2,) = live_of(lake, "certs", DAY0)
    assert layout.parse_merged(gen2) == (0, layout.parse_merged(gen1)[1], 2)
    assert set(backfilled) <= read_manifest(lake, directory(lake, "certs", DAY0)).absorbed
    _assert_each_row_once(lake, everything, "after the merge")
    run(lake, first_index=FIRST, now=t0 + GRACE + timedelta(minutes=1))
    assert files_of(lake, "certs", DAY0) == [gen2, layout.MANIFEST]
    _assert_each_row_once(lake, everything, "after the sweep")


def test_a_repeated_backfill_of_what_a_compacted_day_holds_stays_once(lake, sample_certs):
    """(b) A backfill writing again rows the merged file holds: under an absorbed name it is
    hidden and swept; under a new name (a window of another backfill) the merge keeps each
    index once and says so."""
    before = {t: rows(lake, t) for t in TABLES}
    t0 = datetime.now(UTC)
    run(lake, now=t0)
    (gen1,) = live_of(lake, "certs", DAY0)
    absorbed = sorted(read_manifest(lake, directory(lake, "certs", DAY0)).absorbed)
    start, end = layout.parse_range(absorbed[1])
    write_range(lake, "certs", SLUG, start, end,
                _certs(sample_certs, [i for i in range(start, end) if i % ERROR_EVERY]))
    assert live_of(lake, "certs", DAY0) == [gen1], "an absorbed name stays hidden"
    _assert_each_row_once(lake, before, "after rewriting an absorbed file")
    again = run(lake, now=t0)
    assert again.count("compacted") == 0

    window = window_file_name(3, 15, 10, 20)
    write_range(lake, "certs", SLUG, 0, 0, _certs(sample_certs, [3, 5, 14], at=_timestamp_of(3)), window=(10, 20))
    assert live_of(lake, "certs", DAY0) == [gen1, window]
    assert rows(lake, "certs").num_rows == before["certs"].num_rows + 3, "a plain reader of live files sees them"
    merged = run(lake, now=t0)
    (result,) = [p for p in merged.partitions if p.outcome == "compacted"]
    assert (result.table, result.day, result.generation, result.duplicates) == ("certs", DAY0, 2, 3)
    _assert_each_row_once(lake, before, "after merging the repeated rows")

    run(lake, now=t0 + GRACE + timedelta(minutes=1))
    assert files_of(lake, "certs", DAY0) == [result.file, layout.MANIFEST], "rewritten and repeated files swept"
    _assert_each_row_once(lake, before, "after the sweep")


def test_one_index_with_two_different_entries_is_skipped_naming_it(lake, sample_certs):
    """(c) The same index with another leaf_hash: never merged, the reason names it."""
    run(lake)
    manifest = read_manifest(lake, directory(lake, "certs", DAY0))
    write_range(lake, "certs", SLUG, 5, 6, _certs(sample_certs, [5], leaf_hash="f" * 64))
    files = snapshot(lake)
    report = run(lake)
    (skipped,) = [p for p in report.partitions if p.outcome == "skipped"]
    assert (skipped.table, skipped.day) == ("certs", DAY0)
    assert f"certs/log={SLUG}/date={DAY0}: index 5 is in" in skipped.detail and "leaf_hash" in skipped.detail
    assert manifest.file in skipped.detail and range_file_name(5, 6) in skipped.detail
    assert snapshot(lake) == files and read_manifest(lake, directory(lake, "certs", DAY0)) == manifest


def test_interleaved_backfill_windows_below_first_index_merge(lake_location, sample_certs):
    # Two time windows of a disordered log: each file is named by the indexes its rows span,
    # and the spans overlap where entries are out of order across the windows' edge.
    lake = Lake.open(lake_location)
    early, late = [*range(100, 140), 142, 145], [140, 141, 143, 144, *range(146, 190)]
    at = datetime.combine(DAY0, datetime.min.time(), UTC) + timedelta(hours=3)
    for indexes, window in ((early, (1, 2)), (late, (2, 3))):
        write_range(lake, "certs", SLUG, 0, 0, _certs(sample_certs, indexes, at=at), window=window)
    assert files_of(lake, "certs", DAY0) == [window_file_name(100, 146, 1, 2), window_file_name(140, 190, 2, 3)]
    later = datetime.now(UTC) + compaction.BACKFILL_QUIET + timedelta(minutes=1)
    merged = compact_partition(lake, "certs", SLUG, DAY0, first_index=1000, next_index=1000, now=later)
    assert merged.outcome == "compacted" and merged.duplicates == 0, merged.detail
    assert live_of(lake, "certs", DAY0) == [merged_file_name(100, 190, 1)]
    assert sorted(rows(lake, "certs").column("index").to_pylist()) == list(range(100, 190))

    # A window written again around the edge (same entries) and one more entry: merged, once.
    write_range(lake, "certs", SLUG, 0, 0, _certs(sample_certs, [150, 191], at=at), window=(4, 5))
    again = compact_partition(lake, "certs", SLUG, DAY0, first_index=1000, next_index=1000, now=later)
    assert again.outcome == "compacted" and again.duplicates == 1
    assert sorted(rows(lake, "certs").column("index").to_pylist()) == [*range(100, 190), 191]
