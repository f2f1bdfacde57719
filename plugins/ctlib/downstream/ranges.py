"""Reading the rows of entries [start, end) of one log from the lake, whatever compaction did:
what a downstream run reads for its range (ctlib.downstream.progress), never the file names
an asset event carried.

- Only live files (ctlib.lake.manifest.live_files: a compacted partition's merged file, the
  range files its manifest has not absorbed), so each entry is read once on a local disk or
  an object store.
- Only the day partitions the range can lie in: from `since` (the watermark's day: the UTC
  day of the newest entry processed) minus the log's MMD (entries are integrated in index
  order within the MMD of their timestamp, so no later entry is older than that) to
  tomorrow (a log's clock may run a little ahead); all of the log's days when `since` is
  unknown (a log first seen). `errors` rows without a timestamp live in the 1970-01-01
  partition: always listed.
- Only the files whose name's span ([start, end) of a range or merged file) meets the range,
  and only their rows with an index in it (a dataset filter: row groups outside are skipped).

`read_entries` reads a range of committed entries and checks that `certs` and `errors`
together hold every index of it (the ingest's contract): when the day-bounded listing misses
some (a log that broke its MMD), it lists every day of the log and reads again; what is still
missing raises RangeError, naming the log and the first missing index, instead of a watermark
moving over entries nobody processed. `read_rows` reads one table's rows of a range with no
such check (alerts are sparse; backfilled history may have holes). `read_indexes` reads some
rows by index (the certificates of a few alerts).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ctlib.lake import layout
from ctlib.lake.files import Lake
from ctlib.lake.manifest import LiveFile, live_files
from ctlib.lake.reading import dataset

log = logging.getLogger(__name__)

READ_ATTEMPTS = 3
"""Listings tried when a listed file is gone before it is read (a compaction deleted what it
had absorbed in between): each try lists anew."""


class RangeError(RuntimeError):
    """The lake does not hold every committed entry of a range; the message names the log,
    the range and the first missing index."""


@dataclass(frozen=True, slots=True)
class RangeRows:
    """What `read_entries` / `read_rows` found of [start, end): `rows` (the columns asked, one
    row per index, sorted by index), `newest_day` (the UTC day of the newest entry timestamp
    of the range, None without one), `files` (the live files of the table read: `certs` for
    `read_entries`), to read more columns of the same rows from."""

    rows: pa.Table
    newest_day: date | None
    files: tuple[str, ...]


def listing_days(since: date | None, today: date, mmd_seconds: int = 86400) -> list[date] | None:
    """The day partitions to list for a range whose entries are no older than `since` minus
    the MMD (whole days, at least one), up to tomorrow; None (every day) when `since` is None."""
    if since is None:
        return None
    first = since - timedelta(days=max(1, math.ceil(mmd_seconds / 86400)))
    last = max(since, today) + timedelta(days=1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def overlapping(files: Sequence[LiveFile], start: int, end: int) -> list[LiveFile]:
    """The files whose name's span meets [start, end) (a file of no known span: kept)."""
    keep = []
    for file in files:
        span = file.span
        if span is None or (span[0] < end and start < span[1]):
            keep.append(file)
    return keep


def _read(lake: Lake, table: str, slug: str, start: int, end: int, columns: Sequence[str],
          days: list[date] | None) -> tuple[pa.Table, tuple[str, ...]]:
    """`columns` (with index) of `table`'s rows of [start, end) in the live files of `days`,
    listed anew when a file vanished before it was read."""
    wanted = list(dict.fromkeys(["index", *columns]))
    where = (ds.field("index") >= start) & (ds.field("index") < end)
    for attempt in range(1, READ_ATTEMPTS + 1):
        files = overlapping(live_files(lake, table, slug=slug, days=days), start, end)
        try:
            rows = dataset(lake, table, files).to_table(columns=wanted, filter=where)
        except FileNotFoundError as err:
            if attempt == READ_ATTEMPTS:
                raise
            log.info("%s/%s: %s; listing again", table, slug, err)
            continue
        return rows, tuple(f.path for f in files)
    raise AssertionError("unreachable")


def _once_per_index(rows: pa.Table, what: str) -> pa.Table:
    """`rows` sorted by index, the first of any index met twice dropped with a warning (the
    lake's audit reports such a copy; a downstream run must not double its output)."""
    if rows.num_rows == 0:
        return rows
    index = rows.column("index").to_numpy()
    order = np.argsort(index, kind="stable")
    ordered = index[order]
    keep = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    if not keep.all():
        twice = ordered[~keep]
        log.warning("%s: %d row(s) of an index met twice (first index %d): each read once", what, len(twice),
                    int(twice[0]))
    return rows.take(pa.array(order[keep]))


def _newest_day(*columns: pa.ChunkedArray) -> date | None:
    newest: datetime | None = None
    for column in columns:
        value = pc.max(column).as_py() if len(column) else None
        if value is not None and (newest is None or value > newest):
            newest = value
    return newest.date() if newest is not None else None


def read_rows(lake: Lake, table: str, slug: str, start: int, end: int, *, columns: Sequence[str],
              since: date | None, today: date, mmd_seconds: int = 86400) -> RangeRows:
    """`table`'s rows of log `slug` with an index in [start, end), from the days `since`
    allows (`listing_days`), sorted by index (several rows may share one: scores, alerts).
    No completeness check."""
    rows, files = _read(lake, table, slug, start, end, [*columns, "timestamp"],
                        listing_days(since, today, mmd_seconds))
    rows = rows.sort_by("index")
    return RangeRows(rows.select(list(dict.fromkeys(["index", *columns]))), _newest_day(rows.column("timestamp")),
                     files)


def read_entries(lake: Lake, slug: str, start: int, end: int, *, columns: Sequence[str], since: date | None,
                 today: date, mmd_seconds: int = 86400, complete: bool = True) -> RangeRows:
    """The `certs` rows (`columns`, with index) of committed entries [start, end) of `slug`.
    With `complete`, `certs` and `errors` together must hold every index of the range
    (module docstring): read again over every day of the log when they do not, then
    RangeError."""
    days = listing_days(since, today, mmd_seconds)
    while True:
        certs, files = _read(lake, layout.CERTS, slug, start, end, [*columns, "timestamp"], days)
        certs = _once_per_index(certs, f"certs/{slug} [{start}, {end})")
        errors, _ = _read(lake, layout.ERRORS, slug, start, end, ["timestamp"],
                                    None if days is None else [*days, layout.UNKNOWN_DATE])
        if not complete:
            break
        held = np.union1d(certs.column("index").to_numpy(), errors.column("index").to_numpy())
        if len(held) == end - start:
            break
        missing = int(next((i for i, have in zip(range(start, end), held, strict=False) if i != have),
                           start + len(held)))
        if days is None:
            raise RangeError(f"{slug}: the lake holds {len(held)} of the {end - start} committed entries "
                             f"[{start}, {end}) (certs and errors together); the first missing index is {missing}. "
                             f"Run `python -m ctlib.audit --log {slug}`")
        log.warning("%s: %d entries of [%d, %d) are not in the day partitions from %s (the first: %d): "
                    "an entry older than its MMD allows; reading every day of the log", slug,
                    end - start - len(held), start, end, days[0], missing)
        days = None
    return RangeRows(certs.select(list(dict.fromkeys(["index", *columns]))),
                     _newest_day(certs.column("timestamp"), errors.column("timestamp")), files)


def read_indexes(lake: Lake, table: str, slug: str, indexes: Sequence[int], *, columns: Sequence[str],
                 days: Sequence[date] | None) -> pa.Table:
    """`columns` (with index) of `table`'s rows of `slug` whose index is one of `indexes`, in
    the live files of `days` (every day: None) whose span meets them."""
    if not indexes:
        return dataset(lake, table, []).to_table(columns=list(dict.fromkeys(["index", *columns])))
    wanted = list(dict.fromkeys(["index", *columns]))
    files = overlapping(live_files(lake, table, slug=slug, days=days), min(indexes), max(indexes) + 1)
    return dataset(lake, table, files).to_table(columns=wanted, filter=ds.field("index").isin(list(indexes)))
