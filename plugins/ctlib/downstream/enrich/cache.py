"""The `enrichment` lake table and the caches that keep providers from being asked twice.

Rows live under `<lake>/enrichment/date=<YYYY-MM-DD of enriched_at>/<name>.parquet`, one
row per enriched registered domain (ENRICHMENT_SCHEMA; see ctlib.lake.layout).
`recently_enriched` reads them back as a TTL cache across runs; `RunCache` is an
in-process LRU for one run (several certificates often name the same domain).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Generic, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from ctlib.downstream.enrich import normalize_domain
from ctlib.downstream.enrich.passivetotal import PassiveTotalResult
from ctlib.downstream.enrich.threatstream import ThreatStreamResult
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file
from ctlib.lake.layout import ENRICHMENT_SCHEMA


@dataclass(frozen=True, slots=True)
class EnrichmentRecord:
    """One row of the enrichment table."""

    domain: str
    enriched_at: datetime  # aware UTC
    score: float
    risk: float
    risk_reasons: tuple[str, ...]
    pt_status: str
    pt_registered: date | None
    pt_registrar: str | None
    pt_pdns_records: int | None
    ts_status: str
    ts_max_confidence: int | None
    ts_max_severity: str | None
    ts_indicators: int | None
    ts_threat_types: tuple[str, ...]
    cert_sha256: str | None
    log_slug: str | None
    names: tuple[str, ...]

    @classmethod
    def build(
        cls,
        domain: str,
        *,
        enriched_at: datetime,
        score: float,
        risk: float,
        risk_reasons: Sequence[str],
        pt: PassiveTotalResult | None,
        ts: ThreatStreamResult | None,
        cert_sha256: str | None = None,
        log_slug: str | None = None,
        names: Sequence[str] = (),
    ) -> EnrichmentRecord:
        """A row from the provider results (None: provider skipped)."""
        if enriched_at.tzinfo is None:
            raise ValueError("enriched_at must be timezone-aware")
        return cls(
            domain=normalize_domain(domain),
            enriched_at=enriched_at.astimezone(UTC),
            score=float(score),
            risk=float(risk),
            risk_reasons=tuple(risk_reasons),
            pt_status=pt.status if pt else "skipped",
            pt_registered=pt.registered if pt else None,
            pt_registrar=pt.registrar if pt else None,
            pt_pdns_records=pt.pdns_records if pt and pt.status == "ok" else None,
            ts_status=ts.status if ts else "skipped",
            ts_max_confidence=ts.max_confidence if ts and ts.status in ("ok", "not_found") else None,
            ts_max_severity=ts.max_severity if ts else None,
            ts_indicators=len(ts.indicators) if ts and ts.status in ("ok", "not_found") else None,
            ts_threat_types=ts.threat_types if ts else (),
            cert_sha256=cert_sha256,
            log_slug=log_slug,
            names=tuple(names),
        )

    def row(self) -> dict[str, object]:
        """The row as ENRICHMENT_SCHEMA columns (lists for list columns)."""
        row: dict[str, object] = {name: getattr(self, name) for name in ENRICHMENT_SCHEMA.names}
        for name in ("risk_reasons", "ts_threat_types", "names"):
            row[name] = list(row[name])  # type: ignore[call-overload]
        return row


def records_table(records: Iterable[EnrichmentRecord]) -> pa.Table:
    """Records as an Arrow table of ENRICHMENT_SCHEMA."""
    return pa.Table.from_pylist([record.row() for record in records], schema=ENRICHMENT_SCHEMA)


def _lake(location: str | os.PathLike[str] | Lake | pafs.FileSystem) -> Lake:
    if isinstance(location, Lake):
        return location
    if isinstance(location, pafs.FileSystem):  # e.g. a SubTreeFileSystem rooted at the lake
        return Lake(location, "")
    return Lake.open(os.fspath(location))


def write_enrichment(
    lake: str | os.PathLike[str] | Lake | pafs.FileSystem, records: Sequence[EnrichmentRecord], name: str
) -> list[str]:
    """Write `records` as `enrichment/date=<day>/<name>.parquet`, one file per UTC day of
    `enriched_at`; returns the paths. The same `name` (e.g. the run id) replaces the same
    files, so a retried task does not duplicate rows. Nothing is written for no records."""
    lake = _lake(lake)
    by_day: dict[date, list[EnrichmentRecord]] = {}
    for record in records:
        by_day.setdefault(record.enriched_at.astimezone(UTC).date(), []).append(record)
    file_name = layout.enrichment_file_name(name)
    return [
        write_file(lake, layout.day_dir(lake.root, layout.ENRICHMENT, day), file_name, records_table(rows))
        for day, rows in sorted(by_day.items())
    ]


def recently_enriched(
    lake_root_or_filesystem: str | os.PathLike[str] | Lake | pafs.FileSystem,
    domains: Iterable[str],
    ttl_seconds: float,
    *,
    now: datetime | None = None,
) -> set[str]:
    """The `domains` (as given) with an enrichment row younger than `ttl_seconds`.

    Reads `enrichment/**/*.parquet` of the lake (a path, URI, Lake, or a filesystem rooted
    at the lake) with pyarrow.dataset, pushing the domain and time filters down. Names
    compare normalized (case, trailing dot). A lake without the table yields an empty set.
    """
    wanted: dict[str, list[str]] = {}
    for domain in domains:
        try:
            wanted.setdefault(normalize_domain(domain), []).append(domain)
        except ValueError:
            continue
    if not wanted or ttl_seconds <= 0:
        return set()
    lake = _lake(lake_root_or_filesystem)
    try:
        # The declared schema, not inference: files of older schema versions still read.
        dataset = ds.dataset(
            layout.table_dir(lake.root, layout.ENRICHMENT), filesystem=lake.filesystem, format="parquet",
            schema=ENRICHMENT_SCHEMA,
        )
    except FileNotFoundError:
        return set()
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=ttl_seconds)
    cutoff = cutoff.replace(microsecond=cutoff.microsecond // 1000 * 1000)  # the column is ms
    since = pa.scalar(cutoff, ENRICHMENT_SCHEMA.field("enriched_at").type)
    fresh = dataset.to_table(
        columns=["domain"],
        filter=ds.field("domain").isin(list(wanted)) & (ds.field("enriched_at") >= since),
    )
    return {original for name in set(fresh["domain"].to_pylist()) for original in wanted[name]}


V = TypeVar("V")


class RunCache(Generic[V]):
    """A thread-safe LRU of per-domain results for one run (keys normalized like domains).

    `get` returns None on a miss; `hits` / `misses` count look-ups.
    """

    def __init__(self, maxsize: int = 10_000) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._maxsize = maxsize
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, domain: str) -> V | None:
        key = normalize_domain(domain)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
            return None

    def put(self, domain: str, value: V) -> None:
        key = normalize_domain(domain)
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def __contains__(self, domain: object) -> bool:
        if not isinstance(domain, str) or not domain.strip().rstrip("."):
            return False
        with self._lock:
            return normalize_domain(domain) in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
