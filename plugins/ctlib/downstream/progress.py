"""Per-consumer, per-log watermarks of the downstream DAGs (ct_score, ct_watch, ct_enrich), by
entry index over the lake: what each has processed, so that none misses or doubles work
whatever compaction did to the files, however long it was paused, and whether it was
retried, cleared or re-run.

Kept as JSON in the Airflow Variable `ct_downstream__<consumer>__<slug>` (consumers: `score`,
`watch`, `enrich`):

    {"next_index": 81234, "pending": [81234, 90000] | null, "day": "2026-12-05" | null,
     "updated_at": "2026-12-05T10:11:12+00:00"}

- `next_index`: every committed entry of the log below it (from where the consumer began)
  was processed by this consumer, and its output published.
- `pending`: [start, end) of a run that started and did not commit (or null). The next run,
  a retry or a re-run, redoes exactly this range when it starts at `next_index`, so its
  output files get the same names (ctlib.lake.files.write_range) and replace the failed
  attempt's instead of adding to them.
- `day`: the UTC day of the newest entry (log timestamp) processed; the next range's entries
  are no older than it minus the log's MMD, so a run lists the lake's day partitions from
  there (ctlib.downstream.ranges), not the whole log.

A log first seen starts at its ingest state's `first_index` (ctlib.ingest.state): backfilled
history below it is not processed by the watermark (a manual run does it, `manual_cells`).

The life of a run, per log (`plan_range`, then `begin`, the work, then `commit`):

    range = pending, if it starts at next_index (a retry or re-run of an uncommitted attempt)
          | [next_index, min(available, next_index + MAX_PER_RUN))
    save pending; do the work; publish; commit: next_index = end, pending = null

`available` is what the consumer may read: the ingest watermark (`ct_state__<slug>`'s
`next_index`) for score and watch, the score watermark for enrich (only committed alerts).

Stores: `VariableProgressStore` (Airflow Variables through the Task SDK: tasks and
`dag.test()`), `MemoryProgressStore` (unit tests), `MappingProgressStore` (read-only, from a
mapping of Variables such as `airflow variables export` writes, or from the metadata
database, for processes outside a task). A malformed value raises ProgressError naming its
Variable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol

PREFIX = "ct_downstream__"
SCORE, WATCH, ENRICH = "score", "watch", "enrich"
CONSUMERS = (SCORE, WATCH, ENRICH)

MAX_PER_RUN = 200_000
"""Most entries of one log a watermark run takes when no cap is given (a long pause drains
over several runs); the DAGs pass the setting CT_DOWNSTREAM_MAX_PER_RUN (same default)."""


class ProgressError(RuntimeError):
    """A stored watermark is unreadable, or a step would break its invariant; the message
    names the Variable."""


def progress_key(consumer: str, slug: str) -> str:
    """`ct_downstream__<consumer>__<slug>`: the Variable of one consumer's watermark of a log."""
    if consumer not in CONSUMERS:
        raise ValueError(f"no downstream consumer {consumer!r} (one of {', '.join(CONSUMERS)})")
    return f"{PREFIX}{consumer}__{slug}"


def parse_key(key: str) -> tuple[str, str] | None:
    """(consumer, slug) of a watermark Variable's key, None for any other key."""
    if not key.startswith(PREFIX):
        return None
    consumer, sep, slug = key[len(PREFIX):].partition("__")
    return (consumer, slug) if sep and consumer in CONSUMERS and slug else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Progress:
    """One consumer's watermark of one log (see the module docstring)."""

    next_index: int
    pending: tuple[int, int] | None = None
    day: date | None = None
    updated_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if self.next_index < 0:
            raise ValueError(f"next_index {self.next_index} < 0")
        if self.pending is not None and not 0 <= self.pending[0] < self.pending[1]:
            raise ValueError(f"pending {list(self.pending)} is not a range [start, end) with start < end")

    def to_json(self) -> dict[str, Any]:
        return {"next_index": self.next_index, "pending": list(self.pending) if self.pending else None,
                "day": self.day.isoformat() if self.day else None, "updated_at": self.updated_at}

    @classmethod
    def from_json(cls, obj: Any, key: str) -> Progress:
        """The watermark stored as `obj` (a dict or its JSON text) under the Variable `key`;
        ProgressError naming `key` when it is not one."""
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as err:
                raise ProgressError(f"{key} is not JSON: {err}") from None
        if not isinstance(obj, dict) or "next_index" not in obj:
            raise ProgressError(f"{key} has no next_index: {obj!r:.200}")
        try:
            next_index = obj["next_index"]
            if isinstance(next_index, bool) or not isinstance(next_index, int):
                raise ValueError(f"next_index {next_index!r} is not an integer")
            pending = obj.get("pending")
            if pending is not None:
                if (not isinstance(pending, list | tuple) or len(pending) != 2
                        or not all(isinstance(i, int) and not isinstance(i, bool) for i in pending)):
                    raise ValueError(f"pending {pending!r} is not [start, end]")
                pending = (pending[0], pending[1])
            day = obj.get("day")
            return cls(next_index=next_index, pending=pending,
                       day=date.fromisoformat(day) if day is not None else None,
                       updated_at=str(obj.get("updated_at", "")))
        except (TypeError, ValueError) as err:
            raise ProgressError(f"{key} is malformed: {err}") from None


@dataclass(frozen=True, slots=True)
class Work:
    """The range [start, end) of one log a run processes. `reused`: the pending range of an
    attempt that did not commit (a retry or re-run redoing it under the same file names)."""

    slug: str
    start: int
    end: int
    reused: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_range(slug: str, progress: Progress | None, *, first_index: int, available: int,
               cap: int | None = None) -> tuple[Progress, Work | None]:
    """The watermark to start from (a log first seen starts at `first_index`) and the range
    this run processes, None when there is nothing to do: the pending range when it starts at
    `next_index`, else [next_index, min(available, next_index + cap)) (cap: MAX_PER_RUN)."""
    cap = MAX_PER_RUN if cap is None else cap
    if cap < 1:
        raise ValueError(f"cap {cap} < 1")
    if progress is None:
        progress = Progress(next_index=first_index)
    pending = progress.pending
    if pending is not None and pending[0] == progress.next_index:
        return progress, Work(slug, pending[0], pending[1], reused=True)
    start = progress.next_index
    end = min(available, start + cap)
    return progress, (Work(slug, start, end) if end > start else None)


def begun(progress: Progress, work: Work) -> Progress:
    """The watermark recording `work` as pending (to save before doing it)."""
    if work.start != progress.next_index:
        raise ProgressError(f"{work.slug}: a range starting at {work.start} does not continue next_index "
                            f"{progress.next_index}")
    return replace(progress, pending=(work.start, work.end), updated_at=_now())


def committed(progress: Progress, work: Work, newest_day: date | None) -> Progress:
    """The watermark once `work` is done and published: next_index at its end, nothing
    pending, `day` the newest of the stored one and `newest_day` (the range's newest entry)."""
    if work.start != progress.next_index:
        raise ProgressError(f"{work.slug}: cannot commit [{work.start}, {work.end}) over next_index "
                            f"{progress.next_index}")
    day = max((d for d in (progress.day, newest_day) if d is not None), default=None)
    return Progress(next_index=work.end, pending=None, day=day)


def manual_cells(start_index: int, end_index: int, limit: int, cell: int) -> list[tuple[int, int]]:
    """A manual run's [start_index, end_index) rounded out to whole cells of `cell` entries,
    clipped to `limit` and cut at every cell boundary, so repeated or overlapping manual runs
    write the same files. ValueError for an empty range, or one reaching `limit`."""
    if not 0 <= start_index < end_index:
        raise ValueError(f"a manual run needs 0 <= start_index < end_index, got [{start_index}, {end_index})")
    if end_index > limit:
        raise ValueError(f"[{start_index}, {end_index}) reaches {limit}, where this DAG's watermark holds the "
                         "entries: a manual run takes only what lies below")
    first = start_index - start_index % cell
    last = min(limit, -(-end_index // cell) * cell)
    return [(max(s, first), min(s + cell, last)) for s in range(first, last, cell)]


# --------------------------------------------------------------------------- stores


class ProgressStore(Protocol):
    def load(self, consumer: str, slug: str) -> Progress | None: ...
    def save(self, consumer: str, slug: str, progress: Progress) -> None: ...


class VariableProgressStore:
    """Airflow Variables through the Task SDK (works in tasks and in `dag.test()`)."""

    def load(self, consumer: str, slug: str) -> Progress | None:
        from ctlib.variables import task_variable

        key = progress_key(consumer, slug)
        raw = task_variable(key)  # an API server that does not answer is not "nothing processed yet"
        return None if raw is None else Progress.from_json(raw, key)

    def save(self, consumer: str, slug: str, progress: Progress) -> None:
        from airflow.sdk import Variable

        Variable.set(progress_key(consumer, slug), json.dumps(progress.to_json(), sort_keys=True),
                     description=f"ct-airflow: how far ct_{consumer} has processed {slug} (its watermark)")


class MemoryProgressStore:
    """In-memory store for unit tests."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], Progress] = {}

    def load(self, consumer: str, slug: str) -> Progress | None:
        progress_key(consumer, slug)  # an unknown consumer fails here as in the other stores
        return self.values.get((consumer, slug))

    def save(self, consumer: str, slug: str, progress: Progress) -> None:
        progress_key(consumer, slug)
        self.values[(consumer, slug)] = progress


class MappingProgressStore:
    """A read-only snapshot of watermarks for processes outside a task (the audit, scripts):
    from a mapping of Variables, `{"ct_downstream__<consumer>__<slug>": <watermark or its
    JSON text>, ...}` as `airflow variables export` writes it (other keys ignored), or read
    from the metadata database (`from_airflow_db`). Every watermark is parsed when the store
    is made, so a malformed one is reported at once, naming its Variable. Saving raises."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise ProgressError(f"stored watermarks must be a JSON object of Variables, not {type(values).__name__}")
        self._values: dict[tuple[str, str], Progress] = {}
        for key, value in values.items():
            parsed = parse_key(key)
            if parsed is not None:
                self._values[parsed] = Progress.from_json(value, key)

    @classmethod
    def from_airflow_db(cls, consumer: str | None = None, slug: str | None = None) -> MappingProgressStore:
        """The watermarks in Airflow Variables, read with `airflow.models` (the metadata
        database, AIRFLOW_VAR_* and secrets backends, as a process outside a task sees them):
        with `consumer` and `slug`, that one Variable; else every `ct_downstream__*` key of the
        metadata database and of AIRFLOW_VAR_* (secrets backends cannot be listed), of
        `consumer` and of `slug` when given."""
        from ctlib.variables import variables_by_prefix

        keys = [progress_key(consumer, slug)] if consumer is not None and slug is not None else None
        values = {}
        for key, raw in variables_by_prefix((PREFIX,), keys).items():
            parsed = parse_key(key)
            if parsed is not None and (not consumer or parsed[0] == consumer) and (not slug or parsed[1] == slug):
                values[key] = raw
        return cls(values)

    def slugs(self, consumer: str) -> list[str]:
        """The logs `consumer` has a watermark of, sorted."""
        return sorted(slug for c, slug in self._values if c == consumer)

    def load(self, consumer: str, slug: str) -> Progress | None:
        progress_key(consumer, slug)
        return self._values.get((consumer, slug))

    def save(self, consumer: str, slug: str, progress: Progress) -> None:
        raise ProgressError(f"cannot save {progress_key(consumer, slug)}: this store is a read-only snapshot")
