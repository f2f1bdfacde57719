"""Maintenance DAGs: `ct_compact` merges small lake files (hourly), `ct_health` watches ingest lag.

Wiring only; the task bodies are in ctlib.airflow.maintenance_tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Param, dag, task

from ctlib.airflow.parse import Settings

SETTINGS = Settings.from_env()
START = datetime(2026, 1, 1, tzinfo=UTC)


@dag(
    dag_id="ct_compact",
    description="Merge each closed day partition of certs/ and errors/ into one file per log, switched by its manifest",
    doc_md="""
### Compact the lake

Ingest writes one Parquet file per range and day. Once a day can no longer receive rows
(it ended before the newest committed day minus the log's MMD), this DAG merges the live
files of each `certs/` and `errors/` partition `log=<slug>/date=<day>` into **one file sorted
by index** (`<first>-<end>.c<generation>.parquet`), then writes the partition's
`_manifest.json`, which makes that file live and the files it absorbed not. A reader that
follows the manifest (`python -m ctlib.query`, `ctlib.lake.manifest.live_files`) sees every
entry exactly once at every instant, also after a crash; a local disk and an object store
(S3) work the same. The absorbed files are deleted by a later run, once the manifest is 15
minutes old (hourly: within about an hour). A backfill into a compacted day is merged into
the next generation; partitions that cannot be merged safely now (uncommitted ranges, fresh
backfills, one index with two different entries) are skipped and logged. Details and the
crash-safety argument: `ctlib.lake.compaction`.

One compaction per log at a time: one mapped task per log, and one run at a time
(`max_active_runs=1`).

Params: `log` (a slug) restricts to one log; `days_back` to the last N days.
""",
    schedule="@hourly",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    tags=["ct", "ops"],
    params={
        "log": Param(None, type=["null", "string"], description="Only this log (slug); empty for every log"),
        "days_back": Param(None, type=["null", "integer"], minimum=1,
                           description="Only days within the last N days; empty for every closed day"),
    },
    default_args=SETTINGS.default_args(),
)
def ct_compact_dag():
    @task
    def targets(params=None) -> list[dict]:
        from ctlib.airflow.maintenance_tasks import compaction_targets_task

        return compaction_targets_task((params or {}).get("log"))

    # I/O-heavy: a couple at a time, so ingest keeps the disk.
    @task(max_active_tis_per_dagrun=2)
    def compact(target: dict, params=None) -> dict:
        from ctlib.airflow.maintenance_tasks import compact_task

        return compact_task(target, (params or {}).get("days_back"))

    compact.expand(target=targets())


@dag(
    dag_id="ct_health",
    description="Per-log ingest lag, progress, errors and incidents; fails when a log lags or stalls",
    doc_md="""
### Ingest health

Every 5 minutes, for each monitored log: lag in entries (the log's current verified tree
size minus the watermark), lag in seconds (age of the first entry not ingested), time since
the watermark last moved, error and incident rows in the lake, and a status
(`ok`, `lagging`, `stalled`, `unreachable`, `not_started`). The rows go to
`health/date=<day>/<checked_at ms>.parquet` and the task log. The run **fails** (after
writing) when a log's oldest pending entry is older than `CT_HEALTH_MAX_LAG_SECONDS`, or a
log with a backlog, or unreachable, has not progressed for `CT_HEALTH_STALL_SECONDS`; the
message names the logs and their figures, so the usual failure alerting fires.
""",
    schedule="*/5 * * * *",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
    tags=["ct", "ops"],
    default_args=SETTINGS.default_args(),
)
def ct_health_dag():
    @task
    def check() -> dict:
        from ctlib.airflow.maintenance_tasks import health_task

        return health_task()

    check()


ct_compact = ct_compact_dag()
ct_health = ct_health_dag()
