"""Task bodies of the ingest DAG: build settings, state store, lake and Kafka producer from
the environment and Airflow, then call ctlib.ingest. Kept out of the DAG file so parsing it
stays cheap; imported only when a task runs.

A run with a small backlog (one range of at most CT_INLINE_ENTRIES) is fetched and committed
by `plan_task` itself: the same `fetch_range` and `commit_run`, in the same order, so every
invariant holds, but one task instance instead of three (each costs ~0.65 CPU s of Airflow
overhead, more than fetching a minute of a busy log). Larger backlogs map fetch tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ctlib.ct.client import VerificationError
from ctlib.http import warn_if_anonymous
from ctlib.ingest.run import RangeSummary, RunPlan, commit_backfill, commit_run, fetch_range, plan_backfill, plan_run
from ctlib.ct.loglist import CTLog
from ctlib.settings import Settings
from ctlib.lake.files import Lake
from ctlib.ingest.state import VariableStateStore

log = logging.getLogger(__name__)

EmitEvent = Callable[[dict[str, Any]], None]
"""Emits the ct://certs asset event with this `extra` (how depends on the task's outlet)."""


def _fail_on_incident(step: Callable[[], Any]) -> Any:
    """A log that misbehaves fails the run at once: retrying would only repeat the incident."""
    try:
        return step()
    except VerificationError as err:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"INCIDENT {err.kind}: {err}") from err


def plan_task(log_json: dict[str, Any], params: dict[str, Any] | None = None,
              emit: EmitEvent | None = None, wake: EmitEvent | None = None) -> list[dict[str, Any]]:
    """One work item per planned range, each carrying the run's plan for commit; none when
    the log has nothing new, or when the run was small enough to be done here (`emit` given:
    fetched, committed and announced through `emit`; `wake` as in commit_task). With the
    Params start_index and end_index, a backfill of that index range."""
    settings = Settings.from_env()
    warn_if_anonymous(settings)
    ctlog, store, lake = CTLog.from_dict(log_json), VariableStateStore(), Lake.open(settings.lake)
    start, end = (params or {}).get("start_index"), (params or {}).get("end_index")
    if (start is None) != (end is None):
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("a backfill needs both start_index and end_index")
    if start is not None:
        plan = _fail_on_incident(lambda: plan_backfill(ctlog, settings, store, lake, int(start), int(end)))
    else:
        plan = _fail_on_incident(lambda: plan_run(ctlog, settings, store, lake))
    work = [{"start": start, "end": end, "plan": plan.to_json()} for start, end in plan.ranges]
    if emit is not None and len(plan.ranges) == 1 and plan.ranges[0][1] - plan.ranges[0][0] <= settings.inline_entries:
        log.info("%s: one range of %d entries: fetching and committing in this task (CT_INLINE_ENTRIES=%d)",
                 ctlog.slug, plan.ranges[0][1] - plan.ranges[0][0], settings.inline_entries)
        summary = fetch_task(log_json, work[0], settings, alone=True)
        result = commit_task(log_json, work, [summary], emit, settings, wake=wake)
        log.info("%s: committed in plan: %s", ctlog.slug, result)
        return []  # nothing left for fetch and commit: the scheduler skips them
    return work


def _own_settings() -> Settings:
    """The settings of a task of its own (not a step plan_task runs inline)."""
    settings = Settings.from_env()
    warn_if_anonymous(settings)
    return settings


def fetch_task(log_json: dict[str, Any], work: dict[str, Any], settings: Settings | None = None,
               *, alone: bool = False) -> dict[str, Any]:
    """`alone`: plan_task fetching inline, the only reader of the log (its whole request rate)."""
    settings = settings or _own_settings()
    producer_factory = None
    if settings.kafka_enabled:
        from ctlib.kafka import producer_from_connection

        # Fail before downloading anything when the connection is missing.
        producer = producer_from_connection(settings.kafka_conn_id)
        producer_factory = lambda: producer  # noqa: E731
    summary = fetch_range(
        CTLog.from_dict(log_json), work["start"], work["end"], settings,
        Lake.open(settings.lake), producer_factory, alone=alone,
    )
    return summary.to_json()


def commit_task(log_json: dict[str, Any], work: list[dict[str, Any]], summaries: list[dict[str, Any]],
                emit: EmitEvent, settings: Settings | None = None, wake: EmitEvent | None = None) -> dict[str, Any]:
    """Commit the run; then, when `wake` is given (a frozen log's wake-up asset) and the
    committed watermark is still below the verified tree size, emit through it so the next
    run starts at once rather than at the next hourly tick."""
    settings = settings or _own_settings()
    ctlog = CTLog.from_dict(log_json)
    plan = RunPlan.from_json(work[0]["plan"])
    summaries_ = [RangeSummary.from_json(s) for s in summaries]
    lake = Lake.open(settings.lake)
    if plan.mode == "backfill":
        compact = _fail_on_incident(lambda: commit_backfill(ctlog, plan, summaries_, lake, settings))
        end, result = compact.end, {"backfilled": [plan.start, compact.end], "tree_size": plan.tree_size}
    else:
        state = _fail_on_incident(lambda: commit_run(ctlog, plan, summaries_, VariableStateStore(), lake, settings))
        end, result = state.next_index, {k: v for k, v in state.to_json().items() if k != "compact_range"}
    emit({
        "log": ctlog.slug,
        "log_id": ctlog.log_id,
        "mode": plan.mode,
        "start": plan.start,
        "end": end,
        "files": [f for s in summaries_ for f in s.cert_files],
        "error_files": [f for s in summaries_ for f in s.error_files],
    })
    if wake is not None and plan.mode != "backfill" and end < plan.tree_size:
        log.info("%s: %d entries left behind: waking the next run", ctlog.slug, plan.tree_size - end)
        wake({"log": ctlog.slug, "next_index": end, "tree_size": plan.tree_size})
    return result
