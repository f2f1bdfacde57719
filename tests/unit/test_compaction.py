"""ctlib.lake.compaction on a real lake of many small range files over several days: same rows
(every column, as a multiset) before, during and after; one sorted file per closed
partition; idempotent; crash at every step recoverable; concurrent writers and readers."""

from __future__ import annotations

import os
import shutil
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

import ctlib.lake.compaction as compaction
from ctlib.lake.compaction import (
    STEPS,
    CompactionBusy,
    CompactionUnsupported,
    SwapUnsupported,
    absorbed_by,
    compact_log,
    compact_partition,
    compaction_horizon,
    exchange,
    latest_committed_day,
    log_lock,
)
from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.lake import layout
from ctlib.lake.layout import ERRORS_SCHEMA, range_file_name, window_file_name
from ctlib.lake.files import Lake, write_range
from ctlib.testing.certs import CertFactory

SLUG = "local_compact_log"
DAY0 = date(2026, 1, 1)
DAYS = 5
TODAY = date(2026, 2, 1)
ENTRIES = 600
SIZES = (7, 23, 11, 40, 3, 19, 31, 13, 29, 17)  # range lengths, cycled: ragged like real runs
ERROR_EVERY = 37  # every 37th entry is undecodable: errors/ gets files too


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


def _certs(sample: pa.Table, indexes: list[int], at: datetime | None = None, slug: str = SLUG) -> pa.Table:
    """Rows of CERTS_SCHEMA for `indexes` (cloned real certificates), timestamped like the
    log's entries, or all at `at` (late entries)."""
    table = sample.take([i % sample.num_rows for i in indexes])
    for name, values, type_ in (
        ("log_slug", [slug] * len(indexes), pa.string()),
        ("index", indexes, pa.int64()),
        ("leaf_hash", [f"{i:064x}" for i in indexes], pa.string()),
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


def write_ranges(lake_root: Path, sample: pa.Table, start: int, end: int, slug: str = SLUG) -> list[tuple[int, int]]:
    """Ingest-like writes of [start, end): ragged ranges, one file per range and day."""
    lake = Lake.open(str(lake_root))
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
    write_ranges(root, sample_certs, 0, ENTRIES)
    return root


@pytest.fixture
def lake_root(tmp_path, pristine_lake) -> Path:
    """A fresh copy of the lake for each test (files keep their mtimes)."""
    return Path(shutil.copytree(pristine_lake, tmp_path / "lake"))


def rows(root: Path, table: str) -> pa.Table:
    """Every row of a table as a reader sees it (glob of *.parquet), every column."""
    return duckdb.sql(
        f"select * from read_parquet('{root}/{table}/**/*.parquet', hive_partitioning = false)"
    ).to_arrow_table()


def same_multiset(a: pa.Table, b: pa.Table) -> bool:
    con = duckdb.connect()
    con.register("a", a)
    con.register("b", b)
    missing = con.sql("select count(*) from (select * from a except all select * from b)").fetchall()[0][0]
    extra = con.sql("select count(*) from (select * from b except all select * from a)").fetchall()[0][0]
    return a.num_rows == b.num_rows and missing == 0 and extra == 0


def files_of(root: Path, table: str, day: date) -> list[str]:
    directory = root / table / f"log={SLUG}" / f"date={day.isoformat()}"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def staging_left(root: Path) -> list[str]:
    staging = root / layout.STAGING
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*")
                  if p.name.startswith(("date=", "probe.")) or (p.is_file() and not p.name.endswith(".lock")))


def run(root: Path, slug: str = SLUG, **kwargs) -> compaction.LogCompaction:
    args = {"first_index": 0, "next_index": ENTRIES, "mmd_seconds": 0, "today": TODAY} | kwargs
    return compact_log(Lake.open(str(root)), slug, **args)


CLOSED = [DAY0 + timedelta(days=d) for d in range(DAYS - 1)]  # mmd 0: all but the newest day
NEWEST = DAY0 + timedelta(days=DAYS - 1)


# --------------------------------------------------------------------------- merging


def test_each_closed_partition_becomes_one_sorted_file_with_the_same_rows(lake_root):
    before = {t: rows(lake_root, t) for t in ("certs", "errors")}
    newest_before = files_of(lake_root, "certs", NEWEST)
    assert all(len(files_of(lake_root, "certs", d)) >= 5 for d in CLOSED), "many small files to start with"

    report = run(lake_root)

    assert report.horizon == NEWEST and report.recovered == 0
    assert report.count("compacted") == 2 * len(CLOSED) and report.count("skipped") == 0
    for table in ("certs", "errors"):
        assert same_multiset(before[table], rows(lake_root, table)), f"{table}: same rows, every column"
        for day in CLOSED:
            (name,) = files_of(lake_root, table, day)
            path = lake_root / table / f"log={SLUG}" / f"date={day.isoformat()}" / name
            index = pq.read_table(path, columns=["index"])["index"].to_pylist()
            assert index == sorted(index) and len(set(index)) == len(index), "sorted by index"
            start, end = layout.parse_range(name)
            assert start <= index[0] and index[-1] < end
    assert files_of(lake_root, "certs", NEWEST) == newest_before, "the open day is left alone"
    assert staging_left(lake_root) == []


def test_merged_file_is_named_by_its_range_and_records_what_it_absorbed(lake_root):
    originals = files_of(lake_root, "certs", DAY0)
    run(lake_root)
    (name,) = files_of(lake_root, "certs", DAY0)
    first, last = layout.parse_range(originals[0]), layout.parse_range(originals[-1])
    assert name == range_file_name(first[0], last[1])
    assert absorbed_by(str(lake_root / "certs" / f"log={SLUG}" / f"date={DAY0}" / name)) == set(originals)


def test_a_second_run_changes_nothing(lake_root):
    run(lake_root)
    snapshot = {p: p.stat().st_mtime_ns for p in lake_root.rglob("*.parquet")}
    again = run(lake_root)
    assert again.count("compacted") == 0 and again.count("skipped") == 0
    assert again.count("unchanged") == 2 * len(CLOSED)
    assert {p: p.stat().st_mtime_ns for p in lake_root.rglob("*.parquet")} == snapshot


def test_late_file_is_merged_into_the_compacted_file_transitively(lake_root, sample_certs):
    run(lake_root)
    (first_merge,) = files_of(lake_root, "certs", DAY0)
    # An honest log never does this (MMD); a log that does gets its late entries merged too.
    late = _certs(sample_certs, [600, 601, 602], at=_timestamp_of(1))
    write_range(Lake.open(str(lake_root)), "certs", SLUG, 600, 603, late)
    before = rows(lake_root, "certs")
    report = run(lake_root, next_index=603)
    assert [p.day for p in report.partitions if p.outcome == "compacted"] == [DAY0]
    (name,) = files_of(lake_root, "certs", DAY0)
    assert layout.parse_range(name)[1] == 603
    absorbed = absorbed_by(str(lake_root / "certs" / f"log={SLUG}" / f"date={DAY0}" / name))
    assert {first_merge, range_file_name(600, 603)} <= absorbed and len(absorbed) > 3
    assert same_multiset(before, rows(lake_root, "certs"))


# --------------------------------------------------------------------------- which days, which files


def test_horizon_keeps_days_that_may_still_receive_entries():
    assert compaction_horizon(None, 86400, TODAY) is None, "nothing committed: nothing closed"
    assert compaction_horizon(date(2026, 1, 10), 0, TODAY) == date(2026, 1, 10)
    assert compaction_horizon(date(2026, 1, 10), 60, TODAY) == date(2026, 1, 9)
    assert compaction_horizon(date(2026, 1, 10), 86400, TODAY) == date(2026, 1, 9)
    assert compaction_horizon(date(2026, 1, 10), 86401, TODAY) == date(2026, 1, 8)
    assert compaction_horizon(date(2026, 3, 1), 0, TODAY) == TODAY, "never today or later"


def test_latest_committed_day_ignores_uncommitted_and_backfilled_files(lake_root):
    root = str(lake_root)
    assert latest_committed_day(root, SLUG, 0, ENTRIES) == NEWEST
    assert latest_committed_day(root, SLUG, 0, 200) == DAY0 + timedelta(days=1)
    assert latest_committed_day(root, SLUG, 0, 0) is None, "nothing committed"
    assert latest_committed_day(root, SLUG, ENTRIES, ENTRIES) is None, "backfilled history does not count"


def test_default_mmd_leaves_two_days_open(lake_root):
    report = run(lake_root, mmd_seconds=86400)
    assert report.horizon == NEWEST - timedelta(days=1)
    assert sorted({p.day for p in report.partitions}) == CLOSED[:-1]


def test_days_back_restricts_to_recent_days(lake_root):
    report = run(lake_root, today=NEWEST + timedelta(days=1), days_back=3)
    assert sorted({p.day for p in report.partitions}) == [NEWEST - timedelta(days=2), NEWEST - timedelta(days=1)]


def test_partitions_that_cannot_be_merged_safely_are_skipped_untouched(lake_root, sample_certs):
    root = str(lake_root)
    day1 = DAY0 + timedelta(days=1)
    snapshot = {p: p.stat().st_mtime_ns for p in lake_root.rglob("*.parquet")}

    uncommitted = compact_partition(root, "certs", SLUG, day1, first_index=0, next_index=150)
    assert uncommitted.outcome == "skipped" and "not committed" in uncommitted.detail

    fresh = compact_partition(root, "certs", SLUG, day1, first_index=ENTRIES, next_index=ENTRIES + 10)
    assert fresh.outcome == "skipped" and "backfill" in fresh.detail
    later = datetime.now(UTC) + compaction.BACKFILL_QUIET + timedelta(minutes=1)
    quiet = compact_partition(root, "certs", SLUG, DAY0, first_index=ENTRIES, next_index=ENTRIES + 10, now=later)
    assert quiet.outcome == "compacted", "backfilled history is merged once it is quiet"
    snapshot = {p: p.stat().st_mtime_ns for p in lake_root.rglob("*.parquet")}

    # A rewrite overlapping a range of the day (e.g. a backfill after compaction): refuse.
    overlapping = sorted(files_of(lake_root, "certs", day1))[2]
    s, e = layout.parse_range(overlapping)
    write_range(Lake.open(root), "certs", SLUG, s - 1, e, _certs(sample_certs, list(range(s, e))))
    overlap = compact_partition(root, "certs", SLUG, day1, first_index=0, next_index=ENTRIES)
    assert overlap.outcome == "skipped" and "overlap" in overlap.detail

    foreign = lake_root / "certs" / f"log={SLUG}" / f"date={DAY0 + timedelta(days=2)}" / "notes.parquet"
    pq.write_table(pa.table({"x": [1]}), foreign)
    odd = compact_partition(root, "certs", SLUG, DAY0 + timedelta(days=2), first_index=0, next_index=ENTRIES)
    assert odd.outcome == "skipped" and "not a range file" in odd.detail

    unchanged = {p: t for p, t in snapshot.items() if p.exists()}
    assert {p: p.stat().st_mtime_ns for p in unchanged} == unchanged
    assert staging_left(lake_root) == []


# --------------------------------------------------------------------------- concurrency


def test_a_reader_never_sees_a_different_count_during_compaction(lake_root, sample_certs):
    slugs = [SLUG, "local_compact_log_2", "local_compact_log_3"]
    for slug in slugs[1:]:
        write_ranges(lake_root, sample_certs, 0, ENTRIES, slug)
    expected = tuple(rows(lake_root, t).num_rows for t in ("certs", "errors"))
    seen: list[tuple[int, ...]] = []
    failures: list[str] = []
    done = threading.Event()

    def reader():
        con = duckdb.connect()
        while not done.is_set():
            try:
                counts = tuple(
                    con.sql(f"select count(*) from read_parquet('{lake_root}/{t}/**/*.parquet')").fetchall()[0][0]
                    for t in ("certs", "errors")
                )
            except duckdb.Error as err:  # listed just before a swap, opened after it: a retry
                failures.append(str(err))
                continue
            seen.append(counts)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        reports = [run(lake_root, slug) for slug in slugs]  # 3 logs x 4 days x 2 tables = 24 swaps
    finally:
        done.set()
        thread.join()
    assert sum(r.count("compacted") for r in reports) == 24
    assert len(seen) >= 5, "the reader ran throughout"
    assert set(seen) == {expected}, f"counts seen: {set(seen)}"
    assert all("No such file" in f for f in failures), failures[:3]
    print(f"{len(seen)} consistent reads, {len(failures)} reads retried (a file swapped away under them)")


def test_a_file_written_into_the_partition_during_the_swap_is_moved_back(lake_root, sample_certs, monkeypatch):
    def writer_sneaks_in(step):
        if step == "rechecked" and not sneaked:
            late = _certs(sample_certs, [700, 701], at=_timestamp_of(0))
            sneaked.append(write_range(Lake.open(str(lake_root)), "certs", SLUG, 700, 702, late))

    sneaked: list = []
    monkeypatch.setattr(compaction, "_reached", writer_sneaks_in)
    before = rows(lake_root, "certs")
    result = compact_partition(str(lake_root), "certs", SLUG, DAY0, first_index=0, next_index=ENTRIES)
    assert result.outcome == "compacted" and result.rescued == (range_file_name(700, 702),)
    after = rows(lake_root, "certs")
    assert after.num_rows == before.num_rows + 2
    assert same_multiset(before, after.filter(pc.less(after["index"], 700)))
    assert len(files_of(lake_root, "certs", DAY0)) == 2
    assert staging_left(lake_root) == []


def test_a_file_written_before_the_recheck_makes_the_run_skip(lake_root, sample_certs, monkeypatch):
    def writer(step):
        if step == "written":
            late = _certs(sample_certs, [700], at=_timestamp_of(0))
            write_range(Lake.open(str(lake_root)), "certs", SLUG, 700, 701, late)

    monkeypatch.setattr(compaction, "_reached", writer)
    files = files_of(lake_root, "certs", DAY0)
    result = compact_partition(str(lake_root), "certs", SLUG, DAY0, first_index=0, next_index=ENTRIES)
    assert result.outcome == "skipped" and "changed" in result.detail
    assert files_of(lake_root, "certs", DAY0) == sorted([*files, range_file_name(700, 701)])
    assert staging_left(lake_root) == []


def test_one_compaction_per_log_at_a_time(lake_root):
    with log_lock(str(lake_root), SLUG):
        with pytest.raises(CompactionBusy):
            run(lake_root)


# --------------------------------------------------------------------------- crashes


def _assert_recovers(lake_root: Path, before: dict[str, pa.Table], expect_recovered: int) -> None:
    for table, expected in before.items():
        assert same_multiset(expected, rows(lake_root, table)), f"{table} after the crash"
    report = run(lake_root)
    assert report.recovered == expect_recovered
    for table, expected in before.items():
        assert same_multiset(expected, rows(lake_root, table)), f"{table} after recovery"
        assert all(len(files_of(lake_root, table, d)) == 1 for d in CLOSED)
    assert staging_left(lake_root) == []


@pytest.mark.parametrize("step", STEPS)
def test_crash_after_each_step_leaves_a_readable_lake_and_the_next_run_finishes(step, lake_root, monkeypatch):
    before = {t: rows(lake_root, t) for t in ("certs", "errors")}

    def crash(at):
        if at == step:
            raise Crash(at)

    files = files_of(lake_root, "certs", DAY0)
    monkeypatch.setattr(compaction, "_reached", crash)
    with pytest.raises(Crash):
        run(lake_root)
    monkeypatch.undo()
    swapped = STEPS.index(step) >= STEPS.index("exchanged")
    assert len(files_of(lake_root, "certs", DAY0)) == 1 if swapped else files_of(lake_root, "certs", DAY0) == files
    _assert_recovers(lake_root, before, expect_recovered=0 if step == "settled" else 1)


def test_crash_while_writing_the_merged_file(lake_root, monkeypatch):
    before = {t: rows(lake_root, t) for t in ("certs", "errors")}
    real = pq.ParquetWriter.write_table

    def write_then_crash(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise Crash("mid-write")

    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 50)  # several writes per file
    monkeypatch.setattr(pq.ParquetWriter, "write_table", write_then_crash)
    with pytest.raises(Crash):
        run(lake_root)
    monkeypatch.undo()
    assert any(p.name.endswith(".tmp") for p in (lake_root / layout.STAGING).rglob("*")), "a partial temporary"
    _assert_recovers(lake_root, before, expect_recovered=1)


def test_crash_while_emptying_the_retired_directory(lake_root, monkeypatch):
    before = {t: rows(lake_root, t) for t in ("certs", "errors")}
    real_unlink = os.unlink
    calls = []

    def unlink_then_crash(path, *args, **kwargs):
        if layout.STAGING in str(path):
            calls.append(path)
            if len(calls) == 3:
                raise Crash("mid-settle")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(compaction.os, "unlink", unlink_then_crash)
    with pytest.raises(Crash):
        run(lake_root)
    monkeypatch.undo()
    assert len(files_of(lake_root, "certs", DAY0)) == 1, "crashed after the swap"
    _assert_recovers(lake_root, before, expect_recovered=1)


# --------------------------------------------------------------------------- the exchange itself


def test_exchange_swaps_two_directories(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "from_a").touch()
    (tmp_path / "b" / "from_b").touch()
    exchange(str(tmp_path / "a"), str(tmp_path / "b"))
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["from_b"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from_a"]
    with pytest.raises(FileNotFoundError):
        exchange(str(tmp_path / "a"), str(tmp_path / "missing"))


def test_without_an_atomic_exchange_nothing_is_touched(lake_root, monkeypatch):
    def unsupported(a, b):
        raise SwapUnsupported("simulated filesystem without RENAME_EXCHANGE")

    monkeypatch.setattr(compaction, "exchange", unsupported)
    snapshot = {p: p.stat().st_mtime_ns for p in lake_root.rglob("*.parquet")}
    report = run(lake_root)
    assert report.partitions == () and "no atomic directory exchange" in report.note
    assert {p: p.stat().st_mtime_ns for p in lake_root.rglob("*.parquet")} == snapshot


def test_object_store_lakes_are_refused():
    with pytest.raises(CompactionUnsupported, match="local/POSIX"):
        compact_log(Lake(pafs._MockFileSystem(), "/lake"), SLUG, first_index=0, next_index=1, mmd_seconds=0)


def test_a_leftover_probe_directory_is_removed(lake_root):
    probe = lake_root / layout.STAGING / "certs" / f"log={SLUG}" / "probe.0123" / "a"
    probe.mkdir(parents=True)
    run(lake_root)
    assert not probe.parent.exists() and staging_left(lake_root) == []


def test_interleaved_backfill_windows_below_first_index_merge_and_doubles_are_refused(tmp_path, sample_certs):
    # Two time windows of a disordered log: each file is named by the indexes its rows span,
    # and the spans overlap where entries are out of order across the windows' edge.
    root = tmp_path / "lake"
    lake = Lake.open(str(root))
    early, late = [*range(100, 140), 142, 145], [140, 141, 143, 144, *range(146, 190)]
    at = datetime.combine(DAY0, datetime.min.time(), UTC) + timedelta(hours=3)
    for indexes, window in ((early, (1, 2)), (late, (2, 3))):
        write_range(lake, "certs", SLUG, 0, 0, _certs(sample_certs, indexes, at=at), window=window)
    assert files_of(root, "certs", DAY0) == [window_file_name(100, 146, 1, 2), window_file_name(140, 190, 2, 3)]
    later = datetime.now(UTC) + compaction.BACKFILL_QUIET + timedelta(minutes=1)
    merged = compact_partition(str(root), "certs", SLUG, DAY0, first_index=1000, next_index=1000, now=later)
    assert merged.outcome == "compacted", merged.detail
    assert files_of(root, "certs", DAY0) == [range_file_name(100, 190)]
    assert sorted(rows(root, "certs").column("index").to_pylist()) == list(range(100, 190))

    # The same index in two files is refused, naming it; the files stay as they were.
    write_range(lake, "certs", SLUG, 0, 0, _certs(sample_certs, [150, 191], at=at), window=(4, 5))
    twice = compact_partition(str(root), "certs", SLUG, DAY0, first_index=1000, next_index=1000, now=later)
    assert twice.outcome == "skipped" and "index 150" in twice.detail
    assert files_of(root, "certs", DAY0) == [range_file_name(100, 190), window_file_name(150, 192, 4, 5)]
    # Above first_index (committed by the watermark) files never overlap: still refused by name.
    above = compact_partition(str(root), "certs", SLUG, DAY0, first_index=0, next_index=1000)
    assert above.outcome == "skipped" and "overlap" in above.detail
