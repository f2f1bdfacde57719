"""Task bodies of the downstream DAGs (ct_score, ct_enrich): read the triggering asset
events, call the library, publish to Kafka. Imported only when a task runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ctlib.settings import Settings
from ctlib.sinks.parquet import Lake

log = logging.getLogger(__name__)


def _publish(settings: Settings, topic: str, messages: Iterable[tuple[bytes, bytes]], what: str) -> int:
    if not settings.kafka_enabled:
        return 0
    from ctlib.sinks.kafka import producer_from_connection, publish

    return publish(producer_from_connection(settings.kafka_conn_id), topic, messages,
                   timeout=settings.kafka_flush_timeout, what=what)


def score_task(manual_files: list[str], events: Mapping[Any, Iterable[Any]]) -> dict[str, Any]:
    from ctlib.score import Scorer
    from ctlib.score_files import alert_messages, files_from_events, score_certs_file

    settings = Settings.from_env()
    files = manual_files or files_from_events(events)
    if not files:
        log.info("no certs file to score (no triggering asset event and no `files` param)")
    lake = Lake.open(settings.lake)
    scorer = Scorer()
    results, alerts_sent = [], 0
    for certs_file in files:
        scored, alerts = score_certs_file(lake, certs_file, scorer)
        alerts_sent += _publish(settings, settings.kafka_alerts_topic, alert_messages(alerts), f"alerts of {certs_file}")
        results.append(scored)
        log.info("%s: %d names scored, %d alerts", certs_file, scored.names, scored.alerts)
    return {
        "files": len(files),
        "names": sum(r.names for r in results),
        "alerts": sum(r.alerts for r in results),
        "alert_files": [r.alerts_file for r in results if r.alerts_file],
        "kafka_messages": alerts_sent,
    }


def announce_alerts(summary: dict[str, Any], outlet_event: Any) -> dict[str, Any]:
    """Emit the `ct://alerts` event only when there is something to enrich."""
    if not summary["alert_files"]:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("no alert in this batch")
    outlet_event.extra = {"files": summary["alert_files"], "alerts": summary["alerts"]}
    return summary
