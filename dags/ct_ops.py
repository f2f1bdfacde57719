"""Operations DAGs: keep the log list snapshot fresh."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, task

from ctlib.settings import Settings

SETTINGS = Settings.from_env()


@dag(
    dag_id="ct_loglist_refresh",
    description="Download the CT log list (CT_LOG_LIST URL) into the local snapshot the ingest DAGs are built from",
    doc_md="""
### Refresh the CT log list

When `CT_LOG_LIST` is an http(s) URL, downloads it, checks it (every `log_id` is the SHA-256
of its key, states and URLs are sane) and replaces the local snapshot
(`CT_LOG_LIST_SNAPSHOT`) atomically; the DAG factory then has DAGs for new logs and none for
removed or retired ones (their state and data stay). A list that fails the checks is refused
and the old snapshot stays. When `CT_LOG_LIST` is a local file there is nothing to do.
""",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "ops"],
    default_args={
        "owner": "ct-airflow",
        "retries": SETTINGS.task_retries,
        "retry_delay": timedelta(seconds=SETTINGS.task_retry_delay),
    },
)
def loglist_refresh():
    @task
    def refresh() -> dict:
        from ctlib.loglist_sync import refresh_snapshot

        loglist = refresh_snapshot(Settings.from_env())
        if loglist is None:
            return {"downloaded": False}
        return {"downloaded": True, "version": loglist.version, "monitored": len(loglist.monitored())}

    refresh()


ct_loglist_refresh = loglist_refresh()
