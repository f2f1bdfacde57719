"""The three steps of one ingest run of one log: plan, fetch (per range), commit.

Plain functions of (log, settings, store, lake): the DAG's tasks only call them. Their
inputs and outputs are small JSON-able records (XComs). Invariants kept here:
- the stored watermark moves only in `commit_run`, after every planned range reported back
  from `fetch_range`, which returns only once its rows are in the lake and acknowledged by Kafka;
- nothing is believed unverified: `plan_run` checks the tree head's signature and its
  consistency with the last verified one; `commit_run` checks that the entries hash to a
  signed root. Any mismatch is an incident: recorded in the lake, the run fails loudly, the
  watermark stays, and the run's files are removed.
"""

from __future__ import annotations

import base64
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from ctlib.ct.client import open_client
from ctlib.ct.limits import limits_for
from ctlib.ct.loglist import CTLog
from ctlib.ct.merkle import CompactRange, MerkleError, verify_consistency
from ctlib.ct.tiles import TILE_WIDTH
from ctlib.ct.types import LogClient, RawEntry, TreeHead, VerificationError
from ctlib.decode.entries import ChainCache, LogRef, decode_entries
from ctlib.ingest.plan import check_coverage, plan_ranges
from ctlib.ingest.state import LogState, PendingPlan, PointStore, StateError, StateStore
from ctlib.ingest.timeindex import TimeIndex, disorder_beyond
from ctlib.lake import layout
from ctlib.lake.files import Lake, delete_files, read_json, write_incident, write_json, write_range
from ctlib.lake.layout import CERTS_SCHEMA, ERRORS_SCHEMA
from ctlib.settings import Settings

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """A run cannot go on; the message names the log and the index range."""


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class RunPlan:
    slug: str
    start: int
    tree_size: int
    sth_timestamp: int
    root_hash: str  # base64, of the verified tree head of size tree_size
    ranges: list[tuple[int, int]] = field(default_factory=list)
    mode: str = "watermark"
    """"watermark" (a normal run), "backfill" (an index range) or "window" (the entries logged
    in a time window); the last two leave the watermark alone."""
    keep: KeepRule | None = None
    """Window runs: which fetched entries are stored (the others are only verified)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunPlan:
        keep = KeepRule.from_json(obj["keep"]) if obj.get("keep") else None
        return cls(**{**obj, "ranges": [tuple(r) for r in obj["ranges"]], "keep": keep})


@dataclass(frozen=True, slots=True)
class KeepRule:
    """The entries a backfill by time stores of what it fetches: those whose own log
    timestamp is in [window_start_ms, window_end_ms), below `below` (where scheduled
    ingestion began: it holds the rest) and not in `held` (index runs the lake already holds,
    from an earlier backfill). `disorder_ms` is CT_BACKFILL_DISORDER, which the fetched
    timestamps must keep within for the window's index range to be complete."""

    window_start_ms: int
    window_end_ms: int
    below: int
    disorder_ms: int
    held: list[tuple[int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> KeepRule:
        return cls(**{**obj, "held": [tuple(r) for r in obj.get("held", ())]})

    def clipped(self, start: int, end: int) -> KeepRule:
        """The same rule with only the held runs that meet [start, end) (for one work item)."""
        return replace(self, held=[(s, e) for s, e in self.held if s < end and e > start])

    def mask(self, start: int, timestamps: np.ndarray) -> np.ndarray:
        """Which entries of [start, start + len(timestamps)) are kept (-1: no timestamp)."""
        index = np.arange(start, start + len(timestamps))
        keep = (timestamps >= self.window_start_ms) & (timestamps < self.window_end_ms) & (index < self.below)
        for s, e in self.held:
            keep[max(s - start, 0):max(e - start, 0)] = False
        return keep


@dataclass(frozen=True, slots=True)
class RangeSummary:
    start: int
    end: int
    certs: int
    errors: int
    cert_files: list[str]
    error_files: list[str]
    kafka_messages: int
    seconds: float
    compact_range: dict[str, Any]  # CompactRange.to_json() of [start, end)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RangeSummary:
        return cls(**obj)


def record_incident(lake: Lake, ctlog: CTLog, err: VerificationError, *, served: TreeHead | None,
                    verified_size: int | None) -> None:
    path = write_incident(lake, {
        "log_id": ctlog.log_id, "log_slug": ctlog.slug, "timestamp": datetime.now(UTC),
        "kind": err.kind, "details": str(err),
        "tree_size": served.size if served else None, "verified_size": verified_size,
        "signed": served.signed if served else None,
    })
    log.error("%s: INCIDENT %s: %s (recorded in %s)", ctlog.slug, err.kind, err, path)


def _prefix_problem(client: LogClient, size1: int, root1: bytes, size2: int, root2: bytes) -> str | None:
    """None if the tree (size1, root1) is a prefix of the signed tree (size2, root2), as a
    consistency proof from the log shows; else what is wrong."""
    if size1 == size2:
        return None if root1 == root2 else f"roots {_b64(root1)} and {_b64(root2)} differ"
    try:
        verify_consistency(size1, size2, client.consistency_proof(size1, size2), root1, root2)
    except MerkleError as err:
        return str(err)
    return None


def check_tree_head(client: LogClient, state: LogState, head: TreeHead) -> None:
    """Raise VerificationError unless `head` extends the last verified tree head of `state`."""
    slug = client.log.slug
    if head.size < state.tree_size:
        raise VerificationError(
            "rollback", f"{slug}: tree head of size {head.size} is smaller than the verified size {state.tree_size}"
        )
    if not state.root_hash or state.tree_size == 0:
        return
    problem = _prefix_problem(client, state.tree_size, base64.b64decode(state.root_hash), head.size, head.root_hash)
    if problem and head.size == state.tree_size:
        raise VerificationError("fork", f"{slug}: two different signed roots for tree size {head.size}: {problem}")
    if problem:
        raise VerificationError(
            "inconsistent", f"{slug}: tree head of size {head.size} is not consistent with the "
            f"verified one of size {state.tree_size}: {problem}"
        )


def _end_for_tiles(ctlog: CTLog, state: LogState, head: TreeHead, pending: PendingPlan | None,
                   settings: Settings, now_ms: int | None = None) -> tuple[int, int, int]:
    """Where this run may read up to, and the partial tile left waiting with since when it
    has been seen partial: `(end, partial_tile, partial_since_ms)`, the tile -1 when none.

    Tiled logs: whole tiles first; the last, partial tile only once CT_PARTIAL_TILE_WAIT has
    passed since a run first saw that tile partial, also a run that read full tiles before
    it (a log that stops growing then has its tail read by the next run, not two later)."""
    if ctlog.kind != "static" or head.size % TILE_WIDTH == 0 or state.next_index >= head.size:
        return head.size, -1, 0
    tile = head.size // TILE_WIDTH
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since = pending.partial_since_ms if pending and pending.partial_tile == tile else now_ms
    if now_ms - since >= settings.partial_tile_wait * 1000:
        return head.size, -1, 0
    return max(state.next_index, head.size - head.size % TILE_WIDTH), tile, since


def log_limits(ctlog: CTLog, settings: Settings) -> None:
    """Say in the ingest task's log how politely this log is read (ctlib.ct.limits)."""
    log.info("%s: limits %s", ctlog.slug, limits_for(ctlog, settings).describe(ctlog.kind, settings))


def plan_run(ctlog: CTLog, settings: Settings, store: StateStore, lake: Lake) -> RunPlan:
    """Verify the log's tree head, then choose this run's ranges (empty when idle)."""
    log_limits(ctlog, settings)
    client = open_client(ctlog, settings)
    state = store.load(ctlog.slug)
    head = None
    try:
        head = client.tree_head()
        if state is None:
            state = _first_state(client, head, settings)
            store.save(ctlog.slug, state)  # the starting point of a new log, not an advance
        check_tree_head(client, state, head)
    except VerificationError as err:
        record_incident(lake, ctlog, err, served=head, verified_size=state.tree_size if state else None)
        raise
    finally:
        client.close()
    pending = store.load_plan(ctlog.slug)
    end, partial_tile, partial_since = _end_for_tiles(ctlog, state, head, pending, settings)
    reuse = pending.ranges if pending and pending.start == state.next_index else ()
    ranges = plan_ranges(
        state.next_index, end,
        per_run=settings.entries_per_run, per_task=settings.entries_per_task,
        max_tasks=settings.max_tasks_per_run, pending=reuse,
    )
    hint = PendingPlan(state.next_index, tuple(ranges), partial_tile=partial_tile, partial_since_ms=partial_since)
    waiting = partial_tile >= 0 and not ranges
    if hint != pending and (ranges or waiting):
        store.save_plan(ctlog.slug, hint)
    log.info(
        "%s: verified tree size %d (was %d), next index %d, backlog %d; this run fetches %d entries in %d range(s)%s",
        ctlog.slug, head.size, state.tree_size, state.next_index, head.size - state.next_index,
        sum(e - s for s, e in ranges), len(ranges),
        " (reusing an unfinished run's ranges)" if reuse else (" (waiting for a partial tile to fill)" if waiting else ""),
    )
    return RunPlan(slug=ctlog.slug, start=state.next_index, tree_size=head.size,
                   sth_timestamp=head.timestamp, root_hash=_b64(head.root_hash), ranges=ranges)


BACKFILL_CELL = 8192
"""Backfill ranges are whole cells of this grid (clipped to what may be backfilled), so
repeated or overlapping backfills rewrite the same files instead of doubling rows."""


def _backfill_head(ctlog: CTLog, client: LogClient, state: LogState | None, lake: Lake) -> TreeHead:
    """The log's verified tree head, checked against the stored one when there is one; an
    incident is recorded and raised when it does not verify."""
    head = None
    try:
        head = client.tree_head()
        if state is not None:
            check_tree_head(client, state, head)
        return head
    except VerificationError as err:
        record_incident(lake, ctlog, err, served=head, verified_size=state.tree_size if state else None)
        raise


def plan_backfill(ctlog: CTLog, settings: Settings, store: StateStore, lake: Lake,
                  start_index: int, end_index: int) -> RunPlan:
    """Ranges for fetching [start_index, end_index) without touching the watermark: history
    before where ingestion began (first_index), or the tree of a log not ingested yet."""
    log_limits(ctlog, settings)
    client = open_client(ctlog, settings)
    state = store.load(ctlog.slug)
    try:
        head = _backfill_head(ctlog, client, state, lake)
    finally:
        client.close()
    limit = state.first_index if state is not None else head.size
    if not 0 <= start_index < end_index:
        raise IngestError(f"{ctlog.slug}: backfill needs 0 <= start_index < end_index, got [{start_index}, {end_index})")
    if end_index > limit:
        why = (f"indexes from {state.first_index} on are ingested by the scheduled runs (next_index {state.next_index})"
               if state is not None else f"the verified tree size is {head.size}")
        raise IngestError(f"{ctlog.slug}: cannot backfill [{start_index}, {end_index}): {why}")
    first = start_index - start_index % BACKFILL_CELL
    last = min(limit, -(-end_index // BACKFILL_CELL) * BACKFILL_CELL)
    ranges = _cells(first, last)
    log.info("%s: backfill of [%d, %d) as %d cell(s) [%d, %d); the watermark is not touched",
             ctlog.slug, start_index, end_index, len(ranges), first, last)
    return RunPlan(slug=ctlog.slug, start=first, tree_size=head.size, sth_timestamp=head.timestamp,
                   root_hash=_b64(head.root_hash), ranges=ranges, mode="backfill")


def _cells(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) cut at every multiple of BACKFILL_CELL."""
    return [(max(s, start), min(s + BACKFILL_CELL, end))
            for s in range(start - start % BACKFILL_CELL, end, BACKFILL_CELL)]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_utc(ms: int) -> str:
    """A time in ms as ISO-8601 UTC with a Z, to the millisecond (windows in logs and XComs)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan_window(ctlog: CTLog, settings: Settings, store: StateStore, lake: Lake, points: PointStore,
                window_start: datetime, window_end: datetime) -> RunPlan:
    """Ranges for storing every entry logged in [window_start, window_end) (its log timestamp)
    that scheduled ingestion does not hold, without touching the watermark.

    The window's index range comes from a search of the log (ctlib.ingest.timeindex), started
    from the lake's own points near the window's edges and from `points` (learned by earlier
    searches, saved back). It is read in BACKFILL_CELL-aligned ranges; what is stored is set by
    the plan's KeepRule: the window's entries below first_index (scheduled ingestion holds the
    rest), less any the lake holds already from an earlier backfill of another shape. The
    files of this same window (an earlier or failed attempt) are not held: they are written
    again under the same names, published again and verified with the rest."""
    from ctlib.lake.known import days_between, held_runs, time_points

    start_ms, end_ms = _ms(window_start), _ms(window_end)
    if end_ms <= start_ms:
        raise IngestError(f"{ctlog.slug}: empty time window [{iso_utc(start_ms)}, {iso_utc(end_ms)})")
    window = f"[{iso_utc(start_ms)}, {iso_utc(end_ms)})"
    marker = layout.backfill_marker(lake.root, ctlog.slug, start_ms, end_ms)
    done = read_json(lake, marker)
    if done is not None:
        log.info("%s: the window %s was backfilled already (%s): nothing to do; delete %s to do it again",
                 ctlog.slug, window, done, marker)
        return RunPlan(slug=ctlog.slug, start=int(done.get("start", 0)), tree_size=int(done.get("tree_size", 0)),
                       sth_timestamp=0, root_hash="", ranges=[], mode="window")
    disorder_ms = int(settings.backfill_disorder * 1000)
    low, high = start_ms - disorder_ms, end_ms + disorder_ms
    log_limits(ctlog, settings)
    client = open_client(ctlog, settings)
    state = store.load(ctlog.slug)
    try:
        head = _backfill_head(ctlog, client, state, lake)
        known = [*points.load(ctlog.slug), *time_points(settings.lake, ctlog.slug, [low, high], span_ms=3_600_000)]
        size = head.size
        index = TimeIndex(size, lambda i, n: client.entry_timestamps(i, size, n), known, slug=ctlog.slug)
        first, end = index.window_range(start_ms, end_ms, disorder_ms)
        points.save(ctlog.slug, index.cacheable())
    finally:
        client.close()
    below = state.first_index if state is not None else head.size
    fetch_end = min(end, below)
    held = (held_runs(settings.lake, ctlog.slug, first, fetch_end, days_between(low, high), own=(start_ms, end_ms))
            if first < fetch_end else [])
    ranges = _cells(first, fetch_end) if first < fetch_end else []
    keep = KeepRule(start_ms, end_ms, below=below, disorder_ms=disorder_ms, held=held)
    log.info("%s: entries logged in %s lie in [%d, %d) (searched with %d probe(s) of the log, %d point(s) known); "
             "scheduled ingestion holds [%d, ...); this run reads [%d, %d) in %d range(s)%s; the watermark is not touched",
             ctlog.slug, window, first, end, index.probes, len(known), below, first, max(first, fetch_end), len(ranges),
             f", {sum(e - s for s, e in held)} entries of it already in the lake" if held else "")
    if end >= head.size and high > head.timestamp:
        log.warning("%s: the window %s reaches the end of the tree (size %d): entries logged later may still fall "
                    "in it; the scheduled runs ingest those", ctlog.slug, window, head.size)
    return RunPlan(slug=ctlog.slug, start=first, tree_size=head.size, sth_timestamp=head.timestamp,
                   root_hash=_b64(head.root_hash), ranges=ranges, mode="window", keep=keep)


def commit_backfill(ctlog: CTLog, plan: RunPlan, summaries: list[RangeSummary], lake: Lake,
                    settings: Settings) -> CompactRange:
    """Check the backfilled entries against the signed root; the watermark stays."""
    try:
        check_coverage(plan.ranges, [(s.start, s.end) for s in summaries], ctlog.slug)
    except ValueError as err:
        raise IngestError(str(err)) from None
    client = open_client(ctlog, settings)
    head = TreeHead(plan.tree_size, plan.sth_timestamp, base64.b64decode(plan.root_hash), "")
    try:
        compact = _merged(client.compact_range_before(plan.start, head), summaries)
        _verify_or_discard(client, lake, plan, compact, summaries, verified_size=plan.tree_size)
    finally:
        client.close()
    log.info("%s: backfill [%d, %d) verified against tree size %d", ctlog.slug, plan.start, compact.end, plan.tree_size)
    if plan.keep is not None:
        write_json(lake, layout.backfill_marker(lake.root, ctlog.slug, plan.keep.window_start_ms, plan.keep.window_end_ms), {
            "start": plan.start, "end": compact.end, "tree_size": plan.tree_size,
            "certs": sum(s.certs for s in summaries), "errors": sum(s.errors for s in summaries),
            "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        })
    return compact


def _first_state(client: LogClient, head: TreeHead, settings: Settings) -> LogState:
    """Where a log with no stored state starts (CT_START_AT): at 0, at its tree size, or at
    the first entry logged at or after a time (a search of the log; CT_BACKFILL_DISORDER
    earlier, so that no entry logged after the time lies before the start)."""
    first = 0 if settings.start_at == "beginning" else head.size
    at = settings.start_at_time
    if at is not None:
        index = TimeIndex(head.size, lambda i, n: client.entry_timestamps(i, head.size, n), slug=client.log.slug)
        first = index.crossing(_ms(at) - int(settings.backfill_disorder * 1000)).after
    if first == 0:
        anchor = CompactRange.empty()
    elif first == head.size:
        anchor = client.compact_range_at(head)
    else:  # checked against a signed root by the first commit, with the entries after it
        anchor = client.compact_range_before(first, head)
    log.info("%s: no stored state; starting at index %d of tree size %d (CT_START_AT=%s)",
             client.log.slug, first, head.size, settings.start_at)
    return LogState(next_index=first, first_index=first, tree_size=head.size if first else 0,
                    sth_timestamp=head.timestamp if first else 0,
                    root_hash=_b64(head.root_hash) if first else "",
                    compact_range=tuple(h.hex() for h in anchor.hashes))


def fetch_range(
    ctlog: CTLog,
    start: int,
    end: int,
    settings: Settings,
    lake: Lake,
    producer_factory: Callable[[], Any] | None,
    *,
    alone: bool = False,
    keep: KeepRule | None = None,
) -> RangeSummary:
    """Download, decode and store [start, end): Parquet first, then Kafka. Idempotent.

    Reads at the log's request rate / CT_FETCH_PARALLELISM (a mapped fetch task, one of up to
    that many at once), or at the whole rate when `alone` (the ingest task fetching a small backlog itself).
    With `keep` (a backfill by time) every entry is downloaded and hashed for verification,
    but only the entries the rule keeps are stored and published."""
    began = time.monotonic()
    ingested_at = datetime.now(UTC)
    ref = LogRef(log_id=ctlog.log_id, slug=ctlog.slug)
    cache = ChainCache()
    cert_tables: list[pa.Table] = []
    error_tables: list[pa.Table] = []
    leaf_hashes: list[bytes] = []
    client = open_client(ctlog, settings, share=1 if alone else settings.fetch_parallelism)
    try:
        # The whole range first, then decoding: decoding while the get-entries threads read
        # answers costs ~25 us of CPU an entry in GIL hand-offs (cryptography drops the GIL
        # many times a certificate), more than a third of decoding itself.
        windows = list(client.fetch_range(start, end, batch=settings.get_entries_batch,
                                          in_flight=settings.http_in_flight))
        log.info("%s: downloaded [%d, %d) in %.1fs; %d requests, %d retries, %.1fs waited for the rate limit",
                 ctlog.slug, start, end, time.monotonic() - began,
                 client.session.requests_made, client.session.retries_made, client.session.bucket.waited)
    finally:
        client.close()
    kept = None if keep is None else _kept(ctlog, start, windows, keep)
    windows.reverse()  # popped in index order, each window's bytes freed once decoded
    while windows:
        window = windows.pop()
        if window[0].index != start + len(leaf_hashes):
            raise IngestError(f"{ctlog.slug}: expected index {start + len(leaf_hashes)}, got {window[0].index}")
        batch = decode_entries(ref, window, ingested_at, store_der=settings.store_der, chain_cache=cache)
        cert_tables.append(batch.certs)
        error_tables.append(batch.errors)
        leaf_hashes.extend(batch.leaf_hashes)
    if len(leaf_hashes) != end - start:
        raise IngestError(f"{ctlog.slug}: [{start}, {end}) gave {len(leaf_hashes)} entries")
    compact = CompactRange.from_leaf_hashes(start, leaf_hashes)
    certs = pa.concat_tables(cert_tables) if cert_tables else CERTS_SCHEMA.empty_table()
    errors = pa.concat_tables(error_tables) if error_tables else ERRORS_SCHEMA.empty_table()
    if kept is not None:
        certs, errors = _only(certs, kept, start), _only(errors, kept, start)
        log.info("%s: [%d, %d): %d entries logged in the window are stored, the other %d only verified",
                 ctlog.slug, start, end, int(kept.sum()), end - start - int(kept.sum()))
    if errors.num_rows:
        log.warning("%s: %d entries of [%d, %d) could not be decoded; kept in errors/ (first: %s)",
                    ctlog.slug, errors.num_rows, start, end, errors["reason"][0].as_py())
    time_window = None if keep is None else (keep.window_start_ms, keep.window_end_ms)
    cert_files = write_range(lake, "certs", ctlog.slug, start, end, certs, window=time_window)
    error_files = write_range(lake, "errors", ctlog.slug, start, end, errors, window=time_window)
    delivered = 0
    if producer_factory is not None and certs.num_rows:
        from ctlib.kafka import publish, rows_as_messages

        delivered = publish(
            producer_factory(), settings.kafka_topic, rows_as_messages(certs),
            timeout=settings.kafka_flush_timeout, what=f"{ctlog.slug} [{start}, {end})",
        )
    summary = RangeSummary(
        start=start, end=end, certs=certs.num_rows, errors=errors.num_rows,
        cert_files=[lake.uri(path) for path in cert_files],
        error_files=[lake.uri(path) for path in error_files],
        kafka_messages=delivered, seconds=round(time.monotonic() - began, 3),
        compact_range=compact.to_json(),
    )
    log.info("%s: [%d, %d) stored: %d certs, %d errors, %d files, %d Kafka messages, %.0f entries/s",
             ctlog.slug, start, end, summary.certs, summary.errors, len(cert_files) + len(error_files),
             delivered, (end - start) / max(summary.seconds, 1e-9))
    return summary


_LEAF_TIMESTAMP = struct.Struct(">Q")  # after the MerkleTreeLeaf's version and leaf_type


def _kept(ctlog: CTLog, start: int, windows: list[list[RawEntry]], keep: KeepRule) -> np.ndarray:
    """`keep`'s mask over the downloaded entries of [start, ...); IngestError when their
    timestamps are further out of order than CT_BACKFILL_DISORDER allows (the window's index
    range might then miss an entry logged in it)."""
    stamps = np.array([_LEAF_TIMESTAMP.unpack_from(e.leaf_input, 2)[0] if len(e.leaf_input) >= 10 else -1
                       for window in windows for e in window], dtype=np.int64)
    timed = np.flatnonzero(stamps >= 0)
    late = disorder_beyond(np.column_stack((start + timed, stamps[timed])), keep.disorder_ms)
    if late is not None:
        index, stamp = late
        behind = int(stamps[: index - start].max()) - stamp
        raise IngestError(
            f"{ctlog.slug}: entry {index} is logged {behind / 1000:.1f} s before an entry ahead of it, "
            f"more than CT_BACKFILL_DISORDER ({keep.disorder_ms / 1000:g} s): the window's index range may "
            "miss entries; raise CT_BACKFILL_DISORDER and run again"
        )
    untimed = len(stamps) - len(timed)
    if untimed:
        log.warning("%s: %d entries of [%d, %d) carry no readable timestamp: a backfill by time cannot place "
                    "them (a backfill by index can)", ctlog.slug, untimed, start, start + len(stamps))
    return keep.mask(start, stamps)


def _only(table: pa.Table, kept: np.ndarray, start: int) -> pa.Table:
    if table.num_rows == 0:
        return table
    return table.filter(pa.array(kept[table.column("index").to_numpy() - start]))


def verify_entries(client: LogClient, plan: RunPlan, compact: CompactRange) -> None:
    """Raise VerificationError unless [0, compact.end) hashes to the plan's signed root, or
    (when the run stopped short of it) is provably a prefix of that signed tree."""
    problem = _prefix_problem(client, compact.end, compact.root(), plan.tree_size, base64.b64decode(plan.root_hash))
    if problem:
        raise VerificationError(
            "root_mismatch", f"{plan.slug}: entries [{plan.start}, {compact.end}) do not hash to the signed "
            f"tree of size {plan.tree_size}: {problem}"
        )


def _merged(base: CompactRange, summaries: list[RangeSummary]) -> CompactRange:
    for summary in sorted(summaries, key=lambda s: s.start):
        base = base.merge(CompactRange.from_json(summary.compact_range))
    return base


def _verify_or_discard(client: LogClient, lake: Lake, plan: RunPlan, compact: CompactRange,
                       summaries: list[RangeSummary], *, verified_size: int) -> None:
    """verify_entries; on a mismatch, record the incident and remove the run's files."""
    try:
        verify_entries(client, plan, compact)
    except VerificationError as err:
        record_incident(lake, client.log, err, served=None, verified_size=verified_size)
        # Unverified rows must not stay in the lake; no watermark has moved past them.
        delete_files(lake, [f for s in summaries for f in s.cert_files + s.error_files])
        raise


def _committed_already(state: LogState, plan: RunPlan) -> bool:
    """The stored state is exactly what committing `plan` writes: its end as the watermark, at
    the tree head it verified against (size and root), past where it started."""
    end = max((stop for _, stop in plan.ranges), default=plan.start)
    return (end > plan.start and state.next_index == end and state.tree_size == plan.tree_size
            and state.root_hash == plan.root_hash)


def commit_run(ctlog: CTLog, plan: RunPlan, summaries: list[RangeSummary], store: StateStore,
               lake: Lake, settings: Settings) -> LogState:
    """Verify the run's entries against the signed root, then advance the watermark. A retry
    whose earlier try saved the watermark but never heard back (the API server went down
    between saving and answering) finds this run's own commit stored and returns it."""
    state = store.load(ctlog.slug)
    if state is not None and _committed_already(state, plan):
        log.info("%s: [%d, %d) is committed already (an earlier try saved it and lost the answer)",
                 ctlog.slug, plan.start, state.next_index)
        return state
    if state is None or state.next_index != plan.start:
        raise StateError(
            f"{ctlog.slug}: stored next_index is {state.next_index if state else None}, "
            f"but this run planned from {plan.start}; another writer moved it, refusing to commit"
        )
    try:
        check_coverage(plan.ranges, [(s.start, s.end) for s in summaries], ctlog.slug)
    except ValueError as err:
        raise IngestError(str(err)) from None
    stored = CompactRange(0, state.next_index, tuple(bytes.fromhex(h) for h in state.compact_range))
    compact = _merged(stored, summaries)
    client = open_client(ctlog, settings)
    try:
        _verify_or_discard(client, lake, plan, compact, summaries, verified_size=state.tree_size)
    finally:
        client.close()
    advanced = replace(
        state.advanced(compact.end, entries=sum(s.certs for s in summaries), errors=sum(s.errors for s in summaries)),
        tree_size=plan.tree_size, sth_timestamp=plan.sth_timestamp, root_hash=plan.root_hash,
        compact_range=tuple(h.hex() for h in compact.hashes),
    )
    store.save(ctlog.slug, advanced)
    log.info("%s: verified and committed [%d, %d): next_index %d of tree size %d (%d behind)",
             ctlog.slug, plan.start, compact.end, compact.end, plan.tree_size, plan.tree_size - compact.end)
    return advanced
