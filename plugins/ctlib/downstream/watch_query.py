"""`python -m ctlib.watch`: which issuances in the lake cover a watchlist's names. DuckDB over
the `certs` Parquet files, not Python loops over rows.

    python -m ctlib.watch --lake data --watchlist include/watchlist.txt --since 2026-12-01 --format table

One row per issuance and watch item. An issuance is one `tbs_sha256`: a precertificate and
its final certificate are one, and the final certificate's sha256 is reported when the lake
has it. The name rules are those of ctlib.downstream.watchlist, written once more in SQL
(`_MATCH_SQL`; tests/unit/test_watch_query.py holds both to the same cases). IP items are
matched in Python over the few certificates with IP SANs (DuckDB's inet type needs an
extension download).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from ctlib.downstream.watchlist import CRTSH, Watchlist, WatchlistError, load_watchlist
from ctlib.lake.query import connect

COLUMNS = ("watch_item", "names", "tbs_sha256", "cert_sha256", "entry_type", "log_slug", "index", "timestamp",
           "issuer", "not_before", "not_after", "crtsh")

# Each (certificate name, watch item) pair that matches: `n` the certificate's name, lower
# case without a trailing dot; `w` the item's normalized name; `kind` domain or name.
_MATCH_SQL = """
with names as (
  select c.tbs_sha256, c.cert_sha256, c.entry_type, c.log_slug, c.index, c.timestamp, c.issuer,
         c.not_before, c.not_after, raw, lower(rtrim(raw, '.')) as n
  from certs c, unnest(c.dns_names) as u(raw) {where}
), cut as (
  select *, n like '*.%' as wild, case when n like '*.%' then substr(n, 3) else n end as base from names
), hits as (
  select cut.*, i.text as watch_item, i.position from cut join items i on
    (i.kind = 'domain' and (cut.base = i.name or ends_with(cut.base, '.' || i.name)))
    or (i.kind = 'domain' and cut.wild and ends_with(i.name, '.' || cut.base)
        and strpos(left(i.name, length(i.name) - length(cut.base) - 1), '.') = 0)
    or (i.kind = 'name' and not cut.wild and cut.n = i.name)
    or (i.kind = 'name' and cut.wild and ends_with(i.name, '.' || cut.base)
        and strpos(left(i.name, length(i.name) - length(cut.base) - 1), '.') = 0)
)
select watch_item, min(position) as position, list(distinct raw order by raw) as names, tbs_sha256,
       coalesce(max(cert_sha256) filter (where entry_type = 'x509'), max(cert_sha256)) as cert_sha256,
       case when bool_or(entry_type = 'x509') then 'x509' else 'precert' end as entry_type,
       arg_min(log_slug, timestamp) as log_slug, arg_min(index, timestamp) as index, min(timestamp) as timestamp,
       any_value(issuer) as issuer, min(not_before) as not_before, max(not_after) as not_after
from hits group by watch_item, tbs_sha256
"""


def find_matches(lake: str, watchlist: Watchlist, since: datetime | None = None) -> list[dict[str, Any]]:
    """One dict per issuance and watch item (COLUMNS), oldest first."""
    con = connect(lake)  # the lake's views; `certs` is empty, not missing, on a new lake
    try:
        where, params = ("where c.timestamp >= ?", [since]) if since is not None else ("", [])
        names = [(i.text, i.kind, i.name, k) for k, i in enumerate(watchlist.items) if i.kind != "ip"]
        con.register("items", pa.table({"text": [n[0] for n in names], "kind": [n[1] for n in names],
                                        "name": [n[2] for n in names], "position": [n[3] for n in names]},
                                       schema=pa.schema([("text", pa.string()), ("kind", pa.string()),
                                                         ("name", pa.string()), ("position", pa.int64())])))
        rows = _rows(con.execute(_MATCH_SQL.format(where=where), params)) if names else []
        rows += _ip_matches(con, watchlist, where, params)
    finally:
        con.close()
    for row in rows:
        row["crtsh"] = CRTSH + row["cert_sha256"]
    rows.sort(key=lambda r: (r["timestamp"], r["position"], r["tbs_sha256"]))
    return [{k: row[k] for k in COLUMNS} for row in rows]


def _ip_matches(con, watchlist: Watchlist, where: str, params: list) -> list[dict[str, Any]]:
    items = [(k, i) for k, i in enumerate(watchlist.items) if i.kind == "ip"]
    if not items:
        return []
    sql = ("select tbs_sha256, cert_sha256, entry_type, log_slug, index, timestamp, issuer, not_before, not_after, "
           f"ip_addresses from certs c {where}{' and' if where else ' where'} len(c.ip_addresses) > 0")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for row in _rows(con.execute(sql, params)):
        for position, item in items:
            hits = [a for a in row["ip_addresses"] if item.matches_ip(a)]
            if not hits:
                continue
            key = (item.text, row["tbs_sha256"])
            seen = found.get(key)
            if seen is None or row["timestamp"] < seen["timestamp"]:
                merged = {**row, "watch_item": item.text, "position": position, "names": sorted(set(hits))}
                if seen is not None and seen["entry_type"] == "x509":
                    merged.update(cert_sha256=seen["cert_sha256"], entry_type="x509")
                found[key] = merged
            elif row["entry_type"] == "x509":
                seen.update(cert_sha256=row["cert_sha256"], entry_type="x509")
    for row in found.values():
        row.pop("ip_addresses", None)
    return list(found.values())


def _rows(cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, values)) for values in cursor.fetchall()]


def _print(rows: list[dict[str, Any]], fmt: str, out=None) -> None:
    out = out or sys.stdout
    def cell(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(value)
        return value.isoformat() if isinstance(value, datetime) else str(value)

    if fmt == "json":
        for row in rows:
            out.write(json.dumps({k: cell(v) if not isinstance(v, (int, list)) else v for k, v in row.items()}) + "\n")
        return
    lines = [list(COLUMNS)] + [[cell(row[k]) for k in COLUMNS] for row in rows]
    if fmt == "tsv":
        out.writelines("\t".join(line) + "\n" for line in lines)
        return
    widths = [max(len(line[k]) for line in lines) for k in range(len(COLUMNS))]
    out.writelines("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() + "\n" for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    from ctlib.settings import Settings, SettingsError, parse_utc

    parser = argparse.ArgumentParser(prog="python -m ctlib.watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", help="lake root (default: CT_LAKE)")
    parser.add_argument("--watchlist", required=True, help="watchlist file (certspotter's format)")
    parser.add_argument("--since", help="only certificates logged at or after this time (ISO-8601, UTC)")
    parser.add_argument("--format", choices=("table", "tsv", "json"), default="table")
    args = parser.parse_args(argv)
    try:
        since = parse_utc(args.since, "--since") if args.since else None
        watchlist = load_watchlist(args.watchlist)
        rows = find_matches(args.lake or Settings.from_env().lake, watchlist, since)
    except (SettingsError, WatchlistError, ValueError) as err:
        print(f"ctlib.watch: {err}", file=sys.stderr)
        return 2
    _print(rows, args.format)
    print(f"{len(rows)} issuance(s) matching {len(watchlist.items)} watch item(s)", file=sys.stderr)
    return 0
