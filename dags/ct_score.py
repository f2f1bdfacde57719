"""Phishing scoring of new certificates: woken by `ct://certs` asset events, it scores each log's
entries after its own watermark (ctlib.downstream.progress).

Wiring only; the task bodies are in ctlib.airflow.downstream_tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, task

from ctlib.airflow.assets import ALERTS, CERTS
from ctlib.airflow.parse import Settings

SETTINGS = Settings.from_env()


@dag(
    dag_id="ct_score",
    description="Score the DNS names of new certificates for phishing; alert above the threshold",
    doc_md="""
### Phishing scoring

Woken by `ct://certs` asset events (an ingest run committed entries); the events only wake
it. Each run scores, for every log with an ingest state, the entries after its own
watermark, the Variable `ct_downstream__score__<slug>` (`next_index`; a log first seen
starts at its ingest `first_index`), up to the ingest watermark, at most CT_DOWNSTREAM_MAX_PER_RUN (200,000) entries per
log and run (a long pause drains over several runs). It reads them from the lake's live
files, whatever compaction did since, so a DAG paused for a week, cleared or re-run
catches up over everything committed, exactly once.

Scores every DNS name of every certificate (keywords, brands by edit distance on the
registrable label and subdomain tokens, homoglyphs and punycode, suspicious TLDs, entropy,
label depth, free CAs; lists and weights in `include/scoring/`), writes `scores/` and
`alerts/` as one file per range and day of the entries (`<start>-<end>.parquet`), sends
alerts to Kafka `ct-alerts`, and announces on `ct://alerts` that there are alerts. The range
is saved as pending before the work and the watermark moves only after publishing and
notifying: a retry, or the next run after a failed one, redoes exactly that range under the
same file names (no row twice).

Alerts at or above `CT_NOTIFY_MIN_SCORE` (default 90) are also sent by `score`, one message
per run, to each notification channel whose connection exists (webhook `ct_webhook`, Slack
`ct_slack`, e-mail `ct_smtp`; see ct_watch), each issuance once (a final certificate's alert
after its precertificate's is left out; `notifications/` records what was sent). A channel
that fails there gets a `notify` task of its own, labelled by the channel, which Airflow
retries.

Manual run: `log`, `start_index`, `end_index` score that range of the log without touching
the watermark, rounded out to whole cells of 8,192 entries (so repeated or overlapping
manual runs rewrite the same files), and only below the log's `first_index`: backfilled
history, which the watermark never scores (it starts at `first_index`).
""",

    schedule=[CERTS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "score"],
    params={
        "log": Param(None, type=["null", "string"], description="manual run: the log (slug) whose range to score"),
        "start_index": Param(None, type=["null", "integer"], minimum=0, description="manual run: first index"),
        "end_index": Param(None, type=["null", "integer"], minimum=1, description="manual run: end index (exclusive)"),
    },
    # Alerts are what a person waits for: its tasks go before ingest's when executor slots are
    # short (ingest's weights are 1 to 3).
    default_args={**SETTINGS.default_args(), "priority_weight": 10, "weight_rule": "absolute"},
)
def ct_score_dag():
    @task
    def score(params=None, dag_run=None, ti=None) -> dict:
        from ctlib.airflow.downstream_tasks import score_task

        return score_task(params or {}, dag_id=dag_run.dag_id, run_id=dag_run.run_id, try_number=ti.try_number)

    # Returns one notification job per channel the score task could not notify.
    @task(outlets=[ALERTS])
    def announce(summary: dict, outlet_events=None) -> list[dict]:
        from ctlib.airflow.downstream_tasks import announce_alerts

        return announce_alerts(summary, outlet_events[ALERTS])

    @task(map_index_template="{{ ct_channel }}")
    def notify(job: dict, dag_run=None, ti=None) -> dict:
        from ctlib.airflow.downstream_tasks import notify_phishing_task

        return notify_phishing_task(job, dag_id=dag_run.dag_id, run_id=dag_run.run_id, try_number=ti.try_number)

    notify.expand(job=announce(score()))


ct_score = ct_score_dag()
