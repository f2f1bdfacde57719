"""Explicit Arrow schemas of the decoded certificate table and the decode-error table.

Every writer and reader goes through these, so Parquet files of different runs and logs
always concatenate. Hashes are lowercase hex strings; timestamps are UTC.
"""

from __future__ import annotations

import os

import pyarrow as pa

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


def local_root(lake: str) -> str:
    """The local directory of a lake location (a path or a file:// URI); ValueError for an
    object store."""
    if lake.startswith("file://"):
        return lake[len("file://"):]
    if "://" in lake:
        raise ValueError(f"{lake!r} is not a local lake; mount or sync the bucket and pass its local path")
    return os.path.abspath(lake)


def table_glob(root: str, table: str) -> str:
    """Every Parquet file of `table` (any partition depth)."""
    return f"{root.rstrip('/')}/{table}/**/*.parquet"


def log_glob(root: str, table: str, slug: str) -> str:
    """Every Parquet file of one log's `table` (all days)."""
    return f"{root.rstrip('/')}/{table}/log={slug}/*/*.parquet"
