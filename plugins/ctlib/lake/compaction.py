"""Compaction of the lake: one file per table, log and day, swapped in atomically.

Ingest writes one file per range and day (`<start>-<end>.parquet`), so a busy day collects
hundreds of small files. `compact_log` merges, for `certs` and `errors`, the files of each
*closed* day partition of a log into ONE file sorted by index, named by the range it covers
(`<first start:012d>-<last end:012d>.parquet`: the lake stays "one file per range", and
compacting an already compacted partition changes nothing).

Contract for readers
--------------------
Readers list `<table>/**/*.parquet` (ctlib.lake.query, DuckDB, pyarrow.dataset). At every instant,
and after a crash at any point, each partition lists either exactly its old files or exactly
the merged file: never both (a row twice), never neither (rows missing). A reader that listed
the old files just before the swap and opens them after it gets "file not found" and must
retry; it can fail, but it can never return a wrong count.

The swap (local/POSIX lake)
---------------------------
1. *stage*: a directory `<lake>/.compaction/<table>/log=<slug>/date=<D>.<uuid>` receives the
   merged file (hidden temporary name, fsync, rename, row count checked). It lies outside
   every table directory on purpose: DuckDB's `**` descends into hidden directories, so a
   hidden directory next to the partition would be read.
2. *recheck*: the partition is listed again (names, inodes, sizes, mtimes); if anything
   changed since the merge was planned, the staging directory is dropped and the partition
   is left for the next run.
3. *exchange*: `renameat2(staging, partition, RENAME_EXCHANGE)` swaps the two directories in
   one atomic step (Linux >= 3.15; ext4, xfs, btrfs, tmpfs... support it). The partition
   path now holds only the merged file, the staging path the old files.
4. *settle*: each file left at the staging path is deleted when its rows are live in the
   partition (its name is a live file's, or is listed in a live merged file's
   `ctlib.lake.compaction` metadata as absorbed), or moved back into the partition otherwise (a
   file some writer renamed into the partition between 2 and 3); then the directory goes.

Crash safety. Before 3 the partition is untouched and the staging directory holds only the
merged file (or a temporary): old files visible. After 3 the partition holds the merged file
and the staging directory old files: new file visible. Neither state shows both or neither,
and the one rename in between is atomic. Every run first *settles* every leftover staging
directory with the rule of step 4, which is right in both states: an unswapped merged file
carries compaction metadata and is not absorbed by anything live, so it is deleted; old
files after the swap are absorbed by the live merged file, so they are deleted; anything
else is moved back. The merged file's metadata names every range file it absorbed,
transitively, which is also what makes re-compaction of a partition safe.

Who else writes a day partition
-------------------------------
Ingest writes a day D only with entries whose log timestamp falls on D. A log that keeps its
maximum merge delay (MMD) gives every entry after the watermark a timestamp no earlier than
(timestamp of any committed entry) - MMD, since entries are integrated in index order, each
no earlier than its timestamp and no later than its timestamp + MMD. So with M the newest
day holding a committed file of the log, no ingest run can ever write to a day ending at or
before M 00:00 - MMD: those days are *closed* (also never today UTC, and never the
1970-01-01 partition of rows without a timestamp). Only closed days are compacted, and only
when every file in them is committed ([first_index, next_index) of the watermark) and no two
ranges overlap. Steps 2 and 4 protect from a log that breaks its MMD: a file written before
the recheck makes the run skip the partition; one renamed in during the microseconds between
recheck and exchange is moved back (invisible for that instant).

Backfill (`ct_ingest` with start_index/end_index) writes history below `first_index` into
old days at any time, and verifies it only after writing. Files below `first_index` are
therefore merged only once they are `BACKFILL_QUIET` old (longer than any ingest run). A
backfill that rewrites a range already compacted writes a file overlapping the merged one:
the rows are then in the lake twice until someone deletes one copy; compaction detects the
overlap and refuses to merge that partition (logged), rather than baking the copy in.
Retried ingest tasks never rewrite a compacted range: ranges are committed (the watermark is
past them) before their day closes.

Object stores (s3://, gs://): there is no atomic directory exchange (nor rename), so
`compact_log` refuses non-local lakes (`CompactionUnsupported`). On a local filesystem
without RENAME_EXCHANGE (some network or FUSE filesystems, non-Linux hosts) it skips with
`SwapUnsupported`; it never falls back to a non-atomic swap.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ctlib.lake import layout
from ctlib.lake.files import Lake, remove_stale_temporaries

log = logging.getLogger(__name__)

TABLES = (layout.CERTS, layout.ERRORS)
META_KEY = b"ctlib.lake.compaction"
"""Parquet key-value metadata of a merged file: JSON {"sources", "absorbed", "compacted_at"}."""
ROW_GROUP_ROWS = 65_536
"""Rows per row group of a merged file: large enough for fast scans, small enough for memory."""
BACKFILL_QUIET = timedelta(hours=6)
"""Age before a file below first_index (backfill) is merged: far beyond an ingest run's
30-minute timeout, so its verification is over (and failed backfills deleted their files)."""
STEPS = ("staged", "written", "rechecked", "exchanged", "settled")
"""The points `_reached` is called at, in order, while compacting one partition."""

_STAGING_TAG = re.compile(r"^[0-9a-f]{32}$")  # after `date=<day>.` in a staging directory's name
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


class CompactionError(RuntimeError):
    """Compaction cannot run; the message says why."""


class CompactionUnsupported(CompactionError):
    """The lake is not on a local/POSIX filesystem."""


class SwapUnsupported(CompactionError):
    """The OS or filesystem has no atomic directory exchange."""


class CompactionBusy(CompactionError):
    """Another compaction of the same log holds its lock."""


class _Refused(Exception):
    """The partition cannot be merged safely this time; the message says why."""


def _reached(step: str) -> None:
    """A no-op at each of STEPS; tests replace it to simulate a crash right after a step."""


# --------------------------------------------------------------------------- the exchange


def exchange(a: str, b: str) -> None:
    """Swap the directories (or files) at paths `a` and `b` in one atomic step.

    Both must exist on the same filesystem. Raises SwapUnsupported where the OS, C library
    or filesystem cannot do it, OSError for anything else."""
    if not sys.platform.startswith("linux"):
        raise SwapUnsupported(f"no atomic directory exchange on {sys.platform} (needs Linux renameat2)")
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise SwapUnsupported("the C library has no renameat2 (glibc >= 2.28 needed)")
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        raise SwapUnsupported(f"renameat2(RENAME_EXCHANGE) refused under {os.path.dirname(a)}: {os.strerror(err)}")
    raise OSError(err, os.strerror(err), a, None, b)


def swap_supported(directory: str) -> bool:
    """Whether `exchange` works on the filesystem of `directory` (tried on two scratch
    directories made inside it; `recover` removes any a crash leaves)."""
    probe = os.path.join(directory, f"probe.{uuid.uuid4().hex}")
    os.makedirs(os.path.join(probe, "a"))
    os.makedirs(os.path.join(probe, "b"))
    try:
        exchange(os.path.join(probe, "a"), os.path.join(probe, "b"))
        return True
    except SwapUnsupported as err:
        log.warning("compaction disabled: %s", err)
        return False
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class RangeFile:
    """One visible range file of a partition, with what identifies its current version."""

    name: str
    path: str
    start: int
    end: int
    identity: tuple[int, int, int]  # inode, size, mtime_ns: a rewrite changes it

    @property
    def mtime(self) -> datetime:
        return datetime.fromtimestamp(self.identity[2] / 1e9, UTC)


def _visible(name: str) -> bool:
    """What a reader globbing `*.parquet` lists (ingest's temporaries start with a dot)."""
    return name.endswith(".parquet") and not name.startswith(".")


def list_partition(directory: str) -> dict[str, os.stat_result]:
    """The visible Parquet files of a partition directory (empty if it does not exist)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return {}
    return {e.name: e.stat() for e in entries if _visible(e.name) and e.is_file()}


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def partition_days(root: str, table: str, slug: str) -> list[date]:
    """The day partitions of a log in a table, oldest first."""
    try:
        names = os.listdir(layout.log_dir(root, table, slug))
    except FileNotFoundError:
        return []
    return sorted(day for day in map(layout.parse_day_dir, names) if day is not None)


def absorbed_by(path: str) -> frozenset[str]:
    """Names of the range files a merged file absorbed (empty for any other file)."""
    info = _merge_info(path)
    return frozenset(info["absorbed"]) if info else frozenset()


def _merge_info(path: str) -> dict | None:
    try:
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
        return json.loads(raw) if raw else None
    except (OSError, ValueError, pa.ArrowException):
        return None


# --------------------------------------------------------------------------- eligibility


def latest_committed_day(root: str, slug: str, first_index: int, next_index: int,
                         tables: Sequence[str] = TABLES) -> date | None:
    """Newest day holding a file of [first_index, next_index) (committed by the watermark)."""
    latest = None
    for table in tables:
        for day in reversed(partition_days(root, table, slug)):
            if day == layout.UNKNOWN_DATE or (latest is not None and day <= latest):
                break
            ranges = (layout.parse_range(n) for n in list_partition(layout.partition_dir(root, table, slug, day)))
            if any(r and first_index <= r[0] and r[1] <= next_index for r in ranges):
                latest = day
                break
    return latest


def compaction_horizon(latest_committed: date | None, mmd_seconds: int, today: date) -> date | None:
    """First day that may still receive rows: days strictly before it are closed.

    None when nothing is committed yet (no day is closed). See the module docstring: no
    entry after the watermark is older than (latest committed day 00:00 UTC) - MMD."""
    if latest_committed is None:
        return None
    cutoff = datetime.combine(latest_committed, time(), UTC) - timedelta(seconds=max(0, mmd_seconds))
    return min(today, cutoff.date())


def _plan(files: Mapping[str, os.stat_result], directory: str, first_index: int, next_index: int,
          now: datetime) -> list[RangeFile]:
    """The partition's files in range order, or _Refused naming the file that forbids a merge."""
    planned = []
    for name, st in files.items():
        bounds = layout.parse_range(name)
        if bounds is None:
            raise _Refused(f"{name} is not a range file")
        start, end = bounds
        f = RangeFile(name, os.path.join(directory, name), start, end, _identity(st))
        if end > next_index:
            raise _Refused(f"{name} is not committed (next_index {next_index})")
        if start < first_index and now - f.mtime < BACKFILL_QUIET:
            raise _Refused(f"{name} lies below first_index {first_index} and is younger than {BACKFILL_QUIET}"
                           " (a backfill may still be verifying it)")
        planned.append(f)
    planned.sort(key=lambda f: (f.start, f.end))
    reach = -1  # the furthest end of the files so far
    for before, after in zip(planned, planned[1:]):
        reach = max(reach, before.end)
        # Backfills by time name a file by the indexes its rows span, and a window's entries
        # interleave with the next window's where timestamps are out of order: below
        # first_index such files may overlap by name; _write_merged checks no row is twice.
        if after.start < reach and not after.end <= first_index:
            raise _Refused(f"{before.name} and {after.name} overlap: rows are in the lake twice "
                           "(a backfill rewrote a compacted range?); delete one copy")
    return planned


# --------------------------------------------------------------------------- merging


@dataclass(frozen=True, slots=True)
class PartitionResult:
    table: str
    slug: str
    day: date
    outcome: str  # "compacted", "unchanged" (nothing to merge) or "skipped"
    detail: str = ""
    files_before: int = 0
    rows: int = 0
    file: str = ""  # the merged file's name
    rescued: tuple[str, ...] = ()  # files moved back into the partition after the swap

    def to_json(self) -> dict:
        return {**asdict(self), "day": self.day.isoformat(), "rescued": list(self.rescued)}


def _checked(table: pa.Table, source: RangeFile) -> pa.Table:
    """`table` sorted by index; _Refused unless its indexes are distinct and in its range."""
    if table.num_rows == 0:
        return table
    index = table.column("index").to_numpy()
    if not (np.diff(index) > 0).all():
        table = table.sort_by("index")
        index = table.column("index").to_numpy()
        if not (np.diff(index) > 0).all():
            raise _Refused(f"{source.name} holds an index twice")
    if index[0] < source.start or index[-1] >= source.end:
        raise _Refused(f"{source.name} holds index {index[0]}..{index[-1]}, outside its range")
    return table


def _write_merged(staging: str, sources: Sequence[RangeFile]) -> tuple[str, int]:
    """Write the sources' rows, in index order, as one file in `staging`; (name, rows)."""
    name = layout.range_file_name(sources[0].start, max(s.end for s in sources))
    schema = pq.ParquetFile(sources[0].path).schema_arrow
    absorbed = set()
    for source in sources:
        absorbed |= {source.name} | absorbed_by(source.path)
    info = {"sources": [s.name for s in sources], "absorbed": sorted(absorbed),
            "compacted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    schema = schema.with_metadata({**(schema.metadata or {}), META_KEY: json.dumps(info).encode()})
    temporary = os.path.join(staging, f".{name}.{uuid.uuid4().hex}.tmp")
    rows, buffer, buffered = 0, [], 0
    cluster_end, cluster = -1, np.empty(0, dtype=np.int64)  # indexes of files overlapping by name
    with pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
        for source in sources:
            table = pq.ParquetFile(source.path).read()
            if not table.schema.equals(schema, check_metadata=False):
                raise _Refused(f"{source.name} has another schema than {sources[0].name}")
            table = _checked(table, source)
            index = table.column("index").to_numpy()
            if source.start < cluster_end:
                twice = np.intersect1d(cluster, index)
                if twice.size:
                    raise _Refused(f"{source.name} holds index {twice[0]} that another file of the day holds too: "
                                   "rows are in the lake twice; delete one copy")
                cluster = np.concatenate([cluster, index])
            else:
                cluster = index
            cluster_end = max(cluster_end, source.end)
            buffer.append(table)
            buffered += table.num_rows
            if buffered >= ROW_GROUP_ROWS:
                writer.write_table(pa.concat_tables(buffer), row_group_size=ROW_GROUP_ROWS)
                rows, buffer, buffered = rows + buffered, [], 0
        if buffer:
            writer.write_table(pa.concat_tables(buffer), row_group_size=ROW_GROUP_ROWS)
            rows += buffered
    written = pq.ParquetFile(temporary).metadata.num_rows
    if written != rows:
        raise CompactionError(f"{temporary}: wrote {written} rows, expected {rows}")
    with open(temporary, "rb") as fh:
        os.fsync(fh.fileno())
    os.rename(temporary, os.path.join(staging, name))
    _fsync_dir(staging)
    return name, rows


def settle(staging: str, partition: str) -> tuple[list[str], list[str]]:
    """Empty and remove a staging directory, whichever side of the exchange it is on.

    A file whose rows are live in `partition` (same name, or absorbed by a live merged file)
    is deleted; an unswapped merged file is deleted; any other Parquet file is moved into
    `partition`. Returns (deleted, rescued) names. Idempotent: safe to repeat after a crash."""
    live = list_partition(partition)
    covered = set(live)
    for name in live:
        covered |= absorbed_by(os.path.join(partition, name))
    deleted, rescued = [], []
    for entry in list(os.scandir(staging)):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        elif not _visible(entry.name) or entry.name in covered or _merge_info(entry.path) is not None:
            os.unlink(entry.path)
            deleted.append(entry.name)
        else:
            os.makedirs(partition, exist_ok=True)
            os.rename(entry.path, os.path.join(partition, entry.name))
            rescued.append(entry.name)
    if rescued:
        _fsync_dir(partition)
        log.warning("%s: %s were written into the partition while it was swapped; moved back",
                    partition, ", ".join(rescued))
    os.rmdir(staging)
    return deleted, rescued


def recover(root: str, table: str, slug: str) -> int:
    """Settle every staging directory a crashed or failed compaction of this log left; returns
    how many there were. Run under the log's lock, before anything else."""
    parent = layout.staging_dir(root, table, slug)
    try:
        names = sorted(os.listdir(parent))
    except FileNotFoundError:
        return 0
    count = 0
    for name in names:
        if name.startswith("probe."):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            continue
        day_name, _, tag = name.rpartition(".")
        day = layout.parse_day_dir(day_name)
        if day is None or not _STAGING_TAG.match(tag):
            log.warning("%s: unexpected entry %s left alone", parent, name)
            continue
        deleted, rescued = settle(os.path.join(parent, name), layout.partition_dir(root, table, slug, day))
        log.info("%s/%s: leftover %s settled (%d deleted, %d moved back)",
                 table, slug, name, len(deleted), len(rescued))
        count += 1
    return count


def compact_partition(root: str, table: str, slug: str, day: date, *, first_index: int, next_index: int,
                      now: datetime | None = None) -> PartitionResult:
    """Merge one day partition into one file sorted by index, swapped in atomically.

    The caller holds the log's lock and has checked that `day` is closed. A partition that
    is already one file is "unchanged"; one that cannot be merged safely now is "skipped"
    with the reason. On an exception the staging directory is settled before re-raising."""
    now = now or datetime.now(UTC)
    partition = layout.partition_dir(root, table, slug, day)
    files = list_partition(partition)
    result = partial(PartitionResult, table=table, slug=slug, day=day, files_before=len(files))
    if len(files) < 2:
        return result(outcome="unchanged", detail="one file or none")
    try:
        sources = _plan(files, partition, first_index, next_index, now)
    except _Refused as why:
        return result(outcome="skipped", detail=str(why))

    staging = os.path.join(layout.staging_dir(root, table, slug), f"{layout.day_dir_name(day)}.{uuid.uuid4().hex}")
    os.makedirs(staging)
    try:
        _reached("staged")
        try:
            name, rows = _write_merged(staging, sources)
        except _Refused as why:
            settle(staging, partition)
            return result(outcome="skipped", detail=str(why))
        _reached("written")
        now_listed = list_partition(partition)
        if {n: _identity(st) for n, st in now_listed.items()} != {s.name: s.identity for s in sources}:
            settle(staging, partition)
            return result(outcome="skipped", detail="files changed while merging; next run")
        _reached("rechecked")
        exchange(staging, partition)
        _reached("exchanged")
        _fsync_dir(os.path.dirname(partition))
        _fsync_dir(os.path.dirname(staging))
        _, rescued = settle(staging, partition)
        _reached("settled")
    except Exception:
        if os.path.isdir(staging):
            settle(staging, partition)
        raise
    return result(outcome="compacted", rows=rows, file=name, rescued=tuple(rescued),
                  detail=f"{len(sources)} files -> {name}")


# --------------------------------------------------------------------------- per log


@dataclass(frozen=True, slots=True)
class LogCompaction:
    slug: str
    horizon: date | None  # days before it were closed
    recovered: int  # leftover staging directories settled first
    partitions: tuple[PartitionResult, ...]
    note: str = ""

    def count(self, outcome: str) -> int:
        return sum(p.outcome == outcome for p in self.partitions)

    def to_json(self) -> dict:
        return {"slug": self.slug, "horizon": self.horizon.isoformat() if self.horizon else None,
                "recovered": self.recovered, "note": self.note,
                "compacted": self.count("compacted"), "skipped": self.count("skipped"),
                "unchanged": self.count("unchanged"),
                "partitions": [p.to_json() for p in self.partitions if p.outcome != "unchanged"]}


@contextlib.contextmanager
def log_lock(root: str, slug: str) -> Iterator[None]:
    """Exclusive, non-blocking lock of one log's compaction; CompactionBusy if taken."""
    import fcntl

    lock = layout.staging_lock(root, slug)
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionBusy(f"another compaction of {slug} is running") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def compact_log(lake: Lake, slug: str, *, first_index: int, next_index: int, mmd_seconds: int,
                today: date | None = None, days_back: int | None = None, tables: Sequence[str] = TABLES,
                now: datetime | None = None) -> LogCompaction:
    """Settle leftovers, then compact every closed day partition of `slug` in `tables`
    (only the last `days_back` days before today when given). Safe to run at any time,
    concurrently with ingest; one compaction per log at a time (else CompactionBusy)."""
    now = now or datetime.now(UTC)
    today = today or now.date()
    try:
        root = layout.local_root(lake.uri(lake.root))
    except ValueError as err:
        raise CompactionUnsupported(f"compaction needs a local/POSIX lake (atomic directory exchange): {err}") from None
    with log_lock(root, slug):
        recovered = sum(recover(root, table, slug) for table in tables)
        for table in tables:  # what killed writers left where no later write of the same file came
            for day in partition_days(root, table, slug):
                remove_stale_temporaries(lake, layout.partition_dir(root, table, slug, day))
        latest = latest_committed_day(root, slug, first_index, next_index, tables)
        horizon = compaction_horizon(latest, mmd_seconds, today)
        if horizon is None:
            return LogCompaction(slug, None, recovered, (), "nothing committed yet")
        if not swap_supported(layout.staging_dir(root, tables[0], slug)):
            return LogCompaction(slug, horizon, recovered, (), "no atomic directory exchange on this filesystem")
        oldest = today - timedelta(days=days_back) if days_back else date.min
        results = []
        for table in tables:
            for day in partition_days(root, table, slug):
                if day == layout.UNKNOWN_DATE or not oldest <= day < horizon:
                    continue
                result = compact_partition(root, table, slug, day, first_index=first_index,
                                           next_index=next_index, now=now)
                if result.outcome != "unchanged":
                    log.log(logging.WARNING if result.outcome == "skipped" else logging.INFO,
                            "%s/%s/%s: %s: %s", table, slug, day, result.outcome, result.detail)
                results.append(result)
    return LogCompaction(slug, horizon, recovered, tuple(results))


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
    log.info("%s: %d partitions compacted, %d skipped, %d already compact (closed before %s)%s",
             report.slug, report.count("compacted"), report.count("skipped"), report.count("unchanged"),
             report.horizon, f"; {report.note}" if report.note else "")
    return report.to_json()
