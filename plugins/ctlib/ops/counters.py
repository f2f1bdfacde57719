"""Small per-run counters of the downstream DAGs, for the monitor's totals (`ct_alerts_total`,
`ct_watch_matches_total`, the enrichment calls and failures) without scanning the lake.

Each DAG keeps one JSON document in the Airflow Variable `ct_counters__<dag_id>` (or
`ct_counters__<dag_id>__<shard>` for a mapped task whose instances run at the same time, e.g.
one shard per enrichment batch, so no two writers share a document):

    {"totals": {"alerts": 12, ...}, "runs": {"<run_id>": {"alerts": 3, ...}, ...}}

`record` is pure: a run's value of each counter is the largest it has recorded (kept in
`runs`, the last `KEEP_RUNS` runs recorded), and `totals` grow by what that adds, so
recording the same run again (a retried task, which finds the same alerts, or nothing new
because its first attempt wrote it) never counts twice, and totals never go down: they are
cumulative since the first record, as a Prometheus counter must be. A run recorded again
after `KEEP_RUNS` newer runs is counted anew.

`VariableCounterStore` reads and writes the documents through the Task SDK (a task's own
read-modify-write: each document must have one writer at a time, which `max_active_runs=1`
and shards give); `MemoryCounterStore` is for tests. `totals_of` sums the totals of every
document (pure), for the monitor, which reads the Variables from the metadata database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

log = logging.getLogger(__name__)

COUNTERS_PREFIX = "ct_counters__"
KEEP_RUNS = 200

ALERTS = "alerts"
WATCH_MATCHES = "watch_matches"
ENRICHMENT_CALLS = "enrichment_calls"
ENRICHMENT_FAILURES = "enrichment_failures"
NAMES = (ALERTS, WATCH_MATCHES, ENRICHMENT_CALLS, ENRICHMENT_FAILURES)
"""The counters the monitor reports (`totals_of` always has each)."""

Document = dict[str, Any]


def counters_key(dag_id: str, shard: int | str | None = None) -> str:
    """`ct_counters__<dag_id>`, or `ct_counters__<dag_id>__<shard>`."""
    return f"{COUNTERS_PREFIX}{dag_id}" if shard is None else f"{COUNTERS_PREFIX}{dag_id}__{shard}"


def _numbers(obj: Any) -> dict[str, float]:
    if not isinstance(obj, Mapping):
        return {}
    out = {}
    for name, value in obj.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(name)] = value
    return out


def parse(raw: Any) -> Document:
    """A stored document (its JSON text or a dict) in canonical form; an unreadable one is
    empty (the counters start again rather than fail a task)."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except (TypeError, ValueError):
            return {"totals": {}, "runs": {}}
    if not isinstance(raw, Mapping):
        return {"totals": {}, "runs": {}}
    runs = raw.get("runs")
    return {
        "totals": _numbers(raw.get("totals")),
        "runs": {str(k): _numbers(v) for k, v in runs.items()} if isinstance(runs, Mapping) else {},
    }


def record(doc: Any, run_id: str, values: Mapping[str, float], *, keep: int = KEEP_RUNS) -> Document:
    """`doc` with run `run_id`'s `values` recorded (pure; `doc` as `parse` takes it). A run
    recorded before keeps, for each counter, the larger of its two values; totals grow by the
    difference (negative values count as 0)."""
    current = parse(doc)
    runs: dict[str, dict[str, float]] = current["runs"]
    before = runs.pop(run_id, {})
    after = dict(before)
    totals = dict(current["totals"])
    for name, value in _numbers(values).items():
        value = max(value, 0, before.get(name, 0))
        totals[name] = totals.get(name, 0) + value - before.get(name, 0)
        after[name] = value
    runs[run_id] = after  # the most recent run last
    while len(runs) > keep:
        runs.pop(next(iter(runs)))
    return {"totals": totals, "runs": runs}


def totals_of(docs: Iterable[Any]) -> dict[str, float]:
    """The sum of the totals of every document; each of NAMES present (0 when none)."""
    out: dict[str, float] = dict.fromkeys(NAMES, 0)
    for doc in docs:
        for name, value in parse(doc)["totals"].items():
            out[name] = out.get(name, 0) + value
    return out


def enrichment_counts(statuses: Iterable[str]) -> dict[str, int]:
    """Calls and failures from the result statuses of a batch's look-ups (one per domain
    and provider): "skipped" is no call (provider not configured); "ok" and "not_found" are
    answered calls; any other status (an error kind) is a failed call."""
    calls = failures = 0
    for status in statuses:
        if status == "skipped":
            continue
        calls += 1
        failures += status not in ("ok", "not_found")
    return {ENRICHMENT_CALLS: calls, ENRICHMENT_FAILURES: failures}


class CounterStore(Protocol):
    def load(self, key: str) -> Document: ...
    def save(self, key: str, doc: Document) -> None: ...


def record_run(store: CounterStore, dag_id: str, run_id: str, values: Mapping[str, float],
               *, shard: int | str | None = None) -> Document:
    """Read, `record`, write one document; returns what was written."""
    key = counters_key(dag_id, shard)
    doc = record(store.load(key), run_id, values)
    store.save(key, doc)
    return doc


class VariableCounterStore:
    """The documents as Airflow Variables, through the Task SDK (inside a task)."""

    def load(self, key: str) -> Document:
        from ctlib.variables import task_variable

        return parse(task_variable(key))  # unreadable is not empty: that would reset the totals

    def save(self, key: str, doc: Document) -> None:
        from airflow.sdk import Variable

        Variable.set(key, json.dumps(doc, sort_keys=True),
                     description="ct-airflow per-run counters of this DAG (the monitor's totals)")


class MemoryCounterStore:
    """In-memory documents for tests."""

    def __init__(self) -> None:
        self.docs: dict[str, Document] = {}

    def load(self, key: str) -> Document:
        return parse(self.docs.get(key))

    def save(self, key: str, doc: Document) -> None:
        self.docs[key] = json.loads(json.dumps(doc))


def record_quietly(dag_id: str, run_id: str, values: Mapping[str, float], *, shard: int | str | None = None,
                   store: CounterStore | None = None) -> None:
    """`record_run` in a task (a VariableCounterStore by default), never failing it: counters
    are a report, the task's work is done; a failure to record is logged. Values that are
    all 0 add nothing and are not written."""
    if not any(_numbers(values).values()):
        return  # nothing to add: no write
    try:
        record_run(store or VariableCounterStore(), dag_id, run_id, values, shard=shard)
    except Exception as err:  # a counter must never fail the task that did the work
        log.warning("could not record counters %s of %s %s: %s: %s", dict(values), dag_id, run_id,
                    type(err).__name__, err)
