"""Task bodies of the downstream DAGs (ct_score, ct_watch, ct_enrich): read the triggering
asset events, call the library, publish to Kafka, notify. Imported only when a task runs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ctlib.lake.files import Lake
from ctlib.ops import counters
from ctlib.settings import Settings

log = logging.getLogger(__name__)


def _publish(settings: Settings, topic: str, messages: Iterable[tuple[bytes, bytes]], what: str) -> int:
    if not settings.kafka_enabled:
        return 0
    from ctlib.kafka import producer_from_connection, publish

    return publish(producer_from_connection(settings.kafka_conn_id), topic, messages,
                   timeout=settings.kafka_flush_timeout, what=what)


def score_task(manual_files: list[str], events: Mapping[Any, Iterable[Any]], *, dag_id: str, run_id: str,
               try_number: int) -> dict[str, Any]:
    """Score every certs file of the triggering events (or `manual_files`). Each distinct
    (name, issuer) is scored once for the whole run: one DistinctScores serves every file.
    Alerts at or above CT_NOTIFY_MIN_SCORE are notified at once (`_notify_now`); `channels`
    lists those that failed, for their notify tasks to retry."""
    import pyarrow.compute as pc

    from ctlib.downstream.score import Scorer
    from ctlib.downstream.scoring import DistinctScores, alert_messages, files_from_events, score_certs_file

    settings = Settings.from_env()
    files = manual_files or files_from_events(events)
    if not files:
        log.info("no certs file to score (no triggering asset event and no `files` param)")
    lake = Lake.open(settings.lake)
    scorer = Scorer()
    distinct = DistinctScores(scorer)
    results, alerts_sent, alert_tables = [], 0, []
    for certs_file in files:
        before = distinct.scored
        scored, alerts = score_certs_file(lake, certs_file, scorer, distinct=distinct)
        alert_tables.append(alerts)
        alerts_sent += _publish(settings, settings.kafka_alerts_topic, alert_messages(alerts), f"alerts of {certs_file}")
        results.append(scored)
        log.info("%s: %d names scored (%d distinct, %d new to this run), %d alerts", certs_file, scored.names,
                 scored.distinct, distinct.scored - before, scored.alerts)
    notable = sum(int(pc.sum(pc.greater_equal(a.column("score"), settings.notify_min_score)).as_py() or 0)
                  for a in alert_tables)
    alert_files = [r.alerts_file for r in results if r.alerts_file]
    counters.record_quietly(dag_id, run_id, {counters.ALERTS: sum(r.alerts for r in results)})
    failed = (_notify_now(settings, lambda: _phishing_notices(lake, settings, alert_files), batched=True,
                          dag_id=dag_id, run_id=run_id, try_number=try_number) if notable else [])
    return {
        "files": len(files),
        "names": sum(r.names for r in results),
        "alerts": sum(r.alerts for r in results),
        "alert_files": alert_files,
        "kafka_messages": alerts_sent,
        "notable_alerts": notable,
        "channels": failed,
    }


def _notify_now(settings: Settings, notices: Callable[[], list], *, batched: bool, dag_id: str, run_id: str,
                try_number: int) -> list[str]:
    """Deliver `notices()` on every configured channel from the task that found them (one
    task and one scheduling step fewer than a notify task each); the channels that failed,
    for their own notify tasks to retry, fail visibly and name the channel."""
    from ctlib.downstream.notify import NotificationError, configured_channels, deliver

    channels = configured_channels(settings)
    if not channels:
        return []
    lake, found, failed = Lake.open(settings.lake), notices(), []
    for channel in channels:
        try:
            deliver(lake, channel, found, settings=settings, dag_id=dag_id, run_id=run_id, try_number=try_number,
                    batched=batched)
        except NotificationError as err:
            log.warning("%s; its notify task tries again", err)
            failed.append(channel)
    return failed


CHANNEL_LABEL = "ct_channel"
"""Context key a notify task's map_index_template shows: its channel, not a bare map index."""


def _notify(channel: str, notices: list, *, batched: bool, dag_id: str, run_id: str, try_number: int) -> dict[str, Any]:
    from airflow.sdk import get_current_context

    from ctlib.downstream.notify import deliver

    try:
        get_current_context()[CHANNEL_LABEL] = channel  # type: ignore[literal-required]
    except RuntimeError:  # called outside a running task (tests): no label to show
        pass
    settings = Settings.from_env()
    report = deliver(Lake.open(settings.lake), channel, notices, settings=settings, dag_id=dag_id, run_id=run_id,
                     try_number=try_number, batched=batched)
    return {"channel": channel, "notices": len(notices), "sent": report.sent, "skipped": report.skipped,
            "messages": report.messages}


def watch_task(manual_files: list[str], events: Mapping[Any, Iterable[Any]], *, dag_id: str, run_id: str,
               try_number: int) -> list[dict[str, Any]]:
    """Match the certs files of the triggering events (or `manual_files`) against the
    watchlist (CT_WATCHLIST, read anew), keep watch_matches and notify what this run found
    (`_notify_now`); one job for each channel that failed, for its notify task."""
    from ctlib.downstream.scoring import files_from_events
    from ctlib.downstream.watching import rows_of_run, watch_files
    from ctlib.downstream.watchlist import load_watchlist

    settings = Settings.from_env()
    watchlist = load_watchlist(settings.watchlist)
    files = manual_files or files_from_events(events)
    if not files:
        log.info("no certs file to match (no triggering asset event and no `files` param)")
    lake = Lake.open(settings.lake)
    result = watch_files(lake, files, watchlist, run_id)
    log.info("watchlist %s: %d items; %s", settings.watchlist, len(watchlist.items), result.to_json())
    # The monitor's count: this run's rows (a retried attempt's too, which `result.new` misses).
    counters.record_quietly(dag_id, run_id, {counters.WATCH_MATCHES: len(rows_of_run(lake, result.files, run_id))})
    if not result.files:
        return []
    failed = _notify_now(settings, lambda: _watch_notices(lake, result.files, run_id), batched=False,
                         dag_id=dag_id, run_id=run_id, try_number=try_number)
    return [{"channel": channel, "files": result.files} for channel in failed]


def _watch_notices(lake: Lake, files: list[str], run_id: str) -> list:
    from ctlib.downstream.notify import watch_notices
    from ctlib.downstream.watching import rows_of_run

    return watch_notices(rows_of_run(lake, files, run_id))


def notify_watch_task(job: dict[str, Any], *, dag_id: str, run_id: str, try_number: int) -> dict[str, Any]:
    """Notify `job["channel"]` (which failed in the match task) of the issuances this run
    added to watch_matches (in `job["files"]`), one message each; what the delivery record
    holds is not sent again."""
    lake = Lake.open(Settings.from_env().lake)
    notices = _watch_notices(lake, job["files"], run_id)
    return _notify(job["channel"], notices, batched=False, dag_id=dag_id, run_id=run_id, try_number=try_number)


def notify_phishing_task(job: dict[str, Any], *, dag_id: str, run_id: str, try_number: int) -> dict[str, Any]:
    """Notify `job["channel"]` (which failed in the score task) of this run's phishing alerts
    (in `job["alert_files"]`) at or above CT_NOTIFY_MIN_SCORE, in one message; an issuance
    already notified (its precertificate's alert) is left out."""
    settings = Settings.from_env()
    notices = _phishing_notices(Lake.open(settings.lake), settings, job["alert_files"])
    return _notify(job["channel"], notices, batched=True, dag_id=dag_id, run_id=run_id, try_number=try_number)


def _phishing_notices(lake: Lake, settings: Settings, alert_files: list[str]) -> list:
    """The notices of the alerts in `alert_files` at or above CT_NOTIFY_MIN_SCORE."""
    import pyarrow.parquet as pq

    from ctlib.downstream.notify import phishing_notices
    from ctlib.lake import layout

    rows = []
    for uri in alert_files:
        path = lake.path_of(uri)
        alerts = pq.read_table(path, filesystem=lake.filesystem,
                               filters=[("score", ">=", settings.notify_min_score)]).to_pylist()
        if not alerts:
            continue
        # The issuance (tbs_sha256) is in the certs file the alerts file was scored from.
        certs = pq.read_table(layout.counterpart(lake.root, path, layout.CERTS, source=layout.ALERTS),
                              columns=["index", "tbs_sha256"], filesystem=lake.filesystem).to_pylist()
        tbs = {c["index"]: c["tbs_sha256"] for c in certs}
        rows += [{**a, "tbs_sha256": tbs[a["index"]]} for a in alerts]
    return phishing_notices(rows, settings.notify_min_score)


def announce_alerts(summary: dict[str, Any], outlet_event: Any) -> list[dict[str, Any]]:
    """Emit the `ct://alerts` event only when there is something to enrich (else skip, and the
    notify tasks with it); one notification job per channel the score task failed to notify."""
    if not summary["alert_files"]:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException("no alert in this batch")
    outlet_event.extra = {"files": summary["alert_files"], "alerts": summary["alerts"]}
    return [{"channel": channel, "alert_files": summary["alert_files"]} for channel in summary["channels"]]


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
    counters.record_quietly("ct_enrich", run_id,  # batches run at once: a counters document each
                            counters.enrichment_counts(s for r in records for s in (r.pt_status, r.ts_status)),
                            shard=batch["number"])
    return {"domains": len(records), "files": files, "kafka_messages": sent,
            "high_risk": sorted(r.domain for r in records if r.risk >= 60)}
