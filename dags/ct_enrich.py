"""Threat-intel enrichment of alerted domains: woken by `ct://alerts` asset events, it reads each
log's committed alerts after its own watermark (ctlib.downstream.progress).

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

Woken by `ct://alerts` asset events (the events only wake it). Each run reads, for every
log, the alerts of the entries after its own watermark (the Variable
`ct_downstream__enrich__<slug>`) up to ct_score's watermark (only committed scoring), at
most CT_DOWNSTREAM_MAX_PER_RUN (200,000) entries per log and run, from the lake whatever happened to the files since;
its watermark moves in `commit`, once every batch succeeded. For each alerted registered
domain not enriched within
`CT_ENRICH_TTL`, asks **PassiveTotal** (connection `passivetotal_default`: whois, passive
DNS, enrichment) and **Anomali ThreatStream** (connection `threatstream_default`:
intelligence by value), then combines the phishing score, threat-intel hits and the
domain's registration age into a 0-100 risk. A provider without a connection is skipped
with one log line. Calls run in the `ct_enrichment` pool (`CT_ENRICH_POOL`), which caps how
many batches talk to the APIs at once. Writes `enrichment/` and Kafka `ct-enriched`.

PassiveTotal's public API was retired in 2025: when its host answers as retired, the task
says so and goes on with ThreatStream.

Manual run: `log`, `start_index`, `end_index` enrich the alerts of that range (rounded out to
whole cells of 8,192 entries, below ct_score's watermark), e.g. those a manual ct_score run
wrote for backfilled history; the watermark is not touched.
""",
    schedule=[ALERTS],
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["ct", "enrich"],
    params={
        "log": Param(None, type=["null", "string"], description="manual run: the log (slug) whose range to enrich the alerts of"),
        "start_index": Param(None, type=["null", "integer"], minimum=0, description="manual run: first index"),
        "end_index": Param(None, type=["null", "integer"], minimum=1, description="manual run: end index (exclusive)"),
    },
    default_args=SETTINGS.default_args(),
)
def ct_enrich_dag():
    # Saves each log's range as pending; returns the batches, and keeps the ranges to commit
    # in the XCom "commit" (a mapped task can only expand a task's return value).
    @task
    def select_domains(params=None, ti=None) -> list[dict]:
        from ctlib.airflow.downstream_tasks import enrichment_plan

        plan = enrichment_plan(params or {})
        ti.xcom_push(key="commit", value=plan["commit"])
        return plan["batches"]

    @task(pool=SETTINGS.enrich_pool)
    def enrich(batch: dict, run_id=None) -> dict:
        from ctlib.airflow.downstream_tasks import enrich_batch

        return enrich_batch(batch, run_id)

    # Runs when every batch succeeded, or there was none (a mapped task over no batch is skipped).
    @task(trigger_rule="none_failed")
    def commit(ti=None) -> dict:
        from ctlib.airflow.downstream_tasks import enrichment_commit

        return enrichment_commit(ti.xcom_pull(task_ids="select_domains", key="commit") or [])

    enrich.expand(batch=select_domains()) >> commit()


ct_enrich = ct_enrich_dag()
