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

Manual run: give `files` (certs file paths) to re-score them.
""",
    schedule=[CERTS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "score"],
    params={"files": Param([], type="array", description="certs files to score (manual runs)")},
    default_args=SETTINGS.default_args(),
)
def ct_score_dag():
    @task
    def score(params=None, triggering_asset_events=None) -> dict:
        from ctlib.airflow.downstream_tasks import score_task

        return score_task(list(params.get("files") or []), triggering_asset_events or {})

    @task(outlets=[ALERTS])
    def announce(summary: dict, outlet_events=None) -> dict:
        from ctlib.airflow.downstream_tasks import announce_alerts

        return announce_alerts(summary, outlet_events[ALERTS])

    announce(score())


ct_score = ct_score_dag()
