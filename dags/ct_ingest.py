"""One ingest DAG per CT log of the log list: plan -> fetch (mapped over ranges) -> commit.

Wiring only; the work is in ctlib.ingest. Parsed every ~30 s and by every task, so it
imports nothing heavy at top level and, inside a task, builds only the DAG it runs for.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import Asset, AssetAlias, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_parsing_context, task

from ctlib.ct.loglist import CTLog, LogListError, load_log_list
from ctlib.ingest.schedule import LogSchedule, schedule_for
from ctlib.settings import Settings

CERTS_ASSET = Asset(uri="ct://certs", name="ct_certs")


def certs_alias(slug: str) -> AssetAlias:
    """plan announces ct://certs through an alias: only the runs it commits itself emit an
    event (an outlet Asset would emit one on every success, idle runs included). One alias per
    log: Airflow 3.3 links an alias to its asset on the alias's first event, and two logs'
    first events at the same moment on one shared alias made one insert fail with a unique
    violation, failing that run (seen with 6 logs starting together)."""
    return AssetAlias(f"ct_certs_inline__{slug}")


def wake_alias(slug: str) -> AssetAlias:
    """A frozen log's plan or commit announces its wake-up asset through this alias: only a
    run that leaves a backlog behind emits (one alias per log, as for certs_alias)."""
    return AssetAlias(f"ct_wake__{slug}")


def timetable_for(sched: LogSchedule):
    """The DAG's schedule: the cron shifted by the log's offset (a timetable registered by
    plugins/ct_timetables.py); a frozen log's also runs on its wake-up asset."""
    if sched.offset:
        from ctlib.airflow.timetables import OffsetCronTriggerTimetable

        timetable = OffsetCronTriggerTimetable(sched.cron, timezone="UTC", offset=sched.offset)
    elif sched.frozen:
        timetable = CronTriggerTimetable(sched.cron, timezone="UTC")
    else:
        return sched.cron  # CT_SCHEDULE_SPREAD=false: the plain cron, as Airflow makes it
    return AssetOrTimeSchedule(timetable=timetable, assets=Asset(sched.wake)) if sched.frozen else timetable


DOC = """
### Ingest `{description}`

Operator **{operator}**, state **{state}**, {kind} API at `{url}`.

Every run: **plan** reads the watermark (Variable `ct_state__{slug}`) and the log's tree
head, and splits the missing entries into ranges; **fetch** (one task per range) downloads,
decodes and writes each range to Parquet (`certs/log={slug}/...`, undecodable entries to
`errors/`) and to Kafka; **commit** advances the watermark only when every range is stored,
then announces the new files on the `ct://certs` asset. A run with nothing new skips fetch
and commit. A small backlog (one range of at most CT_INLINE_ENTRIES) is fetched and
committed by **plan** itself, in the same order, and fetch and commit are skipped: the
plan task's log shows it. A failed or cleared run is safe to re-run: files are rewritten,
never doubled.

**Backfill**: trigger with `start_index` and `end_index` to fetch that index range (history
before where ingestion began) into the same lake and topic, verified against the log's
signed root, without touching the watermark. Ranges are rounded out to 8,192-entry cells,
so repeating a backfill rewrites the same files.

{schedule}
"""


def build_ingest_dag(ctlog: CTLog, settings: Settings, now: datetime | None = None):
    """The ingest DAG of `ctlog`, scheduled as ctlib.ingest.schedule decides as of `now` (parse time)."""
    log_json = ctlog.to_dict()
    alias = certs_alias(ctlog.slug)
    sched = schedule_for(ctlog, now or datetime.now(timezone.utc), settings)
    wake = Asset(sched.wake) if sched.wake else None
    woken = [wake_alias(ctlog.slug)] if wake else []

    @dag(
        dag_id=f"ct_ingest__{ctlog.slug}",
        description=f"Ingest CT log {ctlog.description}",
        doc_md=DOC.format(**log_json, schedule=sched.describe()),
        schedule=timetable_for(sched),
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,  # Variables have no compare-and-set: one writer per log
        dagrun_timeout=timedelta(minutes=30),
        tags=["ct", "ingest", ctlog.kind, ctlog.operator[:100]],  # Airflow refuses longer tags
        params={
            "start_index": Param(None, type=["null", "integer"], minimum=0,
                                 description="Backfill: first index to fetch (leave empty for a normal run)"),
            "end_index": Param(None, type=["null", "integer"], minimum=1,
                               description="Backfill: index after the last one to fetch"),
        },
        default_args=settings.default_args(),
    )
    def ingest():
        def waker(outlet_events):
            return (lambda extra: outlet_events[woken[0]].add(wake, extra=extra)) if wake else None

        @task(outlets=[alias, *woken])
        def plan(params=None, *, outlet_events=None) -> list[dict]:
            from ctlib.airflow.ingest_tasks import plan_task

            return plan_task(log_json, params,
                             lambda extra: outlet_events[alias].add(CERTS_ASSET, extra=extra),
                             wake=waker(outlet_events))

        @task(max_active_tis_per_dagrun=settings.fetch_parallelism)
        def fetch(work: dict) -> dict:
            from ctlib.airflow.ingest_tasks import fetch_task

            return fetch_task(log_json, work)

        @task(outlets=[CERTS_ASSET, *woken])
        def commit(work: list[dict], summaries: list[dict], *, outlet_events=None) -> dict:
            from ctlib.airflow.ingest_tasks import commit_task

            # Index by length: iterating a lazy XCom sequence probes one past its end.
            summaries = [summaries[i] for i in range(len(summaries))]
            return commit_task(log_json, work, summaries,
                               lambda extra: setattr(outlet_events[CERTS_ASSET], "extra", extra),
                               wake=waker(outlet_events))

        # One work item per range; none when the log has nothing new, which skips the rest.
        work = plan()
        commit(work, fetch.expand(work=work))

    return ingest()


def _selected_logs() -> list[CTLog]:
    settings = Settings.from_env()
    path = settings.log_list_path
    if not path.exists() and settings.log_list_is_url:
        return []  # no snapshot downloaded yet: the log-list refresh DAG makes one
    return load_log_list(path).monitored()


def _register() -> None:
    settings = Settings.from_env()
    wanted = get_parsing_context().dag_id
    try:
        logs = _selected_logs()
    except LogListError as err:
        raise RuntimeError(f"cannot build ingest DAGs from {settings.log_list}: {err}") from None
    now = datetime.now(timezone.utc)  # a log that froze since the last parse is rescheduled now
    for ctlog in logs:
        dag_id = f"ct_ingest__{ctlog.slug}"
        if wanted is None or wanted == dag_id:
            globals()[dag_id] = build_ingest_dag(ctlog, settings, now)


_register()
