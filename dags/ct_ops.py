"""Operations DAGs: keep the log list snapshot fresh."""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import Asset, AssetAlias, dag, task

from ctlib.ingest.schedule import wake_uri
from ctlib.settings import Settings

SETTINGS = Settings.from_env()
WAKE_ALIAS = AssetAlias("ct_loglist_wake")
"""The refresh announces the wake-up assets (`ct://wake/<slug>`) of frozen logs a new list changed."""


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
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "ops"],
    default_args=SETTINGS.default_args(),
)
def loglist_refresh():
    @task(outlets=[WAKE_ALIAS])
    def refresh(*, outlet_events=None) -> dict:
        from ctlib.ct.loglist_sync import installed_list, refresh_snapshot, woken_logs

        settings = Settings.from_env()
        before = installed_list(settings)
        loglist = refresh_snapshot(settings)
        if loglist is None:
            return {"downloaded": False}
        woken = woken_logs(before, loglist, datetime.now(timezone.utc))
        for slug in woken:
            outlet_events[WAKE_ALIAS].add(Asset(wake_uri(slug)), extra={"log": slug, "version": loglist.version})
        return {"downloaded": True, "version": loglist.version, "monitored": len(loglist.monitored()), "woken": woken}

    refresh()


ct_loglist_refresh = loglist_refresh()
