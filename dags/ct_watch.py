"""Watch your own domains: match new certificates against the watchlist and notify; woken by
`ct://certs` asset events, it reads each log's entries after its own watermark
(ctlib.downstream.progress).

Wiring only; the task bodies are in ctlib.airflow.downstream_tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, task

from ctlib.airflow.assets import CERTS
from ctlib.airflow.parse import Settings

SETTINGS = Settings.from_env()


@dag(
    dag_id="ct_watch",
    description="Match new certificates against the watchlist (CT_WATCHLIST); notify new issuances",
    doc_md="""
### Watchlist

Woken by `ct://certs` asset events (the events only wake it). Each run reads, for every log
with an ingest state, the entries after its own watermark (the Variable
`ct_downstream__watch__<slug>`; a log first seen starts at its ingest `first_index`) up to
the ingest watermark, at most CT_DOWNSTREAM_MAX_PER_RUN (200,000) per log and run, from the lake's live files whatever
compaction did since: paused for a week, cleared or re-run, it catches up exactly once. The
range is saved as pending first and the watermark moves only once the matches are kept and
notified.

It matches every DNS name and IP address of those certificates against the watchlist
(`CT_WATCHLIST`, certspotter's format, re-read every run: `.example.com` for a domain and
all under it, `www.example.com` for one name, IPs and networks; a certificate's wildcard
counts for the names it covers; IDNs in Unicode or punycode) and keeps `watch_matches/`:
one row per issuance and watch item. A precertificate and its final certificate are one
issuance (`tbs_sha256`): the final certificate adds its sha256 to the row and is not
notified again.

`match` then tells each configured channel about every issuance this run found, one message
each: the generic JSON webhook (HTTP connection `CT_NOTIFY_WEBHOOK_CONN`, default
`ct_webhook`), Slack (incoming-webhook connection `ct_slack`) and e-mail (SMTP connection
`ct_smtp`, recipients `CT_NOTIFY_EMAIL_TO`), each when its connection exists. Every message
sent is recorded in `notifications/`, so a retry sends only what was not sent. A channel
that fails there gets a `notify` task of its own, labelled by the channel, which Airflow
retries; one that keeps failing fails it, and the matches stay in the lake.

Manual run: `log`, `start_index`, `end_index` match that range of the log again (rounded out
to whole cells of 8,192 entries, below the ingest watermark; the watermark is not touched,
nothing is kept or notified twice), e.g. after adding a watch item, or over backfilled
history below the log's `first_index`, which the watermark never reads.
""",
    schedule=[CERTS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "watch"],
    params={
        "log": Param(None, type=["null", "string"], description="manual run: the log (slug) whose range to match"),
        "start_index": Param(None, type=["null", "integer"], minimum=0, description="manual run: first index"),
        "end_index": Param(None, type=["null", "integer"], minimum=1, description="manual run: end index (exclusive)"),
    },
    # Notifications are what a person waits for: its tasks go before ingest's when executor
    # slots are short (ingest's weights are 1 to 3).
    default_args={**SETTINGS.default_args(), "priority_weight": 10, "weight_rule": "absolute"},
)
def ct_watch_dag():
    @task
    def match(params=None, dag_run=None, ti=None) -> list[dict]:
        from ctlib.airflow.downstream_tasks import watch_task

        return watch_task(params or {}, dag_id=dag_run.dag_id, run_id=dag_run.run_id, try_number=ti.try_number)

    # One task per channel that match could not notify, labelled by it (downstream_tasks.CHANNEL_LABEL).
    @task(map_index_template="{{ ct_channel }}")
    def notify(job: dict, dag_run=None, ti=None) -> dict:
        from ctlib.airflow.downstream_tasks import notify_watch_task

        return notify_watch_task(job, dag_id=dag_run.dag_id, run_id=dag_run.run_id, try_number=ti.try_number)

    notify.expand(job=match())


ct_watch = ct_watch_dag()
