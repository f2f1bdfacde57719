"""Score the DNS names of newly written `certs` files, write `scores` and `alerts`.

Each certs file maps to a scores file and an alerts file of the same partition and name
(`certs/log=x/date=d/N.parquet` -> `scores/log=x/date=d/N.parquet`), so re-scoring a file
replaces its rows instead of adding to them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ctlib.schema import SCORES_SCHEMA
from ctlib.sinks.parquet import Lake, write_file

log = logging.getLogger(__name__)

_CERT_COLUMNS = ["log_id", "log_slug", "index", "timestamp", "cert_sha256", "entry_type", "issuer_org",
                 "subject_cn", "dns_names"]


@dataclass(frozen=True, slots=True)
class ScoredFile:
    certs_file: str
    scores_file: str | None
    alerts_file: str | None
    names: int
    alerts: int


def files_from_events(events_by_asset: Mapping[Any, Iterable[Any]], key: str = "files") -> list[str]:
    """Every file named by the triggering asset events (several events may be batched into one
    run), in order, without repeats."""
    files: list[str] = []
    for events in events_by_asset.values():
        for event in events:
            for path in (getattr(event, "extra", None) or {}).get(key, []):
                if path not in files:
                    files.append(path)
    return files


def _sibling(lake: Lake, certs_uri: str, table: str) -> tuple[str, str]:
    """(directory, name) of `table`'s file for a certs file."""
    path = lake.path_of(certs_uri)
    prefix = lake.path("certs") + "/"
    if not path.startswith(prefix):
        raise ValueError(f"{certs_uri} is not a certs file of the lake at {lake.root}")
    relative = path[len(prefix):]
    directory, _, name = relative.rpartition("/")
    return lake.path(table, directory), name


def names_of(dns_names: list[str] | None, subject_cn: str | None) -> list[str]:
    """The distinct names a certificate covers, lower-cased (CN only when there is no SAN)."""
    names = dns_names or ([subject_cn] if subject_cn else [])
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name.strip().lower().rstrip("."), None)
    return [n for n in seen if n]


def score_certs_file(lake: Lake, certs_uri: str, scorer, scored_at: datetime | None = None) -> tuple[ScoredFile, pa.Table]:
    """Score one certs file; returns what was written and the alert rows (for Kafka)."""
    scored_at = scored_at or datetime.now(UTC)
    certs = pq.read_table(lake.path_of(certs_uri), columns=_CERT_COLUMNS, filesystem=lake.filesystem)
    rows: list[dict[str, Any]] = []
    for cert in certs.to_pylist():
        for name in names_of(cert["dns_names"], cert["subject_cn"]):
            result = scorer.score(name, issuer=cert["issuer_org"])
            rows.append({
                "log_id": cert["log_id"], "log_slug": cert["log_slug"], "index": cert["index"],
                "timestamp": cert["timestamp"], "cert_sha256": cert["cert_sha256"],
                "entry_type": cert["entry_type"], "issuer_org": cert["issuer_org"],
                "name": name, "registered_domain": result.registered_domain or name,
                "brand": result.brand, "score": float(result.score), "alert": bool(result.alert),
                "rules": [f"{rule}={weight:g}" for rule, weight in result.rules],
                "scored_at": scored_at,
            })
    table = pa.Table.from_pylist(rows, schema=SCORES_SCHEMA)
    alerts = table.filter(pa.compute.field("alert")) if table.num_rows else table
    scores_file = alerts_file = None
    if table.num_rows:
        directory, name = _sibling(lake, certs_uri, "scores")
        scores_file = lake.uri(write_file(lake, directory, name, table))
    directory, name = _sibling(lake, certs_uri, "alerts")
    if alerts.num_rows:
        alerts_file = lake.uri(write_file(lake, directory, name, alerts))
    else:
        # A re-run that no longer alerts must not leave an older alerts file behind.
        try:
            lake.filesystem.delete_file(f"{directory}/{name}")
        except (FileNotFoundError, OSError):
            pass
    return ScoredFile(certs_uri, scores_file, alerts_file, table.num_rows, alerts.num_rows), alerts


def alert_messages(alerts: pa.Table) -> Iterable[tuple[bytes, bytes]]:
    """Kafka `ct-alerts` messages: key `<log_id>:<index>:<name>` (stable across re-runs)."""
    for row in alerts.to_pylist():
        key = f"{row['log_id']}:{row['index']}:{row['name']}".encode()
        row = {**row, "timestamp": row["timestamp"].isoformat(), "scored_at": row["scored_at"].isoformat()}
        yield key, json.dumps(row, separators=(",", ":")).encode()
