"""`python -m ctlib.watch` over a real lake: decoded certificates written as ingest writes them,
read back with DuckDB. One row per issuance and watch item; a precertificate and its final
certificate count once; the SQL rules agree with ctlib.downstream.watchlist's."""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime

import pytest

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.downstream.watch_query import find_matches, main
from ctlib.downstream.watchlist import parse_watchlist
from ctlib.lake.files import Lake, write_range
from tests.support.watch import T0, WATCHLIST, watched_entries


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """A log of: a precertificate for login.example.com (and, later, its final certificate),
    *.example.org, an IDN, an IP SAN, and names that must not match."""
    entries = watched_entries()
    raws = [RawEntry(i, e.leaf_input, e.extra_data) for i, e in enumerate(entries)]
    batch = decode_entries(LogRef("bG9n", "watch_test_log"), raws, datetime.now(UTC))
    root = tmp_path_factory.mktemp("watch") / "lake"
    write_range(Lake.open(str(root)), "certs", "watch_test_log", 0, len(raws), batch.certs)
    return root, batch.certs


def test_one_row_per_issuance_and_item(lake):
    root, certs = lake
    rows = find_matches(str(root), parse_watchlist(WATCHLIST))
    got = [(r["watch_item"], r["names"], r["entry_type"], r["index"]) for r in rows]
    assert got == [
        (".example.com", ["login.example.com"], "x509", 0),  # precert + final: once, as x509
        ("www.example.org", ["*.example.org"], "x509", 1),  # the wildcard covers it
        ("bücher.example", ["xn--bcher-kva.example"], "x509", 2),
        ("192.0.2.10", ["192.0.2.10"], "x509", 3),
    ]
    login = rows[0]
    by_sha = {r["cert_sha256"]: r["entry_type"] for r in certs.to_pylist()}
    assert by_sha[login["cert_sha256"]] == "x509", "the final certificate's sha256"
    assert login["crtsh"] == "https://crt.sh/?q=" + login["cert_sha256"]
    assert len({r["tbs_sha256"] for r in certs.to_pylist() if "login.example.com" in r["dns_names"]}) == 1


def test_sql_agrees_with_the_python_rules(lake):
    root, certs = lake
    watchlist = parse_watchlist(WATCHLIST)
    expected = {(item.text, row["tbs_sha256"]) for row in certs.to_pylist()
                for item, _ in watchlist.match(row["dns_names"], row["ip_addresses"])}
    assert {(r["watch_item"], r["tbs_sha256"]) for r in find_matches(str(root), watchlist)} == expected


def test_cli_formats_and_since(lake, tmp_path):
    root, _ = lake
    listing = tmp_path / "watch.txt"
    listing.write_text(WATCHLIST, encoding="utf-8")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["--lake", str(root), "--watchlist", str(listing), "--format", "json"]) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {"watch_item", "names", "tbs_sha256", "cert_sha256", "log_slug", "index", "entry_type"} <= rows[0].keys()
    assert len(rows) == 4
    out = io.StringIO()
    since = datetime.fromtimestamp((T0 + 1_500) / 1000, UTC).isoformat()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(["--lake", str(root), "--watchlist", str(listing), "--since", since, "--format", "tsv"]) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split("\t")[:2] == ["watch_item", "names"] and len(lines) == 1 + 3  # the precert is older
    err = io.StringIO()
    listing.write_text("bad name\n", encoding="utf-8")
    with contextlib.redirect_stderr(err):
        assert main(["--lake", str(root), "--watchlist", str(listing)]) == 2
    assert "watch.txt:1" in err.getvalue()
