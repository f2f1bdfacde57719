"""Score the DNS names of a range of certificates, write `scores` and `alerts`.

ct_score reads the certificates of entries [start, end) of a log (ctlib.downstream.ranges,
its watermark's range: ctlib.downstream.progress) and writes their scores rows, and the
alerting ones, with `write_range`: one file per UTC day of the entries' log timestamps,
`scores/log=<slug>/date=<day>/<start>-<end>.parquet` (and the same under `alerts/`), named by
the scored range and the day only. A retry or re-run of the same range (the pending range of
its watermark, or a manual run's cell) therefore replaces its rows instead of adding to
them, and an alerts file of the range that no longer alerts is removed.

A precertificate and its final certificate name the same hosts, and a batch holds many
certificates of one domain, so about half the (name, issuer) pairs of a range repeat: each
distinct pair is scored once (`DistinctScores`, shared by every range of a task run) and its
verdict joined back to every certificate row that names it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from ctlib.lake import layout
from ctlib.lake.files import Lake, write_range

if TYPE_CHECKING:  # the scorer's modules load only where scoring happens
    from ctlib.downstream.score import Score

log = logging.getLogger(__name__)

_CERT_COLUMNS = ["log_id", "log_slug", "index", "timestamp", "cert_sha256", "entry_type", "issuer_org",
                 "subject_cn", "dns_names"]


@dataclass(frozen=True, slots=True)
class ScoredRange:
    """What scoring entries [start, end) of log `slug` wrote: `names` score rows (one per name
    of each certificate), `alerts` of them alerting, `distinct` distinct (name, issuer) pairs
    among the rows, the files written (lake paths, one per day)."""

    slug: str
    start: int
    end: int
    scores_files: tuple[str, ...]
    alerts_files: tuple[str, ...]
    names: int
    alerts: int
    distinct: int = 0


class NameScorer(Protocol):
    """What scoring needs of `ctlib.downstream.score.Scorer`."""

    def score(self, name: str, issuer: str | None = None) -> Score: ...


class DistinctScores:
    """Scores each distinct (name, issuer) pair once and remembers the verdict.

    `verdicts(pairs)` returns one Score per pair, in order; `scorer.score` is called once per
    pair never seen before by this object (`scored` counts those calls), however often a pair
    repeats within or across calls. At most `limit` verdicts are kept: past that the memory
    starts over (a long task run stays bounded; a verdict is pure, so only work is repeated).
    Not safe to share between threads.
    """

    def __init__(self, scorer: NameScorer, limit: int = 1 << 18) -> None:
        self.scorer = scorer
        self.limit = limit
        self.scored = 0
        self._seen: dict[tuple[str, str | None], Score] = {}

    def verdicts(self, pairs: Iterable[tuple[str, str | None]]) -> list[Score]:
        seen, out = self._seen, []
        for pair in pairs:
            verdict = seen.get(pair)
            if verdict is None:
                if len(seen) >= self.limit:
                    seen.clear()
                verdict = seen[pair] = self.scorer.score(pair[0], issuer=pair[1])
                self.scored += 1
            out.append(verdict)
        return out


def names_of(dns_names: list[str] | None, subject_cn: str | None) -> list[str]:
    """The distinct names a certificate covers, lower-cased (CN only when there is no SAN)."""
    names = dns_names or ([subject_cn] if subject_cn else [])
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name.strip().lower().rstrip("."), None)
    return [n for n in seen if n]


def scores_table(certs: pa.Table, distinct: DistinctScores, scored_at: datetime) -> tuple[pa.Table, int]:
    """The `scores` rows of `certs` (columns of _CERT_COLUMNS), one per name of each certificate
    (`names_of`) in certificate order, and how many distinct (name, issuer) pairs they hold.
    Each pair is scored once by `distinct`; the certificate columns are repeated by index
    (Arrow `take`), not rebuilt row by row."""
    issuers = certs.column("issuer_org").to_pylist()
    rows: list[int] = []  # the certificate of each output row
    names: list[str] = []
    for row, (dns_names, cn) in enumerate(zip(certs.column("dns_names").to_pylist(),
                                              certs.column("subject_cn").to_pylist(), strict=True)):
        for name in names_of(dns_names, cn):
            rows.append(row)
            names.append(name)
    pairs = list(zip(names, [issuers[r] for r in rows], strict=True))
    verdicts = distinct.verdicts(pairs)
    base = certs.take(pa.array(rows, pa.int64()))
    rules = {id(v): [f"{rule}={weight:g}" for rule, weight in v.rules] for v in verdicts}
    computed: dict[str, Sequence[Any]] = {
        "name": names,
        "registered_domain": [v.registered_domain or n for v, n in zip(verdicts, names, strict=True)],
        "brand": [v.brand for v in verdicts],
        "score": [float(v.score) for v in verdicts],
        "alert": [bool(v.alert) for v in verdicts],
        "rules": [rules[id(v)] for v in verdicts],
        "scored_at": [scored_at] * len(names),
    }
    columns = [
        base.column(f.name).combine_chunks().cast(f.type) if f.name not in computed
        else pa.array(computed[f.name], type=f.type)
        for f in layout.SCORES_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=layout.SCORES_SCHEMA), len(set(pairs))


CERT_COLUMNS = tuple(_CERT_COLUMNS)
"""The certs columns scoring reads (`scores_table`'s input)."""


def score_range(lake: Lake, slug: str, start: int, end: int, certs: pa.Table, scorer: NameScorer, *,
                scored_at: datetime | None = None, distinct: DistinctScores | None = None) -> tuple[ScoredRange, pa.Table]:
    """Score `certs` (the CERT_COLUMNS of the certificates of entries [start, end) of `slug`)
    and write their scores and alerts files (module docstring); returns what was written and
    the alert rows (for Kafka). `distinct` (default: one for this range) scores each distinct
    (name, issuer) once: pass the same one for every range of a run."""
    scored_at = scored_at or datetime.now(UTC)
    distinct = distinct if distinct is not None else DistinctScores(scorer)
    table, pairs = scores_table(certs.select(_CERT_COLUMNS), distinct, scored_at)
    alerts = table.filter(pc.field("alert")) if table.num_rows else table
    scores_files = write_range(lake, layout.SCORES, slug, start, end, table) if table.num_rows else []
    alerts_files = write_range(lake, layout.ALERTS, slug, start, end, alerts) if alerts.num_rows else []
    # A retry or re-run that no longer alerts on a day must not leave an older alerts file behind.
    alerted = {path.rpartition("/")[0] for path in alerts_files}
    name = layout.range_file_name(start, end)
    for day in _days(certs):
        directory = layout.partition_dir(lake.root, layout.ALERTS, slug, day)
        if directory not in alerted:
            try:
                lake.filesystem.delete_file(f"{directory}/{name}")
            except (FileNotFoundError, OSError):
                pass
    return ScoredRange(slug, start, end, tuple(scores_files), tuple(alerts_files), table.num_rows,
                       alerts.num_rows, pairs), alerts


def _days(certs: pa.Table) -> list[date]:
    """The UTC days of the certificates' log timestamps."""
    if not certs.num_rows:
        return []
    return sorted(set(pc.cast(certs.column("timestamp"), pa.date32()).to_pylist()))


def alert_messages(alerts: pa.Table) -> Iterable[tuple[bytes, bytes]]:
    """Kafka `ct-alerts` messages: key `<log_id>:<index>:<name>` (stable across re-runs)."""
    for row in alerts.to_pylist():
        key = f"{row['log_id']}:{row['index']}:{row['name']}".encode()
        row = {**row, "timestamp": row["timestamp"].isoformat(), "scored_at": row["scored_at"].isoformat()}
        yield key, json.dumps(row, separators=(",", ":")).encode()
