"""Ingest health per log: how far behind, since when, and whether to alert.

`observe` gathers the facts of one log (I/O: watermark, the log's current verified tree
head, the first entry not ingested yet, error and incident counts in the lake); `assess` turns
them into a verdict (pure); `check_logs` does both for every log, `write_health` stores the
rows in `health/date=<day>/<checked_at ms>.parquet` (layout.HEALTH_SCHEMA, one row per log), and
`failure_message` says which logs should fail the check.

The lake is any `ctlib.lake.files.Lake` (a local folder or an object store): the counts are
the rows of the log's live files (ctlib.lake.manifest: a compacted day counted once) from
their Parquet footers, and the health file is written through the lake's filesystem.

Verdicts:
* `not_started`: no watermark yet (the ingest DAG has not run); never failing.
* `unreachable`: the tree head could not be read or verified; failing once the log has made
  no progress for `stall_seconds`.
* `stalled`: a backlog, and no progress (watermark `updated_at`) for `stall_seconds`; failing.
* `lagging`: the oldest entry not ingested is older than `max_lag_seconds`; failing.
* `ok`: otherwise (possibly a small backlog within the thresholds).

Lag in seconds is approximated by the age of the entry at `next_index` (entries are in the
tree in index order; timestamps are only roughly ordered, within the log's MMD).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import pyarrow as pa

from ctlib.ct.loglist import CTLog
from ctlib.ingest.state import LogState, StateStore
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file
from ctlib.lake.manifest import ManifestError, live_files
from ctlib.lake.reading import dataset
from ctlib.settings import Settings

log = logging.getLogger(__name__)

OK, LAGGING, STALLED, UNREACHABLE, NOT_STARTED = "ok", "lagging", "stalled", "unreachable", "not_started"
STATUSES = (OK, LAGGING, STALLED, UNREACHABLE, NOT_STARTED)


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_lag_seconds: float
    stall_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(settings.health_max_lag_seconds, settings.health_stall_seconds)


@dataclass(frozen=True, slots=True)
class Observation:
    """The facts about one log at `checked_at`; None where a fact is unknown."""

    slug: str
    log_id: str
    checked_at: datetime
    next_index: int | None = None  # None: no watermark yet
    last_progress_at: datetime | None = None
    tree_size: int | None = None  # None: the tree head could not be read
    tree_head_at: datetime | None = None
    oldest_pending_at: datetime | None = None  # None: no backlog, or its first entry unread
    errors: int = 0
    incidents: int = 0
    problem: str = ""  # what went wrong reading the log


@dataclass(frozen=True, slots=True)
class Health:
    observation: Observation
    status: str
    failing: bool
    lag_entries: int | None
    lag_seconds: float | None
    since_progress_seconds: float | None
    detail: str

    @property
    def slug(self) -> str:
        return self.observation.slug

    def figures(self) -> str:
        """A short human account: `lagging: 150 entries, 3600 s behind, last progress 60 s ago`."""
        parts = [self.status]
        if self.lag_entries is not None:
            parts.append(f"{self.lag_entries} entries behind")
        if self.lag_seconds is not None:
            parts.append(f"oldest pending {self.lag_seconds:.0f} s old")
        if self.since_progress_seconds is not None:
            parts.append(f"last progress {self.since_progress_seconds:.0f} s ago")
        if self.observation.problem:
            parts.append(self.observation.problem)
        return ", ".join(parts)


def _seconds(later: datetime, earlier: datetime | None) -> float | None:
    return None if earlier is None else max(0.0, (later - earlier).total_seconds())


def assess(obs: Observation, thresholds: Thresholds) -> Health:
    """The verdict on one observation (pure; see the module docstring for the rules)."""
    since_progress = _seconds(obs.checked_at, obs.last_progress_at)
    lag_entries = (max(0, obs.tree_size - obs.next_index)
                   if obs.tree_size is not None and obs.next_index is not None else None)
    lag_seconds: float | None
    if lag_entries == 0:
        lag_seconds = 0.0
    else:
        lag_seconds = _seconds(obs.checked_at, obs.oldest_pending_at)
    stalled_for = since_progress is not None and since_progress > thresholds.stall_seconds

    def verdict(status: str, failing: bool, detail: str) -> Health:
        return Health(obs, status, failing, lag_entries, lag_seconds, since_progress, detail)

    if obs.next_index is None:
        return verdict(NOT_STARTED, False, "no watermark yet: the ingest DAG has not run")
    if obs.tree_size is None:
        if stalled_for:
            return verdict(UNREACHABLE, True, f"unreachable and no progress for over {thresholds.stall_seconds:.0f} s")
        return verdict(UNREACHABLE, False, "unreachable (not failing before the stall threshold)")
    if lag_entries and stalled_for:
        return verdict(STALLED, True, f"backlog and no progress for over {thresholds.stall_seconds:.0f} s")
    if lag_seconds is not None and lag_seconds > thresholds.max_lag_seconds:
        return verdict(LAGGING, True, f"oldest pending entry older than {thresholds.max_lag_seconds:.0f} s")
    if lag_entries and lag_seconds is None:
        return verdict(OK, False, "backlog of unknown age (its first entry could not be read)")
    return verdict(OK, False, "caught up" if not lag_entries else "within thresholds")


def failure_message(healths: Iterable[Health]) -> str | None:
    """None when no log fails; otherwise one message naming each failing log and its figures."""
    failing = [h for h in healths if h.failing]
    if not failing:
        return None
    return f"{len(failing)} CT log(s) unhealthy: " + "; ".join(f"{h.slug} ({h.figures()})" for h in failing)


# --------------------------------------------------------------------------- output


def _ms(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def to_table(healths: Sequence[Health]) -> pa.Table:
    rows = []
    for h in healths:
        o = h.observation
        rows.append({
            "checked_at": _ms(o.checked_at), "log_slug": o.slug, "log_id": o.log_id,
            "status": h.status, "failing": h.failing, "tree_size": o.tree_size,
            "tree_head_at": _ms(o.tree_head_at), "next_index": o.next_index,
            "lag_entries": h.lag_entries, "lag_seconds": h.lag_seconds,
            "oldest_pending_at": _ms(o.oldest_pending_at), "last_progress_at": _ms(o.last_progress_at),
            "since_progress_seconds": h.since_progress_seconds, "errors": o.errors,
            "incidents": o.incidents, "detail": "; ".join(filter(None, (h.detail, o.problem))),
        })
    return pa.Table.from_pylist(rows, schema=layout.HEALTH_SCHEMA)


def write_health(lake: Lake, healths: Sequence[Health], checked_at: datetime) -> str:
    """Store the rows as `health/date=<day>/<checked_at ms:013d>.parquet`; returns the path."""
    checked_at = checked_at.astimezone(UTC)
    directory = layout.day_dir(lake.root, layout.HEALTH, checked_at.date())
    return write_file(lake, directory, layout.health_file_name(checked_at), to_table(healths))


def format_table(healths: Sequence[Health]) -> str:
    """A fixed-width text table for the task log."""

    def num(value: float | int | None) -> str:
        return "-" if value is None else f"{value:.0f}" if isinstance(value, float) else str(value)

    header = ("log", "status", "fail", "tree_size", "next_index", "lag", "lag_s", "idle_s", "errors", "incidents")
    lines = [header] + [
        (h.slug, h.status, "FAIL" if h.failing else "", num(h.observation.tree_size), num(h.observation.next_index),
         num(h.lag_entries), num(h.lag_seconds), num(h.since_progress_seconds), num(h.observation.errors),
         num(h.observation.incidents))
        for h in healths
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


# --------------------------------------------------------------------------- observing


def count_rows(lake: Lake, table: str, slug: str) -> int:
    """Rows of `slug`'s live files of `table` (ctlib.lake.manifest: a compacted day once, not
    again in the range files its manifest absorbed), from Parquet footers (0 when there is
    none), on any filesystem. ManifestError for a manifest that cannot be read, OSError when
    the lake cannot be listed or read."""
    files = live_files(lake, table, slug=slug)
    return dataset(lake, table, files).count_rows() if files else 0


def _lake_counts(lake: Lake, slug: str) -> tuple[int, int, str]:
    """(errors, incidents, problem) of one log: a lake that cannot be read is a problem of
    the observation, not an exception (the other facts are still worth recording)."""
    try:
        return count_rows(lake, layout.ERRORS, slug), count_rows(lake, layout.INCIDENTS, slug), ""
    except (ManifestError, OSError, ValueError) as err:
        return 0, 0, f"lake: {type(err).__name__}: {err}"


def _first_pending_timestamp(client, ctlog: CTLog, next_index: int, tree_size: int) -> datetime:
    """Log timestamp of the entry at `next_index` (< tree_size)."""
    from ctlib.ct.leaf import parse_merkle_tree_leaf

    end = next_index + 1
    if ctlog.kind == "static":
        from ctlib.ct.tiles import TILE_WIDTH

        # Tiles are served whole, or partial only at a published tree size: read to the
        # end of the tile holding next_index, or to the tree size inside the last tile.
        end = min(tree_size, (next_index // TILE_WIDTH + 1) * TILE_WIDTH)
    batches = client.fetch_range(next_index, end, batch=1, in_flight=1)
    try:
        entry = next(iter(batches))[0]
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()
    return datetime.fromtimestamp(parse_merkle_tree_leaf(entry.leaf_input).timestamp_ms / 1000, UTC)


def _quick(settings: Settings) -> Settings:
    # A health check must answer within its 5-minute slot: few retries, short waits.
    return replace(settings, http_retries=min(settings.http_retries, 2),
                   http_max_backoff=min(settings.http_max_backoff, 5.0))


def observe(ctlog: CTLog, state: LogState | None, settings: Settings, lake: Lake, checked_at: datetime) -> Observation:
    """Everything `assess` needs about one log whose watermark is `state`. Never raises for
    a log that cannot be read: the problem is recorded in the observation instead."""
    from ctlib.ct.client import open_client

    errors, incidents, lake_problem = _lake_counts(lake, ctlog.slug)
    obs = Observation(
        slug=ctlog.slug, log_id=ctlog.log_id, checked_at=checked_at,
        next_index=state.next_index if state else None,
        last_progress_at=state.updated_time if state else None,
        errors=errors, incidents=incidents, problem=lake_problem,
    )

    def problem(text: str) -> Observation:
        return replace(obs, problem="; ".join(filter(None, (obs.problem, text))))

    try:
        client = open_client(ctlog, _quick(settings))
    except Exception as err:
        return problem(f"cannot open a client: {type(err).__name__}: {err}")
    try:
        try:
            head = client.tree_head()
        except Exception as err:
            return problem(f"tree head: {type(err).__name__}: {err}")
        obs = replace(obs, tree_size=head.size, tree_head_at=datetime.fromtimestamp(head.timestamp / 1000, UTC))
        if state is not None and state.next_index < head.size:
            try:
                pending_at = _first_pending_timestamp(client, ctlog, state.next_index, head.size)
                obs = replace(obs, oldest_pending_at=pending_at)
            except Exception as err:
                obs = problem(f"entry {state.next_index}: {type(err).__name__}: {err}")
        return obs
    finally:
        client.close()


def check_logs(logs: Sequence[CTLog], settings: Settings, store: StateStore, lake: Lake,
               checked_at: datetime | None = None, *, workers: int = 8) -> list[Health]:
    """Observe (concurrently) and assess every log, in the order given."""
    checked_at = checked_at or datetime.now(UTC)
    thresholds = Thresholds.from_settings(settings)
    # Variables are read here, in the task's own thread: the Task SDK's channel to the
    # supervisor is not meant for concurrent use. Only the logs are asked in parallel.
    states = [store.load(c.slug) for c in logs]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(logs) or 1)), thread_name_prefix="health") as pool:
        observations = list(pool.map(lambda c, s: observe(c, s, settings, lake, checked_at), logs, states))
    return [assess(o, thresholds) for o in observations]


def run_health_check(settings: Settings, store: StateStore | None = None) -> tuple[list[Health], str, str | None]:
    """The health task: check every monitored log, write and log the table.

    Returns (healths, path written, failure message or None); the caller fails the task
    when there is a message, after the rows are stored."""
    from ctlib.ct.loglist import load_log_list
    from ctlib.ingest.state import VariableStateStore

    store = store or VariableStateStore()
    lake = Lake.open(settings.lake)
    checked_at = datetime.now(UTC)
    logs = load_log_list(settings.log_list_path).monitored()
    healths = check_logs(logs, settings, store, lake, checked_at)
    path = write_health(lake, healths, checked_at)
    log.info("health of %d logs (written to %s):\n%s", len(healths), path, format_table(healths))
    return healths, path, failure_message(healths)
