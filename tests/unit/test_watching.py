"""ct_watch's matching and its table (ctlib.downstream.watching) over a real lake: decoded
certificates written as ingest writes them, matched by file or by range of entries (as the
DAG reads its watermark's range). One row per issuance and watch item, kept exactly once
across retries, re-runs and a final certificate arriving after its precert."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.downstream.ranges import read_entries
from ctlib.downstream.watch_query import find_matches
from ctlib.downstream.watching import RANGE_COLUMNS, merge_issuance, range_matches, record_matches, rows_of_run, watch_files
from ctlib.downstream.watchlist import parse_watchlist
from ctlib.lake.files import Lake, write_range
from tests.support.watch import WATCHLIST as WATCHLIST_TEXT
from tests.support.watch import watched_entries

WATCHLIST = parse_watchlist(WATCHLIST_TEXT)


@pytest.fixture
def lake(tmp_path):
    """Two certs files: log alpha holds the precertificate and the other certificates, log
    beta (a later run) the final certificate. Returns the lake and the two files."""
    entries = watched_entries()
    raws = [RawEntry(i, e.leaf_input, e.extra_data) for i, e in enumerate(entries)]
    now = datetime.now(UTC)
    lake = Lake.open(str(tmp_path / "lake"))
    alpha = decode_entries(LogRef("YWxwaGE=", "alpha"), raws[:-1], now).certs
    beta = decode_entries(LogRef("YmV0YQ==", "beta"), raws[-1:], now).certs
    files = [write_range(lake, "certs", "alpha", 0, len(raws) - 1, alpha)[0],
             write_range(lake, "certs", "beta", len(raws) - 1, len(raws), beta)[0]]
    return lake, files


def _table(lake: Lake) -> list[dict]:
    return duckdb.sql(f"select * from read_parquet('{lake.root}/watch_matches/**/*.parquet') "
                      "order by timestamp, watch_item").to_arrow_table().to_pylist()


def test_matches_make_one_row_per_issuance_and_item(lake):
    lake, (alpha, _) = lake
    result = watch_files(lake, [alpha], WATCHLIST, "run-1")
    rows = _table(lake)
    assert [(r["watch_item"], r["names"], r["entry_type"]) for r in rows] == [
        (".example.com", ["login.example.com"], "precert"),
        ("www.example.org", ["*.example.org"], "x509"),
        ("bücher.example", ["xn--bcher-kva.example"], "x509"),
        ("192.0.2.10", ["192.0.2.10"], "x509"),
    ]
    assert (result.new, result.updated, result.certificates) == (4, 0, 4)
    assert result.files == sorted({f"{lake.root}/watch_matches/{r['tbs_sha256'][:2]}.parquet" for r in rows})
    login = rows[0]
    assert login["precert_sha256"] == login["cert_sha256"] and login["crtsh"].endswith(login["cert_sha256"])
    assert (login["log_slug"], login["index"], login["run_id"]) == ("alpha", 0, "run-1")
    assert len(rows_of_run(lake, result.files, "run-1")) == 4
    assert rows_of_run(lake, result.files, "run-2") == []


def test_a_retry_and_a_rerun_add_nothing_but_the_retry_still_notifies(lake):
    lake, (alpha, _) = lake
    first = watch_files(lake, [alpha], WATCHLIST, "run-1")
    before = _table(lake)
    retry = watch_files(lake, [alpha], WATCHLIST, "run-1")  # the same run's next attempt
    assert (retry.new, retry.updated, retry.files) == (0, 0, first.files)  # its rows: still to notify
    rerun = watch_files(lake, [alpha], WATCHLIST, "manual-2")
    assert (rerun.new, rerun.updated, rerun.files) == (0, 0, [])
    assert _table(lake) == before


def test_the_final_certificate_joins_its_precertificate_without_a_new_row(lake):
    lake, (alpha, beta) = lake
    watch_files(lake, [alpha], WATCHLIST, "run-1")
    precert = _table(lake)[0]
    later = watch_files(lake, [beta], WATCHLIST, "run-2")
    assert (later.new, later.updated, later.files) == (0, 1, []), "the final certificate must not alert again"
    rows = [r for r in _table(lake) if r["watch_item"] == ".example.com"]
    assert len(rows) == 1
    (row,) = rows
    assert row["entry_type"] == "x509" and row["cert_sha256"] != precert["cert_sha256"]
    assert row["precert_sha256"] == precert["cert_sha256"] and row["tbs_sha256"] == precert["tbs_sha256"]
    assert (row["log_slug"], row["index"], row["run_id"]) == ("alpha", 0, "run-1"), "first seen stays"
    assert row["crtsh"].endswith(row["cert_sha256"]) and row["updated_at"] > row["matched_at"]
    again = watch_files(lake, [alpha, beta], WATCHLIST, "run-3")
    assert (again.new, again.updated) == (0, 0)


def test_the_order_the_certificates_come_in_does_not_matter(lake, tmp_path):
    lake, (alpha, beta) = lake
    watch_files(lake, [beta], WATCHLIST, "run-1")  # the final certificate first (another log was faster)
    watch_files(lake, [alpha], WATCHLIST, "run-2")
    one_way = {(r["watch_item"], r["tbs_sha256"]): (r["cert_sha256"], r["precert_sha256"], r["entry_type"], r["index"])
               for r in _table(lake)}
    assert len(one_way) == 4
    login = next(v for (item, _), v in one_way.items() if item == ".example.com")
    assert login[2] == "x509" and login[1] is not None and login[0] != login[1]


def test_the_table_agrees_with_the_cli_query(lake):
    lake, files = lake
    watch_files(lake, files, WATCHLIST, "run-1")
    table = {(r["watch_item"], r["tbs_sha256"]): (r["cert_sha256"], r["entry_type"], r["names"]) for r in _table(lake)}
    cli = {(r["watch_item"], r["tbs_sha256"]): (r["cert_sha256"], r["entry_type"], r["names"])
           for r in find_matches(lake.root, WATCHLIST)}
    assert table == cli


def test_merge_is_pure_and_order_free():
    now = datetime(2026, 12, 6, tzinfo=UTC)
    base = {"watch_item": ".example.com", "tbs_sha256": "t", "issuer": "CN=ca", "not_before": now, "not_after": now}
    pre = {**base, "entry_type": "precert", "cert_sha256": "p", "names": ["a.example.com"], "log_slug": "b",
           "index": 5, "timestamp": datetime(2026, 12, 5, tzinfo=UTC)}
    final = {**base, "entry_type": "x509", "cert_sha256": "f", "names": ["b.example.com"], "log_slug": "a",
             "index": 9, "timestamp": datetime(2026, 12, 5, 0, 1, tzinfo=UTC)}
    one, two = merge_issuance(None, [pre, final], "r", now), merge_issuance(None, [final, pre], "r", now)
    assert one == two
    assert (one["cert_sha256"], one["precert_sha256"], one["entry_type"], one["log_slug"], one["index"]) == (
        "f", "p", "x509", "b", 5)
    assert one["names"] == ["a.example.com", "b.example.com"]
    assert merge_issuance(one, [pre], "other", now) == one, "nothing new: the row is unchanged"


def test_an_empty_watchlist_or_a_missing_file(lake):
    lake, files = lake
    assert watch_files(lake, files, parse_watchlist(""), "run-1").new == 0
    with pytest.raises(FileNotFoundError, match="no such certs file"):
        watch_files(lake, [files[0].replace("alpha", "gamma")], WATCHLIST, "run-1")


def _by_range(lake: Lake, slug: str, start: int, end: int, run_id: str, also=None):
    """ct_watch's way: the certificates of [start, end) read from the lake, matched, kept."""
    rows = read_entries(lake, slug, start, end, columns=RANGE_COLUMNS, since=None, today=datetime.now(UTC).date())
    return record_matches(lake, range_matches(lake, slug, rows, WATCHLIST), WATCHLIST, run_id,
                          entries=rows.rows.num_rows, also=also)


def test_a_range_of_entries_matches_as_its_files_do(lake, tmp_path):
    lake, files = lake
    end = len(watched_entries())
    by_range = _by_range(lake, "alpha", 0, end - 1, "run-1")
    rows = _table(lake)
    assert (by_range.new, by_range.certificates, by_range.entries) == (4, 4, end - 1)
    assert by_range.files == sorted({f"{lake.root}/watch_matches/{r['tbs_sha256'][:2]}.parquet" for r in rows})
    later = _by_range(lake, "beta", end - 1, end, "run-2")
    assert (later.new, later.updated, later.files) == (0, 1, [])
    # The same certificates matched by file, in a copy of the lake: the same table.
    other = Lake.open(str(tmp_path / "other"))
    copies = [uri.replace(lake.root, other.root) for uri in files]
    for uri, copy in zip(files, copies):
        other.filesystem.create_dir(copy.rpartition("/")[0])
        other.filesystem.copy_file(uri, copy)
    watch_files(other, copies, WATCHLIST, "run-1")
    kept = ("watch_item", "tbs_sha256", "names", "cert_sha256", "precert_sha256", "entry_type", "log_slug", "index")
    assert [[r[k] for k in kept] for r in _table(other)] == [[r[k] for k in kept] for r in _table(lake)]


def test_a_redone_range_notifies_what_the_failed_run_kept(lake):
    """Run 1 kept its matches and failed before notifying and committing; run 2 redoes its
    pending range: the rows are run 1's, yet run 2 notifies them (the delivery record keeps
    what run 1 may have sent from going twice)."""
    lake, _ = lake
    end = len(watched_entries())
    _by_range(lake, "alpha", 0, end - 1, "run-1")
    redo = _by_range(lake, "alpha", 0, end - 1, "run-2", also={"alpha": [[0, end - 1]]})
    assert redo.new == 0 and redo.files
    assert len(rows_of_run(lake, redo.files, "run-2", also={"alpha": [[0, end - 1]]})) == 4
    assert rows_of_run(lake, redo.files, "run-2") == [], "without the redone range: run 1's rows"
    assert rows_of_run(lake, redo.files, "run-3", also={"alpha": [[1, 2]]})[0]["index"] == 1
