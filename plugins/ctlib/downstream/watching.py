"""ct_watch: match certificates against the watchlist and keep `watch_matches` exactly once.

ct_watch reads the certificates of entries [start, end) of each log (its watermark's range,
ctlib.downstream.progress; read by ctlib.downstream.ranges, whatever compaction did to the
files) and matches them (`range_matches`); `watch_files` does the same for certs files named
by hand (the watch benchmark). `record_matches` then keeps the table.

One row per issuance and watch item (WATCH_MATCHES_SCHEMA). An issuance is a `tbs_sha256`:
a precertificate and its final certificate are one, whichever log and run shows each. So:

- the first certificate of an issuance that a watch item covers makes the row (`run_id` is
  the ct_watch run that found it: that run notifies it);
- a later certificate of it (the final certificate, the same precertificate in another log)
  updates that row (the final certificate's sha256, more matched names) and is not new;
- an issuance's rows live in one of 256 files chosen by its tbs_sha256 (`layout.watch_bucket`),
  so finding them reads one small file however long the table grows, and every write
  rewrites a whole file under a temporary name.

Exactly once: before writing, the files of the batch's issuances are read back; a retried
task, a re-run of the same range, or a manual run over the same entries finds its rows there
and writes nothing new. Rows found by an earlier attempt of the *same* run still count as
this run's (`WatchResult.files` names their files), so a retry after a crash between writing
and notifying still notifies them. ct_watch runs one at a time (max_active_runs=1): nothing
else writes the table.

Matching reads only the `dns_names` and `ip_addresses` columns and looks each distinct name
up in the watchlist's index (ctlib.downstream.watchlist); the other columns are read only
for the rows that match, which are few.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ctlib.downstream.ranges import RangeRows
from ctlib.downstream.watchlist import CRTSH, Watchlist, normalize_name
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file
from ctlib.lake.reading import dataset

log = logging.getLogger(__name__)

_ROW_COLUMNS = ["tbs_sha256", "cert_sha256", "entry_type", "log_slug", "index", "timestamp", "issuer",
                "not_before", "not_after"]

Key = tuple[str, str]
"""(tbs_sha256, watch_item): one row of watch_matches."""


@dataclass(frozen=True, slots=True)
class WatchResult:
    """What one ct_watch run did: `files` the watch_matches files holding this run's new rows
    (to notify), `new` those rows, `updated` older rows a later certificate changed,
    `certificates` the certificate rows that matched, `entries` the certs rows read."""

    files: list[str]
    new: int
    updated: int
    certificates: int
    entries: int

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "new": self.new, "updated": self.updated,
                "certificates": self.certificates, "entries": self.entries}


def table_matches(names: pa.Table, watchlist: Watchlist, facts: Callable[[list[int]], list[dict[str, Any]]],
                  source: str) -> list[dict[str, Any]]:
    """The rows of `names` (its `dns_names` and `ip_addresses` columns) that the watchlist
    matches, one per row and watch item: `facts(rows)` (the _ROW_COLUMNS of those row
    positions, in order) plus watch_item, names and source."""
    hits = _name_hits(names.column("dns_names").combine_chunks(), watchlist)
    if watchlist.index.ips:
        ips = names.column("ip_addresses").combine_chunks()
        for row in pc.indices_nonzero(pc.list_value_length(ips)).to_pylist():
            for item, matched in watchlist.match((), ips[row].as_py()):
                hits.setdefault((row, item.text), []).extend(matched)
    if not hits:
        return []
    rows = sorted({row for row, _ in hits})
    by_row = dict(zip(rows, facts(rows), strict=True))
    return [{**by_row[row], "watch_item": item, "names": sorted(set(names)), "source": source}
            for (row, item), names in sorted(hits.items())]


def file_matches(lake: Lake, certs_uri: str, watchlist: Watchlist) -> tuple[list[dict[str, Any]], int]:
    """The certificate rows of one certs file that the watchlist matches (`table_matches`),
    and how many rows the file holds."""
    path = lake.path_of(certs_uri)
    try:
        table = pq.read_table(path, columns=["dns_names", "ip_addresses"], filesystem=lake.filesystem)
    except FileNotFoundError:
        raise FileNotFoundError(f"{certs_uri}: no such certs file (compacted since? run ct_watch with the log "
                                "and the range instead)") from None

    def facts(rows: list[int]) -> list[dict[str, Any]]:
        return pq.read_table(path, columns=_ROW_COLUMNS, filesystem=lake.filesystem).take(pa.array(rows)).to_pylist()

    return table_matches(table, watchlist, facts, certs_uri), table.num_rows


RANGE_COLUMNS = ("dns_names", "ip_addresses")
"""The certs columns `range_matches` needs read for a range (besides index)."""


def range_matches(lake: Lake, slug: str, certs: RangeRows, watchlist: Watchlist) -> list[dict[str, Any]]:
    """The certificates of a range (`certs`: ctlib.downstream.ranges.read_entries of
    RANGE_COLUMNS) that the watchlist matches (`table_matches`); the other columns of the
    matching rows are read from the same files, by index."""
    rows = certs.rows

    def facts(positions: list[int]) -> list[dict[str, Any]]:
        wanted = rows.column("index").take(pa.array(positions))
        found = dataset(lake, layout.CERTS, list(certs.files)).to_table(
            columns=_ROW_COLUMNS, filter=ds.field("index").isin(wanted) & (ds.field("log_slug") == slug))
        by_index = {row["index"]: row for row in found.to_pylist()}
        return [by_index[i] for i in wanted.to_pylist()]

    return table_matches(rows, watchlist, facts, slug)


def _name_hits(dns_names: pa.ListArray, watchlist: Watchlist) -> dict[tuple[int, str], list[str]]:
    """{(row, watch item text): matched names} over every DNS name of the column, each distinct
    name looked up once."""
    flat = dns_names.flatten().to_pylist()
    parents = pc.list_parent_indices(dns_names).to_pylist()
    items, positions = watchlist.items, watchlist.index.positions
    verdicts: dict[str, list[int]] = {}
    hits: dict[tuple[int, str], list[str]] = {}
    for name, row in zip(flat, parents, strict=True):
        found = verdicts.get(name)
        if found is None:
            found = verdicts[name] = positions(normalize_name(name))
        for position in found:
            hits.setdefault((row, items[position].text), []).append(name)
    return hits


def merge_issuance(kept: Mapping[str, Any] | None, candidates: Iterable[Mapping[str, Any]], run_id: str,
                   now: datetime) -> dict[str, Any]:
    """The watch_matches row of one issuance and watch item: the row `kept` so far (None: a new
    one, found by `run_id`) with what `candidates` (its certificate rows of this batch) add.
    Pure, and the same whatever order the certificates come in: first seen is the earliest log
    timestamp (then log and index), the final certificate's sha256 wins over the precert's."""
    row: dict[str, Any] = dict(kept) if kept else {}
    names = set(row.get("names") or ())
    for cand in sorted(candidates, key=lambda c: (c["timestamp"], c["log_slug"], c["index"])):
        names.update(cand["names"])
        if not row or (cand["timestamp"], cand["log_slug"], cand["index"]) < (row["timestamp"], row["log_slug"], row["index"]):
            row.update({k: cand[k] for k in ("log_slug", "index", "timestamp", "issuer", "not_before", "not_after")})
            row.setdefault("watch_item", cand["watch_item"])
            row.setdefault("tbs_sha256", cand["tbs_sha256"])
        if cand["entry_type"] == "x509":
            row.update(cert_sha256=cand["cert_sha256"], entry_type="x509")
        else:
            row["precert_sha256"] = row.get("precert_sha256") or cand["cert_sha256"]
            if row.get("entry_type") != "x509":
                row.update(cert_sha256=row["precert_sha256"], entry_type="precert")
    row["names"] = sorted(names)
    row["crtsh"] = CRTSH + row["cert_sha256"]
    row.setdefault("precert_sha256", None)
    row.setdefault("run_id", run_id)
    row.setdefault("matched_at", now)
    if kept is None or any(row[k] != kept.get(k) for k in row if k != "updated_at"):
        row["updated_at"] = now
    return row


def _read_bucket(lake: Lake, path: str) -> dict[Key, dict[str, Any]]:
    """The rows of one watch_matches file by key; none when it does not exist yet."""
    try:
        table = pq.read_table(path, filesystem=lake.filesystem, schema=layout.WATCH_MATCHES_SCHEMA)
    except FileNotFoundError:
        return {}
    return {(row["tbs_sha256"], row["watch_item"]): row for row in table.to_pylist()}


def watch_files(lake: Lake, files: Sequence[str], watchlist: Watchlist, run_id: str,
                now: datetime | None = None) -> WatchResult:
    """Match `files` (certs file URIs) and bring watch_matches up to date (`record_matches`)."""
    matches: list[dict[str, Any]] = []
    entries = 0
    for certs_uri in files:
        found, rows = file_matches(lake, certs_uri, watchlist)
        matches += found
        entries += rows
    return record_matches(lake, matches, watchlist, run_id, entries=entries, now=now)


def record_matches(lake: Lake, matches: Sequence[Mapping[str, Any]], watchlist: Watchlist, run_id: str, *,
                   entries: int, now: datetime | None = None,
                   also: Mapping[str, Sequence[Sequence[int]]] | None = None) -> WatchResult:
    """Bring watch_matches up to date with `matches` (from `table_matches`: one per certificate
    and watch item) found by run `run_id` among `entries` certificates (module docstring).
    `files` of the result: those holding rows this run notifies (`rows_of_run`, with `also`)."""
    now = now or datetime.now(UTC)
    candidates: dict[Key, list[Mapping[str, Any]]] = {}
    certificates = len({(m["log_slug"], m["index"]) for m in matches})
    for match in matches:
        candidates.setdefault((match["tbs_sha256"], match["watch_item"]), []).append(match)
    by_bucket: dict[str, list[Key]] = {}
    for key in candidates:
        by_bucket.setdefault(layout.watch_bucket(lake.root, key[0]), []).append(key)
    ours: list[str] = []  # files holding rows this run found (in this attempt or an earlier one)
    new = updated = 0
    for path, keys in sorted(by_bucket.items()):
        kept = _read_bucket(lake, path)
        changed = False
        for key in keys:
            old = kept.get(key)
            row = merge_issuance(old, candidates[key], run_id, now)
            if row != old:
                new += old is None
                updated += old is not None and row["run_id"] != run_id
                kept[key] = row
                changed = True
        if changed:
            ordered = sorted(kept.values(), key=lambda r: (r["timestamp"], r["tbs_sha256"], r["watch_item"]))
            directory, _, name = path.rpartition("/")
            write_file(lake, directory, name, pa.Table.from_pylist(ordered, schema=layout.WATCH_MATCHES_SCHEMA))
        if any(_ours(kept[key], run_id, also) for key in keys):
            ours.append(lake.uri(path))
    log.info("%d entries: %d certificates matched (%d watch items); %d new issuance rows, %d updated",
             entries, certificates, len(watchlist.items), new, updated)
    return WatchResult(ours, new, updated, certificates, entries)


def rows_of_run(lake: Lake, files: Sequence[str], run_id: str,
                also: Mapping[str, Sequence[Sequence[int]]] | None = None) -> list[dict[str, Any]]:
    """The watch_matches rows of `files` that run `run_id` found: what it notifies. With
    `also` ({slug: [[start, end], ...]}: ranges an earlier run wrote and did not commit, redone
    by this one), the rows first seen in those ranges too, whichever run found them."""
    return [row for uri in files for row in _read_bucket(lake, lake.path_of(uri)).values() if _ours(row, run_id, also)]


def _ours(row: Mapping[str, Any], run_id: str, also: Mapping[str, Sequence[Sequence[int]]] | None) -> bool:
    """Whether run `run_id` notifies `row` (rows_of_run)."""
    return row["run_id"] == run_id or any(s <= row["index"] < e for s, e in (also or {}).get(row["log_slug"], ()))
