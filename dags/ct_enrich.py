"""Threat-intel enrichment of alerted domains, run on every `ct://alerts` asset event.

Wiring only; the task bodies are in ctlib.airflow.downstream_tasks.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, task

from ctlib.airflow.assets import ALERTS
from ctlib.airflow.parse import Settings

SETTINGS = Settings.from_env()


@dag(
    dag_id="ct_enrich",
    description="Enrich alerted domains through PassiveTotal and Anomali ThreatStream; combined risk",
    doc_md="""
### Threat-intel enrichment

Runs on `ct://alerts` asset events. For each alerted registered domain not enriched within
`CT_ENRICH_TTL`, asks **PassiveTotal** (connection `passivetotal_default`: whois, passive
DNS, enrichment) and **Anomali ThreatStream** (connection `threatstream_default`:
intelligence by value), then combines the phishing score, threat-intel hits and the
domain's registration age into a 0-100 risk. A provider without a connection is skipped
with one log line. Calls run in the `ct_enrichment` pool (`CT_ENRICH_POOL`), which caps how
many batches talk to the APIs at once. Writes `enrichment/` and Kafka `ct-enriched`.

PassiveTotal's public API was retired in 2025: when its host answers as retired, the task
says so and goes on with ThreatStream.

Manual run: give `files` (alerts file paths) to enrich their domains.
""",
    schedule=[ALERTS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "enrich"],
    params={"files": Param([], type="array", description="alerts files to enrich (manual runs)")},
    default_args=SETTINGS.default_args(),
)
def ct_enrich_dag():
    @task
    def select_domains(params=None, triggering_asset_events=None) -> list[dict]:
        from ctlib.airflow.downstream_tasks import enrichment_batches

        return enrichment_batches(list(params.get("files") or []), triggering_asset_events or {})

    @task(pool=SETTINGS.enrich_pool)
    def enrich(batch: dict, run_id=None) -> dict:
        from ctlib.airflow.downstream_tasks import enrich_batch

        return enrich_batch(batch, run_id)

    enrich.expand(batch=select_domains())


ct_enrich = ct_enrich_dag()
