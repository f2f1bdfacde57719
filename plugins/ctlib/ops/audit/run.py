"""The audit of a set of logs: their watermarks read through a StateStore (`load_states`), the
lake scanned for each (`audit_lake`), ct_score's output checked below its watermark for the
logs that have one (ctlib.ops.audit.downstream), then, when asked, the topic read once for
all of them and each log's certificates matched against its keys (`audit_kafka`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ctlib.ingest.state import LogState, StateStore
from ctlib.lake import layout
from ctlib.lake.manifest import ManifestError
from ctlib.ops.audit.downstream import audit_downstream
from ctlib.ops.audit.intervals import runs_of_array
from ctlib.ops.audit.kafka_scan import Since, kafka_indexes
from ctlib.ops.audit.lake_scan import log_id_from_lake, scan_lake
from ctlib.ops.audit.report import KafkaAudit, LogAudit, audit_from_runs, kafka_audit_from_runs


def load_states(store: StateStore, slugs: Iterable[str]) -> dict[str, LogState]:
    """The stored state of each of `slugs` that has one (StateError for a malformed one)."""
    states = {}
    for slug in slugs:
        state = store.load(slug)
        if state is not None:
            states[slug] = state
    return states


def audit_lake(lake: str, slug: str, state: LogState, con=None) -> LogAudit:
    """The lake verdict for one log over [first_index, next_index) of its state; `certs` and
    `errors` count the rows inside that window."""
    runs, per_table = scan_lake(lake, slug, con=con, window=(state.first_index, state.next_index))
    return audit_from_runs(slug, state.first_index, state.next_index, runs,
                           certs=per_table.get(layout.CERTS, 0), errors=per_table.get(layout.ERRORS, 0))


def audit_kafka(lake: str, slug: str, state: LogState, present: tuple[Any, int], topic: str, since: Since,
                con=None) -> KafkaAudit:
    """Which certificates of the lake below next_index (backfilled history too; and in the
    window) have no message; `present` is what `kafka_indexes` found for the log (indexes,
    messages)."""
    lo = 0 if since.index is None else since.index
    where, params = "", []
    if since.time is not None:
        where, params = "ingested_at >= ?", [since.time]
    cert_runs, _ = scan_lake(lake, slug, tables=(layout.CERTS,), con=con, where=where, params=params)
    indexes, messages = present
    return kafka_audit_from_runs([(r.start, r.end) for r in cert_runs], runs_of_array(indexes), lo,
                                 state.next_index, topic=topic, since=since.describe(), messages=messages)


def run_audit(*, lake: str, states: Mapping[str, LogState], kafka: Mapping[str, Any] | None = None,
              topic: str = "ct-certs", since: Since | None = None, log_ids: Mapping[str, str] | None = None,
              kafka_timeout: float = 120.0, scored: Mapping[str, int] | None = None) -> list[LogAudit]:
    """Audit every log of `states` ({slug: its stored state}, see `load_states`), by slug;
    with `scored` ({slug: ct_score's watermark}), ct_score's output below it; with `kafka`
    (consumer config), the topic too. A log that cannot be scanned gets a `problem`; Kafka
    being unreachable raises (ConnectionError, TimeoutError)."""
    import duckdb

    since = since or Since()

    con = duckdb.connect()
    try:
        audits = _run_audit(con, lake, states, kafka, topic, since, log_ids, kafka_timeout)
        for audit in audits:
            if scored and audit.slug in scored and not audit.problem:
                _audit_downstream(con, lake, audit, scored[audit.slug])
        return audits
    finally:
        con.close()


def _audit_downstream(con, lake: str, audit: LogAudit, score_next_index: int) -> None:
    """Attach ct_score's verdict below `score_next_index` to `audit` (a problem when the lake
    cannot be read)."""
    import duckdb

    try:
        audit.downstream = audit_downstream(lake, audit.slug, audit.first_index, score_next_index, con)
    except (duckdb.Error, OSError, ValueError, ManifestError) as err:
        audit.problem = f"cannot check the downstream output: {err}"


def _run_audit(con, lake, states, kafka, topic, since, log_ids, kafka_timeout) -> list[LogAudit]:
    import duckdb

    audits = []
    for slug in sorted(states):
        try:
            audits.append(audit_lake(lake, slug, states[slug], con))
        except (duckdb.Error, OSError, ValueError) as err:
            audits.append(LogAudit(slug, states[slug].first_index, states[slug].next_index,
                                   problem=f"cannot scan the lake: {err}"))
    if kafka is None:
        return audits
    ids: dict[str, str] = {}
    for audit in audits:
        log_id = (log_ids or {}).get(audit.slug) or log_id_from_lake(lake, audit.slug, con)
        if log_id:
            ids[audit.slug] = log_id
        elif audit.next_index > audit.first_index and not audit.problem:
            audit.problem = "cannot tell its log_id (not in the log list, no certs in the lake) to match Kafka keys"
    since_ms = int(since.time.timestamp() * 1000) if since.time is not None else None
    present = kafka_indexes(kafka, topic, ids, since_ms=since_ms, timeout=kafka_timeout) if ids else {}
    for audit in audits:
        if audit.slug in present:
            audit.kafka = audit_kafka(lake, audit.slug, states[audit.slug], present[audit.slug], topic, since, con)
    return audits
