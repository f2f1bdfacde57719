"""Per-log ingest state: the watermark, kept as JSON in the Airflow Variable `ct_state__<slug>`.

`LogState` is a small immutable record; `StateStore` is the only I/O. Only the ingest's
`commit` step advances a stored state, and only after every range before the new
`next_index` is in Parquet and acknowledged by Kafka. (`plan` writes the very first
state of a new log, and the pending-plan record, neither of which moves a watermark.)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol


class StateError(RuntimeError):
    """A stored state is unreadable or a transition would break an invariant."""


def state_key(slug: str) -> str:
    return f"ct_state__{slug}"


def plan_key(slug: str) -> str:
    return f"ct_plan__{slug}"


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

    @classmethod
    def from_json(cls, obj: Any, slug: str = "?") -> LogState:
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as err:
                raise StateError(f"{state_key(slug)} is not JSON: {err}") from None
        if not isinstance(obj, dict) or "next_index" not in obj:
            raise StateError(f"{state_key(slug)} has no next_index: {obj!r:.200}")
        known = {name: obj[name] for name in cls.__dataclass_fields__ if name in obj}
        known["compact_range"] = tuple(known.get("compact_range", ()))
        known.setdefault("tree_size", obj["next_index"])
        known.setdefault("first_index", 0)
        try:
            return cls(**known)
        except (TypeError, ValueError) as err:
            raise StateError(f"{state_key(slug)} is malformed: {err}") from None

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
        from airflow.sdk import Variable

        return Variable.get(key, default=None)

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
