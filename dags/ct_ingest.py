"""One ingest DAG per CT log of the log list: ingest -> fetch (mapped over ranges) -> commit.

Wiring only; the task bodies are in ctlib.airflow.ingest_tasks. Parsed every ~30 s and by
every task, so it imports nothing heavy at top level and, inside a task, builds only the DAG
it runs for.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, get_parsing_context, task

from ctlib.airflow.assets import certs_alias, wake_alias
from ctlib.airflow.parse import CTLog, LogListError, Settings, monitored_logs, schedule_for, timetable_for

DOC = """
### Ingest `{description}`

Operator **{operator}**, state **{state}**, {kind} API at `{url}`.

Every run: **ingest** reads the watermark (Variable `ct_state__{slug}`) and the log's
verified tree head and plans the missing entries. A small backlog (one range of at most
CT_INLINE_ENTRIES) it fetches, stores and commits itself: its `result` XCom says how many
entries. A larger one it splits into ranges: **fetch** (one task per range, labelled by it)
downloads, decodes and writes each range to Parquet (`certs/log={slug}/...`, undecodable
entries to `errors/`) and to Kafka; **commit** verifies them against the signed root and
advances the watermark only when every range is stored. The task that commits announces
the new files on the `ct://certs` asset. fetch and commit are skipped when there is nothing
for them. A failed or cleared run is safe to re-run: files are rewritten, never doubled.

**Backfill by time**: use the Backfills tab (or `airflow backfill create`, or
`POST /api/v2/backfills`). Each backfill run stores the entries *logged* (their log
timestamp) from its logical date to the next one on this DAG's schedule, so a backfill's
runs cover its range with no gap and no overlap. The same by hand: trigger with
`start_time` and `end_time` (ISO-8601, UTC). Only history before where scheduled ingestion
began is stored (it holds the rest), verified against the log's signed root, into the same
lake and topic, without touching the watermark; a repeated backfill stores nothing twice.
Backfill tasks run in the `{backfill_pool}` pool, so they never take live ingestion's slots.

**Backfill by index**: trigger with `start_index` and `end_index` to fetch that index
range; ranges are rounded out to 8,192-entry cells.

{schedule}
"""


def build_ingest_dag(ctlog: CTLog, settings: Settings, now: datetime | None = None):
    """The ingest DAG of `ctlog`, scheduled as ctlib.ingest.schedule decides as of `now` (parse time)."""
    log_json = ctlog.to_dict()
    sched = schedule_for(ctlog, now or datetime.now(UTC), settings)
    alias = certs_alias(ctlog.slug)
    woken = [wake_alias(ctlog.slug)] if sched.wake else []

    @dag(
        dag_id=f"ct_ingest__{ctlog.slug}",
        description=f"Ingest CT log {ctlog.description}",
        doc_md=DOC.format(**log_json, schedule=sched.describe(), backfill_pool=settings.backfill_pool),
        schedule=timetable_for(sched),
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        max_active_runs=1,  # Variables have no compare-and-set: one writer per log
        dagrun_timeout=timedelta(minutes=30),
        tags=["ct", "ingest", ctlog.kind, ctlog.operator[:100]],  # Airflow refuses longer tags
        params={
            "start_index": Param(None, type=["null", "integer"], minimum=0,
                                 description="Backfill: first index to fetch (leave empty for a normal run)"),
            "end_index": Param(None, type=["null", "integer"], minimum=1,
                               description="Backfill: index after the last one to fetch"),
            "start_time": Param(None, type=["null", "string"], format="date-time",
                                description="Backfill by time: the entries logged from this time (ISO-8601, UTC)"),
            "end_time": Param(None, type=["null", "string"], format="date-time",
                              description="Backfill by time: ... until before this time (ISO-8601, UTC)"),
        },
        default_args=settings.default_args(),
    )
    def ingest_dag():
        @task(task_id="ingest", outlets=[alias, *woken])
        def ingest(params=None, ti=None, dag_run=None, *, outlet_events=None) -> list[dict]:
            from ctlib.airflow.ingest_tasks import ingest_task

            return ingest_task(log_json, params, ti, outlet_events, wakes=bool(woken), dag_run=dag_run)

        # Each fetch task is labelled by its range (ingest_tasks.RANGE_LABEL) in the grid.
        @task(max_active_tis_per_dagrun=settings.fetch_parallelism, map_index_template="{{ ct_range }}")
        def fetch(work: dict) -> dict:
            from ctlib.airflow.ingest_tasks import fetch_task

            return fetch_task(log_json, work)

        @task(outlets=[alias, *woken])
        def commit(plan: dict, summaries: list[dict], *, outlet_events=None) -> dict:
            from ctlib.airflow.ingest_tasks import commit_task

            # Index by length: iterating a lazy XCom sequence probes one past its end.
            summaries = [summaries[i] for i in range(len(summaries))]
            return commit_task(log_json, plan, summaries, outlet_events, wakes=bool(woken))

        work = ingest()  # one work item per range; none when idle or done by ingest itself
        # Airflow types a called @task as XComArg; at run time it is a PlainXComArg, which indexes.
        commit(work["plan"], fetch.expand(work=work))  # type: ignore[index]

    return ingest_dag()


def _register() -> None:
    settings = Settings.from_env()
    wanted = get_parsing_context().dag_id
    try:
        logs = monitored_logs(settings)
    except LogListError as err:
        raise RuntimeError(f"cannot build ingest DAGs from {settings.log_list}: {err}") from None
    now = datetime.now(UTC)  # a log that froze since the last parse is rescheduled now
    for ctlog in logs:
        dag_id = f"ct_ingest__{ctlog.slug}"
        if wanted is None or wanted == dag_id:
            globals()[dag_id] = build_ingest_dag(ctlog, settings, now)


_register()
