"""`/ct/metrics`: the monitor's Prometheus series, from `snapshot` (state Variables, the
newest health file, per-run counters; never a scan of the lake).

Per log, labels `log` (the slug), `kind` (`rfc6962` | `tiled`) and `operator`:

| series | type | value |
|---|---|---|
| `ct_log_tree_size` | gauge | the latest verified tree size |
| `ct_log_next_index` | gauge | the watermark: every entry below it is ingested |
| `ct_log_backlog_entries` | gauge | tree size minus watermark |
| `ct_log_freshness_lag_seconds` | gauge | age of the oldest entry not ingested yet; 0 when caught up |
| `ct_log_last_success_timestamp_seconds` | gauge | when a commit last wrote the watermark (Unix time) |
| `ct_log_entries_total` | counter | entries ingested into the lake (certs rows) |
| `ct_log_errors_total` | counter | entries that could not be decoded (errors rows) |
| `ct_log_incidents_total` | counter | incidents recorded (a log that lied), as the newest health check counted |
| `ct_log_status` | gauge | 1 for the log's status (label `status`: ok, behind, stalled, failing, not_started), 0 for the others |

A gauge whose value is unknown (a log not started yet; a lag no health check has read) is
NaN, so every monitored log has every series. Totals, no label: `ct_alerts_total`,
`ct_watch_matches_total`, `ct_enrichment_calls_total`, `ct_enrichment_failures_total`.

`MonitorCollector` is a prometheus_client Collector over given snapshots and totals (pure);
`exposition` renders it in a fresh registry, in the format the scraper asks for (Prometheus
text, or OpenMetrics); `router` serves it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

from fastapi import APIRouter, Request, Response
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ctlib.airflow.monitor.snapshot import STATUSES, LogSnapshot, log_snapshots, totals
from ctlib.ops import counters

LABELS = ("log", "kind", "operator")
NAN = math.nan
ValueOf = Callable[[LogSnapshot], float | int | None]

TOTALS = (
    ("ct_alerts", counters.ALERTS, "Phishing alerts written by ct_score (scores at or above the threshold)"),
    ("ct_watch_matches", counters.WATCH_MATCHES, "New watch_matches rows written by ct_watch (issuance x watch item)"),
    ("ct_enrichment_calls", counters.ENRICHMENT_CALLS, "Threat-intel look-ups made by ct_enrich (per domain and provider)"),
    ("ct_enrichment_failures", counters.ENRICHMENT_FAILURES, "Threat-intel look-ups of ct_enrich that failed"),
)


def _value(number: float | int | None) -> float:
    return NAN if number is None else float(number)


class MonitorCollector(Collector):
    """The series of the module docstring, for `snapshots` and `totals` (pure)."""

    def __init__(self, snapshots: Sequence[LogSnapshot], totals: Mapping[str, float]) -> None:
        self.snapshots = list(snapshots)
        self.totals = dict(totals)

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, doc: str, value_of: ValueOf) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=LABELS)
            for s in self.snapshots:
                family.add_metric((s.slug, s.kind, s.operator), _value(value_of(s)))
            return family

        def counter(name: str, doc: str, value_of: ValueOf) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=LABELS)  # exposed as <name>_total
            for s in self.snapshots:
                family.add_metric((s.slug, s.kind, s.operator), _value(value_of(s)))
            return family

        yield gauge("ct_log_tree_size", "Latest verified tree size of the log", lambda s: s.tree_size)
        yield gauge("ct_log_next_index", "Watermark: every entry below this index is ingested", lambda s: s.next_index)
        yield gauge("ct_log_backlog_entries", "Entries in the verified tree not ingested yet", lambda s: s.backlog)
        yield gauge("ct_log_freshness_lag_seconds",
                    "Age of the oldest entry not ingested yet; 0 when caught up, NaN when unknown",
                    lambda s: s.freshness_lag_seconds)
        yield gauge("ct_log_last_success_timestamp_seconds", "When a commit last advanced the watermark (Unix time)",
                    lambda s: s.last_success.timestamp() if s.last_success else None)
        yield counter("ct_log_entries", "Entries ingested into the lake", lambda s: s.entries_total)
        yield counter("ct_log_errors", "Entries ingested that could not be decoded (errors rows)", lambda s: s.errors_total)
        yield counter("ct_log_incidents", "Incidents recorded for the log (as the newest health check counted)",
                      lambda s: s.incidents_total)
        status = GaugeMetricFamily("ct_log_status", "1 for the log's current status, 0 for the others",
                                   labels=(*LABELS, "status"))
        for s in self.snapshots:
            for name in STATUSES:
                status.add_metric((s.slug, s.kind, s.operator, name), 1.0 if s.status == name else 0.0)
        yield status
        for name, key, doc in TOTALS:
            family = CounterMetricFamily(name, doc)
            family.add_metric((), float(self.totals.get(key, 0)))
            yield family


def exposition(snapshots: Sequence[LogSnapshot], totals: Mapping[str, float],
               accept: str | None = None) -> tuple[bytes, str]:
    """(body, content type) of the series, in the format `accept` (an Accept header) asks for."""
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(snapshots, totals))
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """The series (a sync route: FastAPI runs it in its thread pool, off the event loop)."""
    body, content_type = exposition(log_snapshots(), totals(), request.headers.get("accept"))
    return Response(content=body, media_type=content_type)
