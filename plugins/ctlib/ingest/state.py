"""Per-log ingest state: the watermark, kept as JSON in the Airflow Variable `ct_state__<slug>`.

`LogState` is a small immutable record; `StateStore` is the only I/O, and every reader of
watermarks (ingest, health, the audit) goes through one. Only the ingest's `commit` step
advances a stored state, and only after every range before the new `next_index` is in
Parquet and acknowledged by Kafka. (planning writes the very first state of a new log, and
the pending-plan record, neither of which moves a watermark.)

Stores: `VariableStateStore` (Airflow Variables through the Task SDK: tasks and
`dag.test()`), `MemoryStateStore` (unit tests), and `MappingStateStore`, a read-only
snapshot of Variables for processes outside a task (the audit CLI, scripts): from a JSON
dump such as `airflow variables export` writes, or read from the metadata database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from ctlib.ct.types import Point


class StateError(RuntimeError):
    """A stored state is unreadable or a transition would break an invariant."""


STATE_PREFIX = "ct_state__"
PLAN_PREFIX = "ct_plan__"
POINTS_PREFIX = "ct_timeindex__"


def state_key(slug: str) -> str:
    return f"{STATE_PREFIX}{slug}"


def plan_key(slug: str) -> str:
    return f"{PLAN_PREFIX}{slug}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class LogState:
    next_index: int
    """Every index below this is in the lake and on Kafka (from `first_index` on)."""
    tree_size: int
    """Size of the newest tree head seen."""
    first_index: int
    """Where ingestion of this log began (audits check [first_index, next_index))."""
    sth_timestamp: int = 0
    root_hash: str = ""
    """Base64 root of the newest verified tree head (of size `tree_size`)."""
    compact_range: tuple[str, ...] = ()
    """Hex hashes of the compact range [0, next_index): with it, every commit checks the new
    entries against a signed root without keeping the tree."""
    entries_ingested: int = 0
    errors_ingested: int = 0
    updated_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        if not 0 <= self.first_index <= self.next_index:
            raise StateError(f"first_index {self.first_index} > next_index {self.next_index}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "compact_range": list(self.compact_range)}

    @property
    def updated_time(self) -> datetime | None:
        """`updated_at` (the last progress) as an aware datetime, UTC when it names no zone;
        None when it is unreadable."""
        try:
            moment = datetime.fromisoformat(self.updated_at)
        except (TypeError, ValueError):
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    @classmethod
    def from_json(cls, obj: Any, slug: str = "?", *, key: str | None = None) -> LogState:
        """The state stored as `obj` (a dict or its JSON text). Errors name `key`, the
        Variable or mapping key it was read from (default `ct_state__<slug>`)."""
        key = key or state_key(slug)
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as err:
                raise StateError(f"{key} is not JSON: {err}") from None
        if not isinstance(obj, dict) or "next_index" not in obj:
            raise StateError(f"{key} has no next_index: {obj!r:.200}")
        known = {name: obj[name] for name in cls.__dataclass_fields__ if name in obj}
        known["compact_range"] = tuple(known.get("compact_range", ()))
        known.setdefault("tree_size", obj["next_index"])
        known.setdefault("first_index", 0)
        try:
            return cls(**known)
        except (TypeError, ValueError) as err:
            raise StateError(f"{key} is malformed: {err}") from None

    def advanced(self, new_next_index: int, *, entries: int, errors: int) -> LogState:
        if new_next_index < self.next_index:
            raise StateError(f"cannot move next_index back from {self.next_index} to {new_next_index}")
        return replace(
            self,
            next_index=new_next_index,
            entries_ingested=self.entries_ingested + entries,
            errors_ingested=self.errors_ingested + errors,
            updated_at=_now(),
        )


@dataclass(frozen=True, slots=True)
class PendingPlan:
    """The ranges a run chose from `start`. A later run that starts at the same index reuses
    them, so a failed run's Parquet files are rewritten under the same names, never doubled."""

    start: int
    ranges: tuple[tuple[int, int], ...]
    partial_tile: int = -1
    """Tiled logs: the partial tile seen waiting at the end of the tree, and since when (ms)."""
    partial_since_ms: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "ranges": [list(r) for r in self.ranges],
                "partial_tile": self.partial_tile, "partial_since_ms": self.partial_since_ms}

    @classmethod
    def from_json(cls, obj: Any) -> PendingPlan | None:
        try:
            if isinstance(obj, str):
                obj = json.loads(obj)
            return cls(start=int(obj["start"]), ranges=tuple((int(s), int(e)) for s, e in obj["ranges"]),
                       partial_tile=int(obj.get("partial_tile", -1)),
                       partial_since_ms=int(obj.get("partial_since_ms", 0)))
        except (TypeError, ValueError, KeyError, json.JSONDecodeError):
            return None  # a damaged hint is ignored: planning afresh is always safe to read


class StateStore(Protocol):
    def load(self, slug: str) -> LogState | None: ...
    def save(self, slug: str, state: LogState) -> None: ...
    def load_plan(self, slug: str) -> PendingPlan | None: ...
    def save_plan(self, slug: str, plan: PendingPlan) -> None: ...


class VariableStateStore:
    """Airflow Variables through the Task SDK (works in tasks and in `dag.test()`)."""

    def _get(self, key: str) -> str | None:
        from ctlib.variables import task_variable

        return task_variable(key)  # an API server that does not answer is not "no state yet"

    def _set(self, key: str, value: dict[str, Any], description: str) -> None:
        from airflow.sdk import Variable

        Variable.set(key, json.dumps(value, sort_keys=True), description=description)

    def load(self, slug: str) -> LogState | None:
        raw = self._get(state_key(slug))
        return None if raw is None else LogState.from_json(raw, slug)

    def save(self, slug: str, state: LogState) -> None:
        self._set(state_key(slug), state.to_json(), f"ct-airflow watermark of {slug} (written by commit)")

    def load_plan(self, slug: str) -> PendingPlan | None:
        raw = self._get(plan_key(slug))
        return None if raw is None else PendingPlan.from_json(raw)

    def save_plan(self, slug: str, plan: PendingPlan) -> None:
        self._set(plan_key(slug), plan.to_json(), f"ct-airflow ranges being fetched for {slug}")


class MemoryStateStore:
    """In-memory store for unit tests."""

    def __init__(self) -> None:
        self.states: dict[str, LogState] = {}
        self.plans: dict[str, PendingPlan] = {}

    def load(self, slug: str) -> LogState | None:
        return self.states.get(slug)

    def save(self, slug: str, state: LogState) -> None:
        self.states[slug] = state

    def load_plan(self, slug: str) -> PendingPlan | None:
        return self.plans.get(slug)

    def save_plan(self, slug: str, plan: PendingPlan) -> None:
        self.plans[slug] = plan


class PointStore(Protocol):
    """The (index, timestamp) points a time search learned of a log (ctlib.ingest.timeindex):
    a cache, so the next search of the same log needs fewer probes. Losing it costs probes only."""

    def load(self, slug: str) -> list[Point]: ...
    def save(self, slug: str, points: list[Point]) -> None: ...


class VariablePointStore:
    """Points in the Airflow Variable `ct_timeindex__<slug>` (a JSON list of [index, ms])."""

    def load(self, slug: str) -> list[Point]:
        from ctlib.variables import task_variable

        raw = task_variable(f"{POINTS_PREFIX}{slug}")
        try:
            return [(int(i), int(t)) for i, t in json.loads(raw)] if raw else []
        except (TypeError, ValueError):
            return []  # a damaged cache is only a cache

    def save(self, slug: str, points: list[Point]) -> None:
        from airflow.sdk import Variable

        Variable.set(f"{POINTS_PREFIX}{slug}", json.dumps([list(p) for p in points]),
                     description=f"ct-airflow (index, timestamp) points of {slug} learned by time searches (a cache)")


class MemoryPointStore:
    """In-memory points for unit tests and scripts."""

    def __init__(self) -> None:
        self.points: dict[str, list[Point]] = {}

    def load(self, slug: str) -> list[Point]:
        return list(self.points.get(slug, []))

    def save(self, slug: str, points: list[Point]) -> None:
        self.points[slug] = list(points)


class MappingStateStore:
    """A read-only snapshot of stored states, for processes outside a task (the audit CLI,
    scripts, benchmarks): made from a mapping of Variables, `{"ct_state__<slug>": <state or
    its JSON text>, "ct_plan__<slug>": <plan>, ...}` as `airflow variables export` writes it
    (other keys of ct-airflow, `ct_<name>__<slug>`, ignored), or `{"<slug>": <state>, ...}`.

    Every state is parsed when the store is made, so a malformed one is reported at once,
    naming its key. `slugs()` lists the logs with a state. Saving raises StateError."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        if not isinstance(values, Mapping):
            raise StateError(f"stored states must be a JSON object of Variables, not {type(values).__name__}")
        self._states: dict[str, LogState] = {}
        self._plans: dict[str, PendingPlan] = {}
        for key, value in values.items():
            if key.startswith(STATE_PREFIX):
                slug = key[len(STATE_PREFIX):]
                self._states[slug] = LogState.from_json(value, slug, key=key)
            elif key.startswith(PLAN_PREFIX):
                plan = PendingPlan.from_json(value)
                if plan is not None:
                    self._plans[key[len(PLAN_PREFIX):]] = plan
            elif key.startswith("ct_") and "__" in key:
                continue  # another ct-airflow Variable
            else:
                self._states[key] = LogState.from_json(value, key, key=key)

    @classmethod
    def from_airflow_db(cls, slug: str | None = None) -> MappingStateStore:
        """The states (and pending plans) in Airflow Variables, read with `airflow.models`:
        the metadata database, AIRFLOW_VAR_* and secrets backends, as a process outside a
        task sees them (the Task SDK's `VariableStateStore` reads no metadata database
        there). With `slug`, that log's Variables only; without, every `ct_state__*` and
        `ct_plan__*` key of the metadata database and of AIRFLOW_VAR_* (secrets backends
        cannot be listed)."""
        from ctlib.variables import variables_by_prefix

        keys = [state_key(slug), plan_key(slug)] if slug is not None else None
        values = variables_by_prefix((STATE_PREFIX, PLAN_PREFIX), keys)
        return cls(values)

    def slugs(self) -> list[str]:
        """The logs with a stored state, sorted."""
        return sorted(self._states)

    def load(self, slug: str) -> LogState | None:
        return self._states.get(slug)

    def save(self, slug: str, state: LogState) -> None:
        raise StateError(f"cannot save the state of {slug}: this store is a read-only snapshot")

    def load_plan(self, slug: str) -> PendingPlan | None:
        return self._plans.get(slug)

    def save_plan(self, slug: str, plan: PendingPlan) -> None:
        raise StateError(f"cannot save the plan of {slug}: this store is a read-only snapshot")
