"""Compaction of the lake: one merged file per table, log and closed day, made live by the
partition's manifest, on a local disk and an object store alike.

Ingest writes one file per range and day (`<start>-<end>.parquet`), so a busy day collects
hundreds of small files. `compact_log` merges, for `certs` and `errors`, the live files of each
*closed* day partition of a log into ONE file sorted by index, and switches readers to it with
the partition's manifest (ctlib.lake.manifest: read its rule first). Everything goes through
the lake's pyarrow filesystem (`Lake.filesystem`): no rename of directories, no staging area,
no lock file; the same code runs on a local disk and on S3.

The protocol, per closed day partition
--------------------------------------
1. *list*: the partition's files and its manifest (`partition_listing`); the live files are
   the manifest's merged file (if any) and every range file it has not absorbed
   (`live_names`). One live file and nothing else to merge: "unchanged".
2. *merge*: the live files' rows, sorted by index, become ONE file named
   `merged_file_name(first, end, generation + 1)` (generation 0 without a manifest), written
   whole by `files.write_file`; its row count is checked. The name is new (a generation no
   manifest names yet), so this file is not live: readers do not see it.
3. *manifest*: `write_manifest` puts the new manifest in place in one step (one object PUT,
   or one rename on a local disk): generation + 1, the merged file, its rows and index span,
   and `absorbed` = the old manifest's absorbed names plus the live range files just merged.
   This one write is the switch for readers.
4. *delete, later*: what the manifest made unreadable (`superseded_names`: absorbed range
   files, merged files of other generations) is deleted by a later run, once the manifest is
   GRACE old. Each `compact_log` starts with that sweep over the log's partitions, and with
   the removal of stale temporaries (`files.remove_stale_temporaries`).

Why a reader following the manifest sees every entry exactly once: before the write of
step 3 the live files are the old ones (the new merged file is not live); after it they are
the new merged file plus the range files it did not absorb, and it absorbed exactly the
files whose rows it holds. One write separates the two sets, each holding every row once.
A reader that listed the partition and read its manifest just before that write keeps
opening the old files for a while: nothing is deleted until GRACE after the write, far longer
than any reader takes between listing and reading. (On a local disk the old exchange of
directories made such a reader fail with "file not found"; now it cannot.)

Crash safety, at each point:
* during 2 (a merged file half written): `write_file` leaves at most a hidden temporary
  (local disk) or nothing (an object appears whole or not at all); the sweep removes stale
  temporaries. Readers see the old files.
* after 2, before 3: a merged file no manifest names; not live. The next run writes it again
  under the same name (the same generation + 1 of the unchanged manifest; write_file
  replaces it whole), or, when a newer manifest exists first, deletes it as superseded.
  A failure is never "cleaned up" by deleting the merged file: a manifest write that failed
  on the way back (a timeout) may have landed, and the manifest would then name a missing file.
* after 3: the new state is complete; the old files wait for the sweep.
* during 4: every deleted file was superseded, so any subset of them gone is invisible to
  readers; the next sweep deletes the rest.

Who else writes a day partition
-------------------------------
Ingest writes a day D only with entries whose log timestamp falls on D. A log that keeps its
maximum merge delay (MMD) gives every entry after the watermark a timestamp no earlier than
(timestamp of any committed entry) - MMD, since entries are integrated in index order, each
no earlier than its timestamp and no later than its timestamp + MMD. So with M the newest
day holding a committed file of the log, no ingest run can ever write to a day ending at or
before M 00:00 - MMD: those days are *closed* (also never today UTC, and never the
1970-01-01 partition of rows without a timestamp). Only closed days are compacted, and only
when every live range file in them is committed ([first_index, next_index) of the
watermark). A file some writer adds to a partition while it is being merged is simply not
absorbed: it stays live beside the merged file until the next run.

Backfill (`ct_ingest` with start_index/end_index, or by time) writes history below
`first_index` into old days at any time, and verifies it only after writing (a failed
backfill deletes its files). Live files below `first_index` are therefore merged only once
they are `BACKFILL_QUIET` old (longer than any ingest run). A backfill into a compacted day
is *merged*, not refused:
* entries the day did not hold yet come as a new range file, live beside the merged file
  (readers see them at once) and merged into the next generation by a later run;
* a backfill that writes again what the day held (a repeated window, a range rewritten)
  either rewrites a file under an absorbed name, which stays hidden behind the merged file
  and is swept, or writes a live file holding indexes the merged file holds too: the merge
  keeps one copy of each index whose rows agree (`leaf_hash` for certs, `leaf_input_b64` for
  errors), counts them in the result and logs it; where two copies of an index differ the
  partition is skipped with a reason naming table, log, day and index (nothing is chosen
  silently; someone must look).

One compaction per log at a time: `ct_compact` runs one mapped task per log, and one run at a
time (max_active_runs=1). Two concurrent compactions of one log could delete each other's
not-yet-live merged files as superseded; nothing here guards against that beyond the DAG.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ctlib.lake import layout
from ctlib.lake.files import Lake, remove_stale_temporaries, write_streamed
from ctlib.lake.manifest import (
    Manifest,
    ManifestError,
    is_data_name,
    live_names,
    partition_listing,
    read_manifest,
    superseded_names,
    write_manifest,
)

log = logging.getLogger(__name__)

TABLES = (layout.CERTS, layout.ERRORS)
KEYS = {layout.CERTS: "leaf_hash", layout.ERRORS: "leaf_input_b64"}
"""The column that tells two rows of one index apart: equal means the same log entry."""
META_KEY = b"ctlib.lake.compaction"
"""Parquet key-value metadata of a merged file: JSON {"sources", "absorbed", "generation",
"compacted_at"}, for traceability (readers follow the manifest, never this)."""
BACKFILL_QUIET = timedelta(hours=6)
"""Age before a file below first_index (backfill) is merged: far beyond an ingest run's
30-minute timeout, so its verification is over (and failed backfills deleted their files)."""
GRACE = timedelta(minutes=15)
"""How long after a manifest's write the files it superseded are kept: a reader that listed
the partition just before it has that long to open the files it chose."""
STEPS = ("merged", "manifest", "deleted")
"""The points `_reached` is called at: after a merged file is written and checked, after its
manifest is written, after each file the deferred sweep deletes."""


class CompactionError(RuntimeError):
    """Compaction cannot run; the message says why."""


class _Refused(Exception):
    """The partition cannot be merged safely this time; the message says why."""


def _reached(step: str) -> None:
    """A no-op at each of STEPS; tests replace it to simulate a crash right after a step."""


# --------------------------------------------------------------------------- listing


Listing = dict[str, pafs.FileInfo]
"""A partition's files by name (hidden ones and the manifest too)."""


def log_listing(lake: Lake, table: str, slug: str) -> dict[date, Listing]:
    """Every day partition of one log in `table` with its files, from one recursive listing
    (one paginated LIST on an object store)."""
    base = layout.log_dir(lake.root, table, slug)
    try:
        infos = lake.filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return {}
    days: dict[date, Listing] = {}
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        directory, _, name = info.path.rpartition("/")
        parent, _, leaf = directory.rpartition("/")
        day = layout.parse_day_dir(leaf)
        if day is not None and parent == base:
            days.setdefault(day, {})[name] = info
    return dict(sorted(days.items()))


def absorbed_by(lake: Lake, path: str) -> frozenset[str]:
    """Names of the range files a merged file's metadata says it absorbed (empty for any other
    file). Traceability only: the manifest is what readers and compaction trust."""
    try:
        with lake.filesystem.open_input_file(path) as source:
            raw = (pq.read_schema(source).metadata or {}).get(META_KEY)
        return frozenset(json.loads(raw)["absorbed"]) if raw else frozenset()
    except (OSError, ValueError, KeyError, pa.ArrowException):
        return frozenset()


def _settled(files: Iterable[str]) -> bool:
    """True when a partition holds a manifest and one merged file as its only data: nothing
    to merge and nothing to delete, known without reading the manifest."""
    names = list(files)
    data = [n for n in names if is_data_name(n)]
    return layout.MANIFEST in names and len(data) == 1 and layout.parse_merged(data[0]) is not None


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


# --------------------------------------------------------------------------- eligibility


def _committed_in(files: Iterable[str], first_index: int, next_index: int) -> bool:
    for name in files:
        if not is_data_name(name):
            continue
        merged = layout.parse_merged(name)
        span = merged[:2] if merged else layout.parse_range(name)
        if span and first_index <= span[0] and span[1] <= next_index:
            return True
    return False


def _latest_committed(listings: Iterable[Mapping[date, Listing]], first_index: int, next_index: int) -> date | None:
    latest = None
    for by_day in listings:
        for day in reversed(list(by_day)):
            if day == layout.UNKNOWN_DATE or (latest is not None and day <= latest):
                break
            if _committed_in(by_day[day], first_index, next_index):
                latest = day
                break
    return latest


def latest_committed_day(lake: Lake, slug: str, first_index: int, next_index: int,
                         tables: Sequence[str] = TABLES) -> date | None:
    """Newest day holding a file of [first_index, next_index) (committed by the watermark).

    Files are judged by the span their name gives; files a manifest superseded lie in
    compacted days, which are older than a committed day was when they were compacted, so
    they never move the answer."""
    return _latest_committed((log_listing(lake, t, slug) for t in tables), first_index, next_index)


def compaction_horizon(latest_committed: date | None, mmd_seconds: int, today: date) -> date | None:
    """First day that may still receive rows: days strictly before it are closed.

    None when nothing is committed yet (no day is closed). See the module docstring: no
    entry after the watermark is older than (latest committed day 00:00 UTC) - MMD."""
    if latest_committed is None:
        return None
    cutoff = datetime.combine(latest_committed, time(), UTC) - timedelta(seconds=max(0, mmd_seconds))
    return min(today, cutoff.date())


@dataclass(frozen=True, slots=True)
class _Source:
    """One live file to merge."""

    name: str
    path: str
    start: int
    end: int
    merged: bool  # the manifest's merged file (else a range file)


def _plan(files: Listing, manifest: Manifest | None, first_index: int, next_index: int,
          now: datetime) -> list[_Source]:
    """The partition's live files, the merged file first and then in range order, or
    _Refused naming the file that forbids a merge now."""
    sources = []
    for name in live_names(files, manifest):
        info = files[name]
        if manifest is not None and name == manifest.file:
            sources.append(_Source(name, info.path, manifest.first, manifest.end, True))
            continue
        bounds = layout.parse_range(name)
        if bounds is None:
            raise _Refused(f"{name} is not a range file")
        start, end = bounds
        if end > next_index:
            raise _Refused(f"{name} is not committed (next_index {next_index})")
        if start < first_index and (info.mtime is None or now - info.mtime < BACKFILL_QUIET):
            raise _Refused(f"{name} lies below first_index {first_index} and is younger than {BACKFILL_QUIET}"
                           " (a backfill may still be verifying it)")
        sources.append(_Source(name, info.path, start, end, False))
    sources.sort(key=lambda s: (not s.merged, s.start, s.end, s.name))
    return sources


# --------------------------------------------------------------------------- merging


@dataclass(frozen=True, slots=True)
class PartitionResult:
    table: str
    slug: str
    day: date
    outcome: str  # "compacted", "unchanged" (nothing to merge) or "skipped"
    detail: str = ""
    files_before: int = 0  # live files merged
    rows: int = 0
    file: str = ""  # the merged file's name
    generation: int = 0
    duplicates: int = 0  # rows held by two sources with the same key: kept once

    def to_json(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat()}


ROW_GROUP_ROWS = 65_536
"""Rows per row group of a merged file: large enough for fast scans, small enough for memory,
and their index statistics let a reader (and the next compaction) skip most of the file."""
MERGE_WINDOW = ROW_GROUP_ROWS
"""Indexes merged per step: the rows in memory at once are at most this many per source
overlapping the step (an index is in a day's files once, or twice after a repeated backfill),
whatever the day's size; a day of a busy log holds tens of millions of entries."""


class _Reader:
    """One source opened for windowed reads: its row groups' index ranges from the footer."""

    def __init__(self, lake: Lake, source: _Source) -> None:
        self.source = source
        self._handle = lake.filesystem.open_input_file(source.path)
        self.file = pq.ParquetFile(self._handle)
        self.schema = self.file.schema_arrow.remove_metadata()
        column = self.file.schema_arrow.get_field_index("index")
        self.groups: list[tuple[int, int, int]] = []  # (row group, min index, max index)
        for group in range(self.file.num_row_groups):
            meta = self.file.metadata.row_group(group)
            if meta.num_rows == 0:
                continue
            stats = meta.column(column).statistics if column >= 0 else None
            low, high = ((int(stats.min), int(stats.max)) if stats is not None and stats.has_min_max
                         else (source.start, source.end - 1))  # unknown: read in every step of the span
            if low < source.start or high >= source.end:
                raise _Refused(f"{source.name} holds index {low}..{high}, outside its range")
            self.groups.append((group, low, high))

    def rows(self, start: int, end: int) -> pa.Table | None:
        """Its rows of indexes in [start, end), sorted; _Refused when an index is there twice."""
        parts = [self.file.read_row_group(g) for g, low, high in self.groups if low < end and high >= start]
        if not parts:
            return None
        table = pa.concat_tables(parts).replace_schema_metadata(None)
        index = table.column("index")
        table = table.filter(pc.and_(pc.greater_equal(index, start), pc.less(index, end)))
        if table.num_rows == 0:
            return None
        numbers = table.column("index").to_numpy()
        if not (np.diff(numbers) > 0).all():
            table = table.sort_by("index")
            numbers = table.column("index").to_numpy()
            if not (np.diff(numbers) > 0).all():
                raise _Refused(f"{self.source.name} holds an index twice")
        return table

    def close(self) -> None:
        self._handle.close()


def _merge_step(table_name: str, where: str, readers: Sequence[_Reader], start: int,
                end: int) -> tuple[pa.Table | None, int]:
    """The sources' rows of indexes [start, end) in index order, each index once; (rows,
    repeats dropped). An index held by two sources with the same key column is a backfill that
    wrote again what the day held: kept once (the copy of the earliest source: the merged file
    first). With different keys: _Refused naming the index and the files."""
    tables, holders = [], []
    for reader in readers:
        if reader.source.start < end and reader.source.end > start:
            rows = reader.rows(start, end)
            if rows is not None:
                tables.append(rows)
                holders.append(reader.source.name)
    if not tables:
        return None, 0
    combined = pa.concat_tables(tables)
    if len(tables) > 1:
        # sort_indices is stable: of two rows of one index, the one of the earlier source stays first.
        combined = combined.take(pc.sort_indices(combined, sort_keys=[("index", "ascending")]))
    index = combined.column("index").to_numpy()
    repeat = np.concatenate([[False], index[1:] == index[:-1]])
    if not repeat.any():
        return combined, 0
    key = combined.column(KEYS[table_name])
    at = np.nonzero(repeat)[0]
    later, earlier = key.take(pa.array(at)), key.take(pa.array(at - 1))
    same = pc.or_(pc.fill_null(pc.equal(later, earlier), False), pc.and_(pc.is_null(later), pc.is_null(earlier)))
    differ = np.nonzero(~same.to_numpy(zero_copy_only=False))[0]
    if differ.size:
        twice = int(index[at[differ[0]]])
        both = [n for n, t in zip(holders, tables) if np.isin(twice, t.column("index").to_numpy())]
        raise _Refused(f"{where}: index {twice} is in {' and '.join(both)} with different {KEYS[table_name]}"
                       " (two different entries under one index: check the log and delete the wrong copy)")
    return combined.filter(pa.array(~repeat)), int(repeat.sum())


def _write_merged(lake: Lake, table_name: str, where: str, directory: str, name: str, sources: Sequence[_Source],
                  info: Mapping[str, object]) -> tuple[str, int, int]:
    """Merge `sources` step by step (MERGE_WINDOW indexes at a time) into `directory/name`
    through a streaming Parquet writer (files.write_streamed: whole or not at all);
    (path, rows, repeats dropped). A source is opened when the steps reach its span and
    closed once they pass it, so only the few files of a step (and the merged file) are open,
    however many small files the day holds."""
    waiting = sorted(sources, key=lambda s: (s.start, not s.merged))
    open_: list[_Reader] = []
    try:
        open_.append(_Reader(lake, waiting.pop(0)))
        expected = open_[0].schema
        schema = expected.with_metadata({META_KEY: json.dumps(info).encode()})
        first, end = min(s.start for s in sources), max(s.end for s in sources)
        counts = {"rows": 0, "repeats": 0}

        def step_readers(step_end: int) -> list[_Reader]:
            while waiting and waiting[0].start < step_end:
                reader = _Reader(lake, waiting.pop(0))
                open_.append(reader)
                if not reader.schema.equals(expected):
                    raise _Refused(f"{reader.source.name} has another schema than {open_[0].source.name}")
            # The merged file first: of two copies of an index, its copy is kept.
            return sorted(open_, key=lambda r: not r.source.merged)

        def close_passed(step_end: int) -> None:
            for reader in [r for r in open_ if r.source.end <= step_end]:
                reader.close()
                open_.remove(reader)

        def write(sink: Any) -> None:
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                pending: list[pa.Table] = []
                buffered = 0
                for step in range(first, end, MERGE_WINDOW):
                    step_end = min(end, step + MERGE_WINDOW)
                    rows, repeats = _merge_step(table_name, where, step_readers(step_end), step, step_end)
                    close_passed(step_end)
                    counts["repeats"] += repeats
                    if rows is None:
                        continue
                    pending.append(rows)
                    buffered += rows.num_rows
                    while buffered >= ROW_GROUP_ROWS:
                        block = pa.concat_tables(pending)
                        writer.write_table(block.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
                        rest = block.slice(ROW_GROUP_ROWS)
                        pending, buffered = [rest], rest.num_rows
                        counts["rows"] += ROW_GROUP_ROWS
                if buffered:
                    writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP_ROWS)
                    counts["rows"] += buffered

        path = write_streamed(lake, directory, name, write)
        return path, counts["rows"], counts["repeats"]
    finally:
        for reader in open_:
            reader.close()


def compact_partition(lake: Lake, table: str, slug: str, day: date, *, first_index: int, next_index: int,
                      now: datetime | None = None, listing: tuple[Listing, Manifest | None] | None = None,
                      ) -> PartitionResult:
    """Merge one day partition's live files into one file sorted by index and make it live
    with the partition's next manifest (steps 1-3 of the module docstring).

    The caller has checked that `day` is closed, and passes the partition's `listing` (files,
    manifest) when it has one, else it is listed here. Nothing to merge: "unchanged"; cannot
    be merged safely now: "skipped" with the reason. Deletes nothing (see `sweep_partition`)."""
    now = now or datetime.now(UTC)
    directory = layout.partition_dir(lake.root, table, slug, day)
    result = partial(PartitionResult, table=table, slug=slug, day=day)
    try:
        files, manifest = listing if listing is not None else partition_listing(lake, directory)
    except ManifestError as err:
        return result(outcome="skipped", detail=str(err))
    if manifest is not None and manifest.file not in files:
        return result(outcome="skipped", detail=f"the manifest names {manifest.file}, which is not there")
    live = live_names(files, manifest)
    if len(live) < 2:
        return result(outcome="unchanged", detail="one live file or none", files_before=len(live))
    try:
        sources = _plan(files, manifest, first_index, next_index, now)
    except _Refused as why:
        return result(outcome="skipped", detail=str(why), files_before=len(live))

    generation = (manifest.generation if manifest else 0) + 1
    first, end = min(s.start for s in sources), max(s.end for s in sources)
    absorbed = (manifest.absorbed if manifest else frozenset()) | {s.name for s in sources if not s.merged}
    name = layout.merged_file_name(first, end, generation)
    info = {"sources": [s.name for s in sources], "absorbed": sorted(absorbed), "generation": generation,
            "compacted_at": now.isoformat(timespec="seconds")}
    where = f"{table}/log={slug}/date={day}"
    try:
        path, rows, duplicates = _write_merged(lake, table, where, directory, name, sources, info)
    except _Refused as why:
        try:  # no manifest names it, so no reader reads it; removed all the same
            lake.filesystem.delete_file(f"{directory}/{name}")
        except OSError:
            pass
        return result(outcome="skipped", detail=str(why), files_before=len(live))
    with lake.filesystem.open_input_file(path) as written:
        count = pq.read_metadata(written).num_rows
    if count != rows:  # the file is not live: nothing is lost, the next run writes it again
        raise CompactionError(f"{path}: wrote {count} rows, expected {rows}")
    _reached("merged")
    write_manifest(lake, directory, Manifest(generation=generation, file=name, rows=rows, first=first,
                                             end=end, absorbed=frozenset(absorbed), written_at=now))
    _reached("manifest")
    if duplicates:
        log.warning("%s/%s/%s: %d rows were held twice with the same %s (a backfill wrote again what the day "
                    "held): kept once", table, slug, day, duplicates, KEYS[table])
    return result(outcome="compacted", files_before=len(sources), rows=rows, file=name,
                  generation=generation, duplicates=duplicates, detail=f"{len(sources)} files -> {name}")


# --------------------------------------------------------------------------- deferred deletion


def sweep_partition(lake: Lake, directory: str, files: Listing, manifest: Manifest | None,
                    now: datetime) -> list[str]:
    """Delete the files `manifest` superseded (step 4) once it is GRACE old; the names
    deleted. Nothing without a manifest, or with one younger than GRACE. A file that cannot
    be deleted now is logged and left for the next run."""
    if manifest is None or now - manifest.written_at <= GRACE or manifest.file not in files:
        return []
    deleted = []
    for name in superseded_names(files, manifest):
        try:
            lake.filesystem.delete_file(files[name].path)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.warning("%s: cannot delete the superseded %s now: %s", directory, name, err)
            continue
        deleted.append(name)
        _reached("deleted")
    return deleted


# --------------------------------------------------------------------------- per log


@dataclass(frozen=True, slots=True)
class LogCompaction:
    slug: str
    horizon: date | None  # days before it were closed
    deleted: int  # superseded files the deferred sweep deleted first
    partitions: tuple[PartitionResult, ...]
    note: str = ""

    def count(self, outcome: str) -> int:
        return sum(p.outcome == outcome for p in self.partitions)

    def to_json(self) -> dict:
        return {"slug": self.slug, "horizon": self.horizon.isoformat() if self.horizon else None,
                "deleted": self.deleted, "note": self.note,
                "compacted": self.count("compacted"), "skipped": self.count("skipped"),
                "unchanged": self.count("unchanged"), "duplicates": sum(p.duplicates for p in self.partitions),
                "partitions": [p.to_json() for p in self.partitions if p.outcome != "unchanged"]}


def compact_log(lake: Lake, slug: str, *, first_index: int, next_index: int, mmd_seconds: int,
                today: date | None = None, days_back: int | None = None, tables: Sequence[str] = TABLES,
                now: datetime | None = None) -> LogCompaction:
    """Sweep, then compact every closed day partition of `slug` in `tables` (only the last
    `days_back` days before today when given).

    The sweep covers every partition of the log: stale temporaries go, and files superseded by
    a manifest older than GRACE are deleted. Safe at any time, concurrently with ingest,
    backfills and readers; one compaction per log at a time (the DAG sees to it). `now`
    (default: the clock) judges GRACE and BACKFILL_QUIET and dates the manifests written."""
    now = now or datetime.now(UTC)
    today = today or now.date()
    listings = {table: log_listing(lake, table, slug) for table in tables}
    state: dict[tuple[str, date], tuple[Listing, Manifest | None] | str] = {}  # (files, manifest) or a problem
    deleted = 0
    for table, by_day in listings.items():
        for day, files in by_day.items():
            directory = layout.partition_dir(lake.root, table, slug, day)
            if any(_is_temporary(n) for n in files):  # what killed writers left where no later write came
                gone = {p.rpartition("/")[2] for p in remove_stale_temporaries(lake, directory)}
                files = {n: i for n, i in files.items() if n not in gone}
            if _settled(files) or layout.MANIFEST not in files:
                state[table, day] = (files, None)
                continue
            try:
                manifest = read_manifest(lake, directory)
            except ManifestError as err:
                state[table, day] = str(err)
                continue
            gone = set(sweep_partition(lake, directory, files, manifest, now))
            deleted += len(gone)
            state[table, day] = ({n: i for n, i in files.items() if n not in gone}, manifest)
    if deleted:
        log.info("%s: %d superseded files deleted (their manifests are older than %s)", slug, deleted, GRACE)

    horizon = compaction_horizon(_latest_committed(listings.values(), first_index, next_index), mmd_seconds, today)
    if horizon is None:
        return LogCompaction(slug, None, deleted, (), "nothing committed yet")
    oldest = today - timedelta(days=days_back) if days_back else date.min
    results = []
    for table, by_day in listings.items():
        for day in by_day:
            if day == layout.UNKNOWN_DATE or not oldest <= day < horizon:
                continue
            known = state[table, day]
            if isinstance(known, str):
                result = PartitionResult(table, slug, day, "skipped", known)
            elif _settled(known[0]):
                result = PartitionResult(table, slug, day, "unchanged", "compacted, nothing new", files_before=1)
            else:
                result = compact_partition(lake, table, slug, day, first_index=first_index, next_index=next_index,
                                           now=now, listing=known)
            if result.outcome != "unchanged":
                log.log(logging.WARNING if result.outcome == "skipped" else logging.INFO,
                        "%s/%s/%s: %s: %s", table, slug, day, result.outcome, result.detail)
            results.append(result)
    return LogCompaction(slug, horizon, deleted, tuple(results))


# --------------------------------------------------------------------------- task bodies


def compaction_targets(settings, store, only_log: str | None = None) -> list[dict]:
    """One work item per log of the log list that has a watermark (restricted to `only_log`).

    Retired logs of the list are included (their data stays); logs dropped from the list
    are not, since their MMD is no longer known."""
    from ctlib.ct.loglist import load_log_list

    targets = []
    for ctlog in load_log_list(settings.log_list_path).logs:
        if only_log and ctlog.slug != only_log:
            continue
        state = store.load(ctlog.slug)
        if state is None:
            continue
        targets.append({"slug": ctlog.slug, "first_index": state.first_index,
                        "next_index": state.next_index, "mmd": ctlog.mmd})
    if only_log and not targets:
        raise CompactionError(f"log {only_log!r} is not in the log list or has no watermark yet")
    return targets


def compact_target(settings, target: Mapping, days_back: int | None = None) -> dict:
    """Compact one log as `compaction_targets` described it; a JSON summary."""
    report = compact_log(Lake.open(settings.lake), target["slug"], first_index=target["first_index"],
                         next_index=target["next_index"], mmd_seconds=target["mmd"], days_back=days_back)
    log.info("%s: %d partitions compacted, %d skipped, %d already compact (closed before %s), "
             "%d superseded files deleted%s",
             report.slug, report.count("compacted"), report.count("skipped"), report.count("unchanged"),
             report.horizon, report.deleted, f"; {report.note}" if report.note else "")
    return report.to_json()
