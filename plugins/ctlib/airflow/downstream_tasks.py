"""Task bodies of the downstream DAGs (ct_score, ct_enrich): read the triggering asset
events, call the library, publish to Kafka. Imported only when a task runs."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from ctlib.lake.files import Lake
from ctlib.settings import Settings

log = logging.getLogger(__name__)


def _publish(settings: Settings, topic: str, messages: Iterable[tuple[bytes, bytes]], what: str) -> int:
    if not settings.kafka_enabled:
        return 0
    from ctlib.kafka import producer_from_connection, publish

    return publish(producer_from_connection(settings.kafka_conn_id), topic, messages,
                   timeout=settings.kafka_flush_timeout, what=what)


def score_task(manual_files: list[str], events: Mapping[Any, Iterable[Any]]) -> dict[str, Any]:
    """Score every certs file of the triggering events (or `manual_files`). Each distinct
    (name, issuer) is scored once for the whole run: one DistinctScores serves every file."""
    from ctlib.downstream.score import Scorer
    from ctlib.downstream.scoring import DistinctScores, alert_messages, files_from_events, score_certs_file

    settings = Settings.from_env()
    files = manual_files or files_from_events(events)
    if not files:
        log.info("no certs file to score (no triggering asset event and no `files` param)")
    lake = Lake.open(settings.lake)
    scorer = Scorer()
    distinct = DistinctScores(scorer)
    results, alerts_sent = [], 0
    for certs_file in files:
        before = distinct.scored
        scored, alerts = score_certs_file(lake, certs_file, scorer, distinct=distinct)
        alerts_sent += _publish(settings, settings.kafka_alerts_topic, alert_messages(alerts), f"alerts of {certs_file}")
        results.append(scored)
        log.info("%s: %d names scored (%d distinct, %d new to this run), %d alerts", certs_file, scored.names,
                 scored.distinct, distinct.scored - before, scored.alerts)
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


def enrichment_batches(manual_files: list[str], events: Mapping[Any, Iterable[Any]],
                       batch_size: int = 25) -> list[dict[str, Any]]:
    """Alerted registered domains of the triggering alert files, not enriched within the TTL,
    in batches (one pooled task each). Each domain carries its best score and evidence."""
    import pyarrow.parquet as pq

    from ctlib.downstream.enrich import normalize_domain
    from ctlib.downstream.enrich.cache import recently_enriched
    from ctlib.downstream.scoring import files_from_events

    settings = Settings.from_env()
    lake = Lake.open(settings.lake)
    files = manual_files or files_from_events(events)
    domains: dict[str, dict[str, Any]] = {}
    for path in files:
        columns = ["registered_domain", "name", "score", "cert_sha256", "log_slug"]
        for row in pq.read_table(lake.path_of(path), columns=columns, filesystem=lake.filesystem).to_pylist():
            domain = normalize_domain(row["registered_domain"])
            best = domains.setdefault(domain, {"domain": domain, "score": row["score"], "names": [],
                                               "cert_sha256": row["cert_sha256"], "log_slug": row["log_slug"]})
            if row["score"] > best["score"]:
                best.update(score=row["score"], cert_sha256=row["cert_sha256"], log_slug=row["log_slug"])
            if row["name"] not in best["names"] and len(best["names"]) < 20:
                best["names"].append(row["name"])
    fresh = recently_enriched(lake, list(domains), settings.enrich_ttl)
    todo = [domains[d] for d in sorted(domains) if d not in fresh]
    log.info("%d alerted domains in %d files; %d enriched within the TTL, %d to enrich",
             len(domains), len(files), len(fresh), len(todo))
    return [{"number": i, "domains": todo[i:i + batch_size]} for i in range(0, len(todo), batch_size)]


def enrich_batch(batch: dict[str, Any], run_id: str) -> dict[str, Any]:
    """Ask PassiveTotal and ThreatStream about each domain of the batch (a provider without
    a connection is skipped), combine the risk, write `enrichment/` and `ct-enriched`."""
    import json
    import re
    from datetime import UTC, datetime

    from ctlib.downstream.enrich.cache import EnrichmentRecord, write_enrichment
    from ctlib.downstream.enrich.connections import PASSIVETOTAL, THREATSTREAM, credentials_for
    from ctlib.downstream.enrich.passivetotal import PassiveTotalClient
    from ctlib.downstream.enrich.risk import combined_risk
    from ctlib.downstream.enrich.threatstream import ThreatStreamClient
    from ctlib.downstream.score import Scorer

    settings = Settings.from_env()
    threshold = Scorer().threshold
    pt_creds, ts_creds = credentials_for(PASSIVETOTAL), credentials_for(THREATSTREAM)
    pt = PassiveTotalClient(pt_creds) if pt_creds else None
    ts = ThreatStreamClient(ts_creds) if ts_creds else None
    records = []
    for item in batch["domains"]:
        domain = item["domain"]
        pt_result = pt.lookup(domain) if pt else None
        ts_result = ts.lookup(domain) if ts else None
        now = datetime.now(UTC)
        risk, reasons = combined_risk(item["score"], threshold, pt_result, ts_result, now.date())
        records.append(EnrichmentRecord.build(
            domain, enriched_at=now, score=item["score"], risk=risk, risk_reasons=reasons,
            pt=pt_result, ts=ts_result, cert_sha256=item["cert_sha256"], log_slug=item["log_slug"],
            names=item["names"],
        ))
        log.info("%s: risk %.1f (%s); PassiveTotal %s, ThreatStream %s", domain, risk, ", ".join(reasons),
                 pt_result.status if pt_result else "skipped", ts_result.status if ts_result else "skipped")
    # Named by run and batch: a retried task replaces its own file.
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{run_id}-{batch['number']:04d}")
    files = write_enrichment(Lake.open(settings.lake), records, name)
    messages = ((r.domain.encode(), json.dumps(r.row(), default=str, separators=(",", ":")).encode()) for r in records)
    sent = _publish(settings, settings.kafka_enriched_topic, messages, f"enrichment batch {batch['number']}")
    return {"domains": len(records), "files": files, "kafka_messages": sent,
            "high_risk": sorted(r.domain for r in records if r.risk >= 60)}
