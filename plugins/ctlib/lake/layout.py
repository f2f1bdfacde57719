"""The lake's layout: its tables, their schemas, and where every file of them lives.

    <lake>/
      certs/log=<slug>/date=<day>/<start:012d>-<end:012d>.parquet
                                 /<first:012d>-<end:012d>.c<generation:06d>.parquet   once compacted
                                 /_manifest.json                                   once compacted
      errors/log=<slug>/date=<day>/... (as certs)
      incidents/log=<slug>/date=<day>/<detected ms:013d>-<kind>.parquet
      scores/log=<slug>/date=<day>/<start:012d>-<end:012d>.parquet
      alerts/log=<slug>/date=<day>/<start:012d>-<end:012d>.parquet
      enrichment/date=<day>/<run>.parquet
      health/date=<day>/<checked_at ms:013d>.parquet
      watch_matches/<first two hex digits of tbs_sha256>.parquet
      notifications/date=<day>/<channel>-<run>-<try>.parquet
      .backfills/log=<slug>/w<ms>-<ms>.json         a backfill by time's finished windows

`<day>` is a UTC date, YYYY-MM-DD: of the entry's log timestamp in certs and errors
(UNKNOWN_DATE when an unparseable leaf has none) and in scores and alerts (the scored
certificate's), of the detection in incidents, of `enriched_at` in enrichment, of the check
in health, of the first delivery in notifications.

Who writes what:

* certs, errors (undecodable entries), incidents (a log misbehaved): ingest, `ct_ingest__<slug>`
  (ctlib.ingest.run through ctlib.lake.files).
* certs, errors again: compaction, `ct_compact` (ctlib.lake.compaction), which merges each
  closed day partition into one merged file and makes it live with the partition's
  `_manifest.json` (ctlib.lake.manifest); it alone writes those.
* scores (one row per DNS name of each certificate), alerts (the scores rows that alert):
  `ct_score` (ctlib.downstream.scoring), one file each per scored range of entries and day
  (the range of a run of its watermark, or a manual run's cell), whatever certs files held
  the entries.
* enrichment: `ct_enrich` (ctlib.downstream.enrich.cache), one file per run and day.
* health: `ct_health` (ctlib.ops.health), one file per check, one row per log.
* watch_matches (one row per issuance and watch item): `ct_watch` (ctlib.downstream.watching),
  in one of 256 files by the issuance's tbs_sha256 (`watch_bucket`), so finding an
  issuance's row reads one small file however long the table grows; a later certificate
  of the same issuance (the final certificate of a precertificate) updates that row in
  place of adding one.
* notifications (the delivery record: one row per notice sent and channel): `ct_watch` and
  `ct_score` (ctlib.downstream.notify), one file per run, channel and attempt.

Readers read the live files (ctlib.lake.manifest.live_files): in a compacted partition, the
manifest's merged file and the range files it did not absorb. A glob of `*.parquet` reads a
compacted day twice until the absorbed files are deleted (docs/lake.md).

Invariant: the name of a certs, errors, scores or alerts file depends only on the log, the
range [start, end) of entry indexes and the day, never on when, where or by which attempt
it was written. A retried task therefore replaces its own files instead of adding copies
(exactly-once in the lake): a scores or alerts file is named by the range ct_score scored,
which its watermark redoes as it was after a failed attempt, and a merged file by the span
it covers and its generation. Names in the other tables are fixed by what they record: the detection
time and kind (incidents), the check time (health), the run (enrichment).

Every writer and reader goes through the schemas here (`SCHEMAS`), so Parquet files of
different runs and logs always concatenate. Hashes are lowercase hex strings; timestamps
are UTC.

Paths are strings joined with '/' under a root: the lake's directory or bucket prefix, or ''
for a filesystem rooted at the lake (the paths are then relative). Nothing here lists, reads
or writes a filesystem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from types import MappingProxyType

import pyarrow as pa

# --------------------------------------------------------------------------- tables

CERTS = "certs"
ERRORS = "errors"
INCIDENTS = "incidents"
SCORES = "scores"
ALERTS = "alerts"
ENRICHMENT = "enrichment"
HEALTH = "health"
WATCH_MATCHES = "watch_matches"
NOTIFICATIONS = "notifications"

TABLES = (CERTS, ERRORS, INCIDENTS, SCORES, ALERTS, ENRICHMENT, HEALTH, WATCH_MATCHES, NOTIFICATIONS)
"""Every table (the order of ctlib.lake.query's views)."""
LOG_TABLES = (CERTS, ERRORS, INCIDENTS, SCORES, ALERTS)
"""Partitioned by log, then day (`partition_dir`)."""
DAY_TABLES = (ENRICHMENT, HEALTH, NOTIFICATIONS)
"""Partitioned by day only (`day_dir`). (watch_matches: by issuance, `watch_bucket`.)"""

BACKFILLS = ".backfills"
"""Where a backfill by time records each window it finished (never read as a table)."""

UNKNOWN_DATE = date(1970, 1, 1)
"""The day of rows without a usable entry timestamp (an unparseable leaf): a stable home."""

# --------------------------------------------------------------------------- schemas

_TS_MS = pa.timestamp("ms", tz="UTC")
_TS_S = pa.timestamp("s", tz="UTC")

CERTS_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),  # base64, as in the log list
        pa.field("log_slug", pa.string(), nullable=False),
        pa.field("index", pa.int64(), nullable=False),
        pa.field("leaf_hash", pa.string(), nullable=False),  # hex SHA256(0x00 || leaf_input)
        pa.field("timestamp", _TS_MS, nullable=False),  # the entry's log timestamp
        pa.field("entry_type", pa.string(), nullable=False),  # "x509" | "precert"
        pa.field("cert_sha256", pa.string(), nullable=False),  # leaf cert / pre_certificate DER
        pa.field("tbs_sha256", pa.string(), nullable=False),  # equal for precert and final cert
        pa.field("serial", pa.string(), nullable=False),
        pa.field("subject", pa.string(), nullable=False),
        pa.field("subject_cn", pa.string()),
        pa.field("issuer", pa.string(), nullable=False),
        pa.field("issuer_cn", pa.string()),
        pa.field("issuer_org", pa.string()),
        pa.field("not_before", _TS_S, nullable=False),
        pa.field("not_after", _TS_S, nullable=False),
        pa.field("dns_names", pa.list_(pa.string()), nullable=False),
        pa.field("ip_addresses", pa.list_(pa.string()), nullable=False),
        pa.field("is_ca", pa.bool_()),  # null when there is no basicConstraints
        pa.field("key_type", pa.string(), nullable=False),
        pa.field("key_bits", pa.int32()),
        pa.field("signature_algorithm", pa.string(), nullable=False),
        pa.field("chain_sha256", pa.list_(pa.string()), nullable=False),
        pa.field("ingested_at", _TS_MS, nullable=False),
        pa.field("cert_der", pa.binary()),  # only with store_der=True
    ]
)

ERRORS_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("log_slug", pa.string(), nullable=False),
        pa.field("index", pa.int64(), nullable=False),
        pa.field("timestamp", _TS_MS),  # null when the leaf itself cannot be parsed
        pa.field("reason", pa.string(), nullable=False),  # names slug, index and the cause
        pa.field("leaf_input_b64", pa.string(), nullable=False),
        pa.field("extra_data_b64", pa.string(), nullable=False),
        pa.field("ingested_at", _TS_MS, nullable=False),
    ]
)

# One row per detected misbehaviour of a log (bad signature, fork, rollback, root mismatch).
INCIDENTS_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("log_slug", pa.string(), nullable=False),
        pa.field("timestamp", _TS_MS, nullable=False),  # when it was detected
        pa.field("kind", pa.string(), nullable=False),
        pa.field("details", pa.string(), nullable=False),
        pa.field("tree_size", pa.int64()),  # the size the log served, when known
        pa.field("verified_size", pa.int64()),  # the size last verified, when known
        pa.field("signed", pa.string()),  # the signed tree head or checkpoint as served
    ]
)

# One row per scored DNS name of a certificate; `alerts/` holds the rows at or above the threshold.
SCORES_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("log_slug", pa.string(), nullable=False),
        pa.field("index", pa.int64(), nullable=False),
        pa.field("timestamp", _TS_MS, nullable=False),  # the entry's log timestamp
        pa.field("cert_sha256", pa.string(), nullable=False),
        pa.field("entry_type", pa.string(), nullable=False),
        pa.field("issuer_org", pa.string()),
        pa.field("name", pa.string(), nullable=False),
        pa.field("registered_domain", pa.string(), nullable=False),
        pa.field("brand", pa.string()),
        pa.field("score", pa.float64(), nullable=False),
        pa.field("alert", pa.bool_(), nullable=False),
        pa.field("rules", pa.list_(pa.string()), nullable=False),  # "rule=weight"
        pa.field("scored_at", _TS_MS, nullable=False),
    ]
)

# One row per enriched registered domain (ctlib.downstream.enrich; no credentials in any column).
ENRICHMENT_SCHEMA = pa.schema(
    [
        pa.field("domain", pa.string(), nullable=False),  # registered domain, normalized
        pa.field("enriched_at", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("score", pa.float64(), nullable=False),  # the phishing score
        pa.field("risk", pa.float64(), nullable=False),  # combined_risk, 0..100
        pa.field("risk_reasons", pa.list_(pa.string()), nullable=False),
        pa.field("pt_status", pa.string(), nullable=False),  # ok | not_found | skipped | error kind
        pa.field("pt_registered", pa.date32()),
        pa.field("pt_registrar", pa.string()),
        pa.field("pt_pdns_records", pa.int64()),
        pa.field("ts_status", pa.string(), nullable=False),
        pa.field("ts_max_confidence", pa.int32()),  # -1: unknown or no indicator
        pa.field("ts_max_severity", pa.string()),  # null without indicators
        pa.field("ts_indicators", pa.int64()),
        pa.field("ts_threat_types", pa.list_(pa.string()), nullable=False),
        pa.field("cert_sha256", pa.string()),  # the certificate that surfaced the domain
        pa.field("log_slug", pa.string()),
        pa.field("names", pa.list_(pa.string()), nullable=False),  # that certificate's DNS names
    ]
)

# One row per log and health check (ctlib.ops.health).
HEALTH_SCHEMA = pa.schema(
    [
        pa.field("checked_at", _TS_MS, nullable=False),
        pa.field("log_slug", pa.string(), nullable=False),
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # one of ctlib.ops.health.STATUSES
        pa.field("failing", pa.bool_(), nullable=False),  # this row fails the check
        pa.field("tree_size", pa.int64()),  # of the log's current verified tree head; null: unreachable
        pa.field("tree_head_at", _TS_MS),  # that tree head's timestamp
        pa.field("next_index", pa.int64()),  # the watermark; null: not started
        pa.field("lag_entries", pa.int64()),  # tree_size - next_index
        pa.field("lag_seconds", pa.float64()),  # age of the first entry not ingested; 0 when none
        pa.field("oldest_pending_at", _TS_MS),  # timestamp of that entry
        pa.field("last_progress_at", _TS_MS),  # the watermark's updated_at
        pa.field("since_progress_seconds", pa.float64()),
        pa.field("errors", pa.int64(), nullable=False),  # rows in errors/ for the log
        pa.field("incidents", pa.int64(), nullable=False),  # rows in incidents/ for the log
        pa.field("detail", pa.string(), nullable=False),  # why this status; what failed
    ]
)

# One row per issuance (a precertificate and its final certificate: one tbs_sha256) and watch
# item that covers one of its names (ctlib.downstream.watching).
WATCH_MATCHES_SCHEMA = pa.schema(
    [
        pa.field("watch_item", pa.string(), nullable=False),  # the watchlist line as written
        pa.field("tbs_sha256", pa.string(), nullable=False),  # the issuance
        pa.field("names", pa.list_(pa.string()), nullable=False),  # its names (or IPs) the item matched
        pa.field("cert_sha256", pa.string(), nullable=False),  # the final certificate's once seen, else the precert's
        pa.field("precert_sha256", pa.string()),  # null until a precertificate of the issuance is seen
        pa.field("entry_type", pa.string(), nullable=False),  # "x509" once the final certificate is seen
        pa.field("log_slug", pa.string(), nullable=False),  # where it was first seen (earliest log timestamp)
        pa.field("index", pa.int64(), nullable=False),
        pa.field("timestamp", _TS_MS, nullable=False),  # that entry's log timestamp
        pa.field("issuer", pa.string(), nullable=False),
        pa.field("not_before", _TS_S, nullable=False),
        pa.field("not_after", _TS_S, nullable=False),
        pa.field("crtsh", pa.string(), nullable=False),  # crt.sh link by cert_sha256
        pa.field("run_id", pa.string(), nullable=False),  # the ct_watch run that found the issuance
        pa.field("matched_at", _TS_MS, nullable=False),
        pa.field("updated_at", _TS_MS, nullable=False),  # last change (a later certificate of it)
    ]
)

# The delivery record: one row per notice and channel, written right after it was sent
# (ctlib.downstream.notify); a retried task skips what it finds here.
NOTIFICATIONS_SCHEMA = pa.schema(
    [
        pa.field("sent_at", _TS_MS, nullable=False),
        pa.field("channel", pa.string(), nullable=False),  # webhook | slack | email
        pa.field("kind", pa.string(), nullable=False),  # watch | phishing
        pa.field("key", pa.string(), nullable=False),  # the issuance: tbs_sha256
        pa.field("title", pa.string(), nullable=False),  # what the notice said, in one line
        pa.field("dag_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

SCHEMAS: Mapping[str, pa.Schema] = MappingProxyType({
    CERTS: CERTS_SCHEMA,
    ERRORS: ERRORS_SCHEMA,
    INCIDENTS: INCIDENTS_SCHEMA,
    SCORES: SCORES_SCHEMA,
    ALERTS: SCORES_SCHEMA,
    ENRICHMENT: ENRICHMENT_SCHEMA,
    HEALTH: HEALTH_SCHEMA,
    WATCH_MATCHES: WATCH_MATCHES_SCHEMA,
    NOTIFICATIONS: NOTIFICATIONS_SCHEMA,
})
"""Every table's schema, in TABLES order."""

# --------------------------------------------------------------------------- directories


def _join(root: str, *parts: str) -> str:
    return "/".join((root, *parts)) if root else "/".join(parts)


def table_dir(root: str, table: str) -> str:
    """`<root>/<table>`."""
    return _join(root, table)


def log_dir(root: str, table: str, slug: str) -> str:
    """`<root>/<table>/log=<slug>`: every day of one log in a LOG_TABLES table."""
    return _join(root, table, f"log={slug}")


def partition_dir(root: str, table: str, slug: str, day: date) -> str:
    """`<root>/<table>/log=<slug>/date=<day>`: one log's day in a LOG_TABLES table."""
    return _join(log_dir(root, table, slug), day_dir_name(day))


def day_dir(root: str, table: str, day: date) -> str:
    """`<root>/<table>/date=<day>`: one day of a DAY_TABLES table."""
    return _join(table_dir(root, table), day_dir_name(day))


def day_dir_name(day: date) -> str:
    """`date=<YYYY-MM-DD>`, the last directory of a partition."""
    return f"date={day.isoformat()}"


_DAY_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def parse_day_dir(name: str) -> date | None:
    """The day of a `date=<YYYY-MM-DD>` directory name, None for any other name."""
    match = _DAY_DIR.match(name)
    if not match:
        return None
    try:
        return date.fromisoformat(match[1])
    except ValueError:
        return None


# --------------------------------------------------------------------------- file names


def range_file_name(start: int, end: int) -> str:
    """`<start:012d>-<end:012d>.parquet`: the rows of entries [start, end) of one log and day."""
    return f"{start:012d}-{end:012d}.parquet"


def backfill_marker(root: str, slug: str, window_start_ms: int, window_end_ms: int) -> str:
    """`<root>/.backfills/log=<slug>/w<ms>-<ms>.json`: written once the window's entries are
    verified and stored; a later run of the same window finds it and does nothing."""
    return _join(root, BACKFILLS, f"log={slug}", f"w{window_start_ms:013d}-{window_end_ms:013d}.json")


def window_tag(window_start_ms: int, window_end_ms: int) -> str:
    """`.w<start ms:013d>-<end ms:013d>`: marks the files of one backfill-by-time window."""
    return f".w{window_start_ms:013d}-{window_end_ms:013d}"


def window_file_name(start: int, end: int, window_start_ms: int, window_end_ms: int) -> str:
    """`<start:012d>-<end:012d>.w<ms>-<ms>.parquet`: the rows of entries [start, end) that
    a backfill of one time window stored (a range file too: parse_range reads it)."""
    return f"{start:012d}-{end:012d}{window_tag(window_start_ms, window_end_ms)}.parquet"


MANIFEST = "_manifest.json"
"""A compacted day partition's manifest (ctlib.lake.manifest): which of its files are live.
Named with a leading underscore, which Spark, Hive and pyarrow's datasets skip, and not
*.parquet, which no reader's glob takes."""


def merged_file_name(first: int, end: int, generation: int) -> str:
    """`<first:012d>-<end:012d>.c<generation:06d>.parquet`: compaction's merge of a day
    partition, the entries it holds being within [first, end); live only while the
    partition's manifest names it (ctlib.lake.manifest)."""
    return f"{first:012d}-{end:012d}.c{generation:06d}.parquet"


_MERGED_NAME = re.compile(r"^(\d{12})-(\d{12})\.c(\d{6})\.parquet$")


def parse_merged(name: str) -> tuple[int, int, int] | None:
    """(first, end, generation) of a merged file name, None for any other name."""
    match = _MERGED_NAME.match(name)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


_RANGE_NAME = re.compile(r"^(\d{12})-(\d{12})(?:\.w\d{13}-\d{13})?\.parquet$")


def parse_range(name: str) -> tuple[int, int] | None:
    """(start, end) of a range file name (of a backfill window too), None for any other name."""
    match = _RANGE_NAME.match(name)
    return (int(match[1]), int(match[2])) if match else None


def _ms(moment: datetime) -> str:
    return f"{int(moment.timestamp() * 1000):013d}"


def incident_file_name(detected: datetime, kind: str) -> str:
    """`<detected ms:013d>-<kind>.parquet`: one incident."""
    return f"{_ms(detected)}-{kind}.parquet"


def health_file_name(checked_at: datetime) -> str:
    """`<checked_at ms:013d>.parquet`: the rows of one health check."""
    return f"{_ms(checked_at)}.parquet"


def enrichment_file_name(run: str) -> str:
    """`<run>.parquet` (`run` as is when it already ends in .parquet): one run's rows of a day."""
    return run if run.endswith(".parquet") else f"{run}.parquet"


def watch_bucket(root: str, tbs_sha256: str) -> str:
    """`<root>/watch_matches/<tbs_sha256[:2]>.parquet`: the file holding an issuance's rows."""
    return _join(root, WATCH_MATCHES, f"{tbs_sha256[:2].lower()}.parquet")


def notification_file_name(channel: str, run_id: str, try_number: int) -> str:
    """`<channel>-<run>-<try>.parquet` (run id made file-safe): what one attempt of a run sent
    on one channel; the attempt rewrites it after every notice it sends."""
    safe_run = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return f"{channel}-{safe_run}-{try_number}.parquet"
