"""Score the DNS names of newly written `certs` files, write `scores` and `alerts`.

Each certs file maps to a scores file and an alerts file of the same partition and name
(`certs/log=x/date=d/N.parquet` -> `scores/log=x/date=d/N.parquet`, `counterpart` of
ctlib.lake.layout), so re-scoring a file replaces its rows instead of adding to them.

A precertificate and its final certificate name the same hosts, and a batch holds many
certificates of one domain, so about half the (name, issuer) pairs of a file repeat: each
distinct pair is scored once (`DistinctScores`, shared by every file of a task run) and its
verdict joined back to every certificate row that names it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file

if TYPE_CHECKING:  # the scorer's modules load only where scoring happens
    from ctlib.downstream.score import Score

log = logging.getLogger(__name__)

_CERT_COLUMNS = ["log_id", "log_slug", "index", "timestamp", "cert_sha256", "entry_type", "issuer_org",
                 "subject_cn", "dns_names"]


@dataclass(frozen=True, slots=True)
class ScoredFile:
    """What scoring one certs file wrote: `names` score rows (one per name of each certificate),
    `alerts` of them alerting, `distinct` distinct (name, issuer) pairs among the rows."""

    certs_file: str
    scores_file: str | None
    alerts_file: str | None
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
    directory, _, name = layout.counterpart(lake.root, lake.path_of(certs_uri), table).rpartition("/")
    return directory, name


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


def score_certs_file(
    lake: Lake, certs_uri: str, scorer: NameScorer, scored_at: datetime | None = None,
    distinct: DistinctScores | None = None,
) -> tuple[ScoredFile, pa.Table]:
    """Score one certs file; returns what was written and the alert rows (for Kafka).

    `distinct` (default: one for this file) scores each distinct (name, issuer) once; pass the
    same one for every file of a run so that names repeated across files are scored once too.
    """
    scored_at = scored_at or datetime.now(UTC)
    distinct = distinct if distinct is not None else DistinctScores(scorer)
    certs = pq.read_table(lake.path_of(certs_uri), columns=_CERT_COLUMNS, filesystem=lake.filesystem)
    table, pairs = scores_table(certs, distinct, scored_at)
    alerts = table.filter(pa.compute.field("alert")) if table.num_rows else table
    scores_file = alerts_file = None
    if table.num_rows:
        directory, name = _sibling(lake, certs_uri, layout.SCORES)
        scores_file = lake.uri(write_file(lake, directory, name, table))
    directory, name = _sibling(lake, certs_uri, layout.ALERTS)
    if alerts.num_rows:
        alerts_file = lake.uri(write_file(lake, directory, name, alerts))
    else:
        # A re-run that no longer alerts must not leave an older alerts file behind.
        try:
            lake.filesystem.delete_file(f"{directory}/{name}")
        except (FileNotFoundError, OSError):
            pass
    return ScoredFile(certs_uri, scores_file, alerts_file, table.num_rows, alerts.num_rows, pairs), alerts


def alert_messages(alerts: pa.Table) -> Iterable[tuple[bytes, bytes]]:
    """Kafka `ct-alerts` messages: key `<log_id>:<index>:<name>` (stable across re-runs)."""
    for row in alerts.to_pylist():
        key = f"{row['log_id']}:{row['index']}:{row['name']}".encode()
        row = {**row, "timestamp": row["timestamp"].isoformat(), "scored_at": row["scored_at"].isoformat()}
        yield key, json.dumps(row, separators=(",", ":")).encode()
