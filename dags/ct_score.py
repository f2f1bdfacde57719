"""Phishing scoring of new certificates, run on every `ct://certs` asset event.

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

Runs on `ct://certs` asset events (one per committed ingest run; several batched into one
run are all processed). Scores every DNS name of every certificate in the files the events
name (keywords, brands by edit distance on the registrable label and subdomain tokens,
homoglyphs and punycode, suspicious TLDs, entropy, label depth, free CAs; lists and weights
in `include/scoring/`), writes `scores/` and `alerts/` next to the certs files (same partition
and file name, so a re-run replaces rather than adds), sends alerts to Kafka `ct-alerts`, and
announces the alert files on the `ct://alerts` asset.

Alerts at or above `CT_NOTIFY_MIN_SCORE` (default 90) are also sent by `score`, one message
per run, to each notification channel whose connection exists (webhook `ct_webhook`, Slack
`ct_slack`, e-mail `ct_smtp`; see ct_watch), each issuance once (a final certificate's alert
after its precertificate's is left out; `notifications/` records what was sent). A channel
that fails there gets a `notify` task of its own, labelled by the channel, which Airflow
retries.

Manual run: give `files` (certs file paths) to re-score them.
""",
    schedule=[CERTS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "score"],
    params={"files": Param([], type="array", description="certs files to score (manual runs)")},
    # Alerts are what a person waits for: its tasks go before ingest's when executor slots are
    # short (ingest's weights are 1 to 3).
    default_args={**SETTINGS.default_args(), "priority_weight": 10, "weight_rule": "absolute"},
)
def ct_score_dag():
    @task
    def score(params=None, triggering_asset_events=None, dag_run=None, ti=None) -> dict:
        from ctlib.airflow.downstream_tasks import score_task

        return score_task(list(params.get("files") or []), triggering_asset_events or {}, dag_id=dag_run.dag_id,
                          run_id=dag_run.run_id, try_number=ti.try_number)

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
