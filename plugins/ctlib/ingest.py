"""The three steps of one ingest run of one log: plan, fetch (per range), commit.

Plain functions of (log, settings, store, lake): the DAG's tasks only call them. Their
inputs and outputs are small JSON-able records (XComs). Invariant kept here: the stored
watermark moves only in `commit_run`, after every planned range reported back from
`fetch_range`, which returns only once its rows are in the lake and acknowledged by Kafka.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ctlib.decode import ChainCache, LogRef, decode_entries
from ctlib.http import HttpPolicy, LogSession
from ctlib.loglist import CTLog
from ctlib.plan import check_coverage, plan_ranges
from ctlib.rfc6962 import RFC6962Client
from ctlib.schema import CERTS_SCHEMA, ERRORS_SCHEMA
from ctlib.settings import Settings
from ctlib.sinks.parquet import Lake, write_range
from ctlib.state import LogState, PendingPlan, StateError, StateStore

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """A run cannot go on; the message names the log and the index range."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    slug: str
    start: int
    tree_size: int
    sth_timestamp: int
    root_hash: str
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RunPlan:
        return cls(**{**obj, "ranges": [tuple(r) for r in obj["ranges"]]})


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RangeSummary:
        return cls(**obj)


def open_client(ctlog: CTLog, settings: Settings) -> RFC6962Client:
    if ctlog.kind != "rfc6962":
        raise IngestError(f"{ctlog.slug}: {ctlog.kind} logs are not readable by this version")
    return RFC6962Client(ctlog, LogSession(ctlog.slug, HttpPolicy.from_settings(settings)))


def plan_run(ctlog: CTLog, settings: Settings, store: StateStore) -> RunPlan:
    """Read state and the log's tree head; choose this run's ranges (empty when idle)."""
    client = open_client(ctlog, settings)
    try:
        sth = client.get_sth()
    finally:
        client.session.close()
    state = store.load(ctlog.slug)
    if state is None:
        # The first state of a new log: where it starts, not an advance of a watermark.
        first = 0 if settings.start_at == "beginning" else sth.tree_size
        state = LogState(next_index=first, first_index=first, tree_size=sth.tree_size,
                         sth_timestamp=sth.timestamp, root_hash=_b64(sth.root_hash))
        store.save(ctlog.slug, state)
        log.info("%s: no stored state; starting at index %d (CT_START_AT=%s)", ctlog.slug, first, settings.start_at)
    if sth.tree_size < state.next_index:
        raise IngestError(
            f"{ctlog.slug}: tree head size {sth.tree_size} is below the stored next_index "
            f"{state.next_index}: the log went back in time"
        )
    pending = store.load_plan(ctlog.slug)
    reuse = pending.ranges if pending and pending.start == state.next_index else ()
    ranges = plan_ranges(
        state.next_index, sth.tree_size,
        per_run=settings.entries_per_run, per_task=settings.entries_per_task,
        max_tasks=settings.max_tasks_per_run, pending=reuse,
    )
    if ranges:
        store.save_plan(ctlog.slug, PendingPlan(state.next_index, tuple(ranges)))
    backlog = sth.tree_size - state.next_index
    log.info(
        "%s: tree size %d, next index %d, backlog %d; this run fetches %d entries in %d range(s)%s",
        ctlog.slug, sth.tree_size, state.next_index, backlog,
        sum(e - s for s, e in ranges), len(ranges), " (reusing an unfinished run's ranges)" if reuse else "",
    )
    return RunPlan(
        slug=ctlog.slug, start=state.next_index, tree_size=sth.tree_size,
        sth_timestamp=sth.timestamp, root_hash=_b64(sth.root_hash), ranges=ranges,
    )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def fetch_range(
    ctlog: CTLog,
    start: int,
    end: int,
    settings: Settings,
    lake: Lake,
    producer_factory: Callable[[], Any] | None,
) -> RangeSummary:
    """Download, decode and store [start, end): Parquet first, then Kafka. Idempotent."""
    began = time.monotonic()
    ingested_at = datetime.now(UTC)
    ref = LogRef(log_id=ctlog.log_id, slug=ctlog.slug)
    cache = ChainCache()
    cert_tables: list[pa.Table] = []
    error_tables: list[pa.Table] = []
    received = 0
    client = open_client(ctlog, settings)
    try:
        windows = client.fetch_range(
            start, end, batch=settings.get_entries_batch, in_flight=settings.http_in_flight
        )
        for window in windows:
            if window[0].index != start + received:
                raise IngestError(f"{ctlog.slug}: expected index {start + received}, got {window[0].index}")
            batch = decode_entries(ref, window, ingested_at, store_der=settings.store_der, chain_cache=cache)
            cert_tables.append(batch.certs)
            error_tables.append(batch.errors)
            received += len(window)
        log.info("%s: downloaded [%d, %d) in %.1fs; %d requests, %d retries, cap %s",
                 ctlog.slug, start, end, time.monotonic() - began, client.session.requests_made,
                 client.session.retries_made, client.learned_cap)
    finally:
        client.session.close()
    if received != end - start:
        raise IngestError(f"{ctlog.slug}: [{start}, {end}) gave {received} entries")
    certs = pa.concat_tables(cert_tables) if cert_tables else CERTS_SCHEMA.empty_table()
    errors = pa.concat_tables(error_tables) if error_tables else ERRORS_SCHEMA.empty_table()
    if errors.num_rows:
        log.warning("%s: %d entries of [%d, %d) could not be decoded; kept in errors/ (first: %s)",
                    ctlog.slug, errors.num_rows, start, end, errors["reason"][0].as_py())
    cert_files = write_range(lake, "certs", ctlog.slug, start, end, certs)
    error_files = write_range(lake, "errors", ctlog.slug, start, end, errors)
    delivered = 0
    if producer_factory is not None and certs.num_rows:
        from ctlib.sinks.kafka import publish, rows_as_messages

        delivered = publish(
            producer_factory(), settings.kafka_topic, rows_as_messages(certs),
            timeout=settings.kafka_flush_timeout, what=f"{ctlog.slug} [{start}, {end})",
        )
    summary = RangeSummary(
        start=start, end=end, certs=certs.num_rows, errors=errors.num_rows,
        cert_files=[lake.uri(path) for path in cert_files],
        error_files=[lake.uri(path) for path in error_files],
        kafka_messages=delivered,
        seconds=round(time.monotonic() - began, 3),
    )
    log.info("%s: [%d, %d) stored: %d certs, %d errors, %d files, %d Kafka messages, %.1f entries/s",
             ctlog.slug, start, end, summary.certs, summary.errors,
             len(cert_files) + len(error_files), delivered,
             (end - start) / max(summary.seconds, 1e-9))
    return summary


def commit_run(ctlog: CTLog, plan: RunPlan, summaries: list[RangeSummary], store: StateStore) -> LogState:
    """Advance the watermark over the planned ranges, once all of them are stored."""
    state = store.load(ctlog.slug)
    if state is None or state.next_index != plan.start:
        raise StateError(
            f"{ctlog.slug}: stored next_index is {state.next_index if state else None}, "
            f"but this run planned from {plan.start}; another writer moved it, refusing to commit"
        )
    try:
        check_coverage(plan.ranges, [(s.start, s.end) for s in summaries], ctlog.slug)
    except ValueError as err:
        raise IngestError(str(err)) from None
    new_next = max(end for _, end in plan.ranges)
    advanced = state.advanced(
        new_next, entries=sum(s.certs for s in summaries), errors=sum(s.errors for s in summaries)
    )
    advanced = replace(advanced, tree_size=plan.tree_size, sth_timestamp=plan.sth_timestamp, root_hash=plan.root_hash)
    store.save(ctlog.slug, advanced)
    log.info("%s: committed [%d, %d): next_index %d of tree size %d (%d behind)",
             ctlog.slug, plan.start, new_next, new_next, plan.tree_size, plan.tree_size - new_next)
    return advanced
