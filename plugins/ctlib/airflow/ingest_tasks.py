"""Task bodies of the ingest DAG (dags/ct_ingest.py): build settings, state store, lake and
Kafka producer from the environment and Airflow, then call ctlib.ingest. Imported only when a
task runs, so parsing the DAG file stays cheap.

A run's tasks, and what each shows in the grid:
- `ingest` verifies the tree head and plans the run. A backlog that fits in one range of at
  most CT_INLINE_ENTRIES it fetches and commits itself, and says so: its `result` XCom and
  log give the entries it committed. That is one task instance instead of three (each costs
  ~0.65 CPU s of Airflow overhead, more than fetching a minute of a busy log). A larger
  backlog it returns as work items, one `[start, end)` each; an idle run returns none.
- `fetch` (mapped, labelled by its range) downloads, decodes and stores one range.
- `commit` verifies the run's entries against the signed root and advances the watermark.
`fetch` and `commit` are skipped only when they had nothing to do. Whichever task commits
announces the new files the same way (`_commit`, through the log's certs alias). The run's
plan travels once: the `plan` XCom of `ingest`, which `commit` reads; a work item holds
only its range.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ctlib.airflow.assets import CERTS, certs_alias, wake_alias, wake_asset
from ctlib.airflow.pools import is_backfill_type
from ctlib.ct.loglist import CTLog
from ctlib.ct.types import VerificationError
from ctlib.http import warn_if_anonymous
from ctlib.ingest.run import (
    KeepRule,
    RangeSummary,
    RunPlan,
    commit_backfill,
    commit_run,
    fetch_range,
    iso_utc,
    plan_backfill,
    plan_run,
    plan_window,
)
from ctlib.ingest.state import VariablePointStore, VariableStateStore
from ctlib.lake.files import Lake
from ctlib.settings import Settings, SettingsError, parse_index, parse_utc

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
"""Adds one asset event with this `extra` (ct://certs through the certs alias, or the wake-up)."""


def _settings() -> Settings:
    settings = Settings.from_env()
    warn_if_anonymous(settings)
    return settings


def _fail_on_incident(step: Callable[[], Any]) -> Any:
    """A log that misbehaves fails the run at once: retrying would only repeat the incident."""
    try:
        return step()
    except VerificationError as err:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"INCIDENT {err.kind}: {err}") from err


def _fail(message: str) -> Any:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(message)


def _time_window(ctlog: CTLog, settings: Settings, params: dict[str, Any],
                 dag_run: Any) -> tuple[datetime, datetime] | None:
    """The run's time window: the Params start_time and end_time, else a backfill run's
    window on the DAG's schedule (ctlib.ingest.schedule.window_of); None for any other run."""
    first, last = params.get("start_time"), params.get("end_time")
    if (first is None) != (last is None):
        _fail("a backfill by time needs both start_time and end_time (ISO-8601, UTC)")
    if first is not None and last is not None:
        try:
            start, end = parse_utc(str(first), "start_time"), parse_utc(str(last), "end_time")
        except SettingsError as err:
            return _fail(str(err))
        if end <= start:  # said here, naming the Params, before the log is asked anything
            _fail(f"empty time window: a backfill by time needs start_time < end_time, got "
                  f"start_time={start.isoformat()}, end_time={end.isoformat()}")
        return start, end
    if is_backfill_type(getattr(dag_run, "run_type", None)) and getattr(dag_run, "logical_date", None) is not None:
        from ctlib.ingest.schedule import schedule_for, window_of

        return window_of(schedule_for(ctlog, datetime.now(UTC), settings), dag_run.logical_date)
    return None


def _index_range(params: dict[str, Any]) -> tuple[int, int] | None:
    """The Params start_index and end_index as a non-empty range, None when neither is given.
    Checked here too, not only by the Params' schema: a run's conf can reach the task
    unchecked (a float, a string, a reversed range), and it fails before any request."""
    start, end = params.get("start_index"), params.get("end_index")
    if (start is None) != (end is None):
        _fail("a backfill needs both start_index and end_index")
    if start is None:
        return None
    try:
        first, last = parse_index(start, "start_index"), parse_index(end, "end_index")
    except SettingsError as err:
        return _fail(str(err))
    if first >= last:
        _fail(f"a backfill needs start_index < end_index, got start_index={first}, end_index={last}")
    return first, last


def _plan(ctlog: CTLog, settings: Settings, params: dict[str, Any] | None, dag_run: Any = None) -> RunPlan:
    params = params or {}
    indexes = _index_range(params)
    window = _time_window(ctlog, settings, params, dag_run)
    if window is not None and indexes is not None:
        _fail("give start_index/end_index or start_time/end_time, not both")
    store, lake = VariableStateStore(), Lake.open(settings.lake)
    if indexes is not None:
        return _fail_on_incident(lambda: plan_backfill(ctlog, settings, store, lake, *indexes))
    if window is not None:
        return _fail_on_incident(lambda: plan_window(ctlog, settings, store, lake, VariablePointStore(), *window))
    return _fail_on_incident(lambda: plan_run(ctlog, settings, store, lake))


def _fetch(ctlog: CTLog, start: int, end: int, settings: Settings, *, alone: bool,
           keep: KeepRule | None = None) -> RangeSummary:
    """`alone`: the only reader of the log in this run (its whole request rate); `keep`:
    which entries a backfill by time stores."""
    producer_factory = None
    if settings.kafka_enabled:
        from ctlib.kafka import producer_from_connection

        # Fail before downloading anything when the connection is missing.
        producer = producer_from_connection(settings.kafka_conn_id)
        producer_factory = lambda: producer
    return fetch_range(ctlog, start, end, settings, Lake.open(settings.lake), producer_factory, alone=alone, keep=keep)


def _commit(ctlog: CTLog, plan: RunPlan, summaries: list[RangeSummary], settings: Settings,
            announce: Emit, wake: Emit | None) -> dict[str, Any]:
    """Commit the run and announce its files on ct://certs. Then, when `wake` is given (a
    frozen log's wake-up asset) and the committed watermark is still below the verified tree
    size, emit through it so the next run starts at once rather than at the next hourly tick."""
    lake = Lake.open(settings.lake)
    if plan.mode != "watermark":
        compact = _fail_on_incident(lambda: commit_backfill(ctlog, plan, summaries, lake, settings))
        end, result = compact.end, {"backfilled": [plan.start, compact.end], "tree_size": plan.tree_size}
        if plan.keep is not None:
            result["window"] = [iso_utc(plan.keep.window_start_ms), iso_utc(plan.keep.window_end_ms)]
    else:
        state = _fail_on_incident(lambda: commit_run(ctlog, plan, summaries, VariableStateStore(), lake, settings))
        end, result = state.next_index, {k: v for k, v in state.to_json().items() if k != "compact_range"}
    announce({
        "log": ctlog.slug,
        "log_id": ctlog.log_id,
        "mode": plan.mode,
        "start": plan.start,
        "end": end,
        "files": [f for s in summaries for f in s.cert_files],
        "error_files": [f for s in summaries for f in s.error_files],
    })
    if wake is not None and plan.mode == "watermark" and end < plan.tree_size:
        log.info("%s: %d entries left behind: waking the next run", ctlog.slug, plan.tree_size - end)
        wake({"log": ctlog.slug, "next_index": end, "tree_size": plan.tree_size})
    return {"entries": end - plan.start, "certs": sum(s.certs for s in summaries),
            "errors": sum(s.errors for s in summaries), **result}


def _emitters(slug: str, outlet_events: Any, wakes: bool) -> tuple[Emit, Emit | None]:
    """How a task announces (ctlib.airflow.assets): ct://certs through the log's certs alias,
    and, for a frozen log (`wakes`), its wake-up asset through its wake alias."""
    def announce(extra: dict[str, Any]) -> None:
        outlet_events[certs_alias(slug)].add(CERTS, extra=extra)

    def wake(extra: dict[str, Any]) -> None:
        outlet_events[wake_alias(slug)].add(wake_asset(slug), extra=extra)

    return announce, (wake if wakes else None)


def ingest_task(log_json: dict[str, Any], params: dict[str, Any] | None, ti: Any, outlet_events: Any,
                *, wakes: bool = False, dag_run: Any = None) -> list[dict[str, Any]]:
    """Plan the run: a backfill of an index range with the Params start_index and end_index;
    of a time window with start_time and end_time, or in a run Airflow's backfill made (the
    window from its logical date to the next on the DAG's schedule); else a normal run.
    Returns the work items for `fetch`: none when the log has nothing new or when the
    backlog was small enough to be fetched and committed here. Pushes the XComs `plan` (for
    commit, when there is work) and `result` (what this task did, with `entries` committed)."""
    settings = _settings()
    ctlog = CTLog.from_dict(log_json)
    announce, wake = _emitters(ctlog.slug, outlet_events, wakes)
    plan = _plan(ctlog, settings, params, dag_run)
    ranges = plan.ranges
    if len(ranges) == 1 and ranges[0][1] - ranges[0][0] <= settings.inline_entries:
        (start, end), = ranges
        log.info("%s: one range of %d entries: fetching and committing in this task (CT_INLINE_ENTRIES=%d)",
                 ctlog.slug, end - start, settings.inline_entries)
        summary = _fetch(ctlog, start, end, settings, alone=True, keep=plan.keep)
        result = _commit(ctlog, plan, [summary], settings, announce, wake)
        log.info("%s: committed %d entries in this task: %s", ctlog.slug, result["entries"], result)
        ti.xcom_push("result", {"done_here": True, **result})
        return []
    ti.xcom_push("result", {"done_here": False, "entries": 0, "planned": sum(e - s for s, e in ranges), "ranges": len(ranges)})
    if ranges:
        ti.xcom_push("plan", plan.to_json())
    if plan.keep is None:
        return [{"start": start, "end": end} for start, end in ranges]
    return [{"start": start, "end": end, "keep": plan.keep.clipped(start, end).to_json()} for start, end in ranges]


def fetch_task(log_json: dict[str, Any], work: dict[str, Any]) -> dict[str, Any]:
    """Fetch one work item's range; its summary (RangeSummary) is for commit."""
    _label_map_index(f"[{work['start']}, {work['end']})")
    keep = KeepRule.from_json(work["keep"]) if work.get("keep") else None
    return _fetch(CTLog.from_dict(log_json), work["start"], work["end"], _settings(),
                  alone=False, keep=keep).to_json()


def commit_task(log_json: dict[str, Any], plan: dict[str, Any], summaries: list[dict[str, Any]],
                outlet_events: Any, *, wakes: bool = False) -> dict[str, Any]:
    """Commit what the run's fetch tasks stored (see `_commit`)."""
    ctlog = CTLog.from_dict(log_json)
    return _commit(ctlog, RunPlan.from_json(plan), [RangeSummary.from_json(s) for s in summaries],
                   _settings(), *_emitters(ctlog.slug, outlet_events, wakes))


RANGE_LABEL = "ct_range"
"""Context key the fetch task's map_index_template shows: its range, not a bare map index."""


def _label_map_index(label: str) -> None:
    from airflow.sdk import get_current_context

    get_current_context()[RANGE_LABEL] = label  # type: ignore[literal-required]
