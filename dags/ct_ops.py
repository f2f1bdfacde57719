"""Operations DAGs: keep the log list snapshot fresh.

Wiring only; the task body is in ctlib.airflow.maintenance_tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, task

from ctlib.airflow.assets import LOGLIST_WAKE_ALIAS
from ctlib.airflow.parse import Settings

SETTINGS = Settings.from_env()


@dag(
    dag_id="ct_loglist_refresh",
    description="Download Google's CT log list, verify its signature, and replace the snapshot the ingest DAGs are built from",
    doc_md="""
### Refresh the CT log list

Downloads the v3 log list (Google's by default, `CT_LOG_LIST_URL`; or `CT_LOG_LIST` when that
is a URL) and its detached signature (`.sig`), verifies the signature with Google's log-list
key (`include/google_log_list_pubkey.pem`), checks the list (every `log_id` is the SHA-256 of
its key, states and URLs are sane) and replaces the local snapshot (`CT_LOG_LIST_SNAPSHOT`)
atomically. The DAG factory then has DAGs for new logs and none for removed or retired ones
(their state and data stay). A list that fails any check is refused and the old snapshot
stays. When `CT_LOG_LIST` pins a local file there is nothing to do.

A newly installed list that changes the state or temporal interval of a frozen log (one on
its hourly schedule) emits that log's wake-up asset `ct://wake/<slug>`, so it runs once more
at once.
""",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "ops"],
    default_args=SETTINGS.default_args(),
)
def loglist_refresh():
    @task(outlets=[LOGLIST_WAKE_ALIAS])
    def refresh(*, outlet_events=None) -> dict:
        from ctlib.airflow.maintenance_tasks import loglist_refresh_task

        return loglist_refresh_task(outlet_events)

    refresh()


ct_loglist_refresh = loglist_refresh()
