"""Prove the lake holds every committed entry exactly once, and Kafka at least once.

The contract. For each log with a stored state (its `LogState`, read through a
`ctlib.ingest.state.StateStore`), every index of [first_index, next_index) must be in the
lake exactly once, counting the `certs` and `errors` tables together (an undecodable entry
is present: it sits in `errors`). With `--kafka`, every index the lake holds in `certs`
(only certificates are published) must also have a message keyed `<log_id>:<index>` on the
topic; duplicates are allowed there (delivery is at-least-once), so only gaps count.
Problems are reported as index ranges:

    python -m ctlib.audit                        # every log with state, lake only
    python -m ctlib.audit --log argon2026h1 --kafka --since 6h
    python -m ctlib.audit --state-json variables.json --lake data/   # offline, no Airflow

Exit status: 0 clean, 1 a gap or duplicate, 2 the audit could not be done (no state, an
unreadable lake, Kafka unreachable). Rows outside [first_index, next_index) are shown but
are not errors: backfilled history lies below first_index, and a failed run's files lie at
or above next_index until a later run rewrites them under the same names and commits.

The audit only reads: watermarks through a StateStore (the CLI uses a read-only
`MappingStateStore`, from a JSON file of Variables or from Airflow's metadata database),
the lake's live Parquet files (local or S3), and the topic with a consumer that commits nothing.

Modules, lowest first (each imports only those above it):

    intervals   pure interval arithmetic on half-open runs (collapse, gaps, duplicates, ...)
    report      the verdicts (LogAudit, KafkaAudit) from runs, and their table and JSON
    lake_scan   DuckDB over a log's live files (ctlib.lake.manifest; local or S3): count runs of its indexes
    kafka_scan  the topic's keys (a throw-away consumer), its config, the --since window
    downstream  below ct_score's watermark: every certificate with a name scored, none twice,
                alerts a subset of scores (DownstreamAudit)
    run         states through a StateStore, then lake and Kafka verdicts for every log
    cli         `python -m ctlib.audit` (options, report, exit status)

What callers use is re-exported here.
"""

from ctlib.ops.audit.cli import main
from ctlib.ops.audit.downstream import audit_downstream
from ctlib.ops.audit.intervals import (
    CountRun,
    Run,
    clip,
    collapse,
    count_runs,
    duplicates,
    gaps,
    normalize,
    runs_of_array,
    size,
    subtract,
)
from ctlib.ops.audit.kafka_scan import Since, kafka_config, kafka_indexes, parse_since
from ctlib.ops.audit.lake_scan import TABLES, log_id_from_lake, scan_lake
from ctlib.ops.audit.report import (
    DownstreamAudit,
    KafkaAudit,
    LogAudit,
    audit_from_runs,
    describe_duplicate,
    describe_gap,
    format_table,
    kafka_audit_from_runs,
)
from ctlib.ops.audit.run import audit_kafka, audit_lake, load_states, run_audit

__all__ = [
    "TABLES", "CountRun", "DownstreamAudit", "KafkaAudit", "LogAudit", "Run", "Since",
    "audit_downstream", "audit_from_runs", "audit_kafka", "audit_lake", "clip", "collapse", "count_runs",
    "describe_duplicate", "describe_gap", "duplicates", "format_table", "gaps",
    "kafka_audit_from_runs", "kafka_config", "kafka_indexes", "load_states", "log_id_from_lake",
    "main", "normalize", "parse_since", "run_audit", "runs_of_array", "scan_lake", "size", "subtract",
]
