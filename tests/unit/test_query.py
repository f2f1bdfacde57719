"""ctlib.lake.query and the analysts' SQL files over a real lake written by the Parquet sink."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.lake.layout import TABLES
from ctlib.lake.query import connect, run
from ctlib.lake.files import Lake, write_range
from ctlib.testing.certs import CertFactory
from tests.paths import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "include" / "sql"


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    factory = CertFactory(seed=7)
    now_ms = int(time.time() * 1000)
    entries = []
    for i in range(300):
        names = ["login.paypal-secure-check.com"] if i == 5 else None
        generated = factory.next_entry(now_ms - (300 - i) * 1000, names=names)
        entries.append(RawEntry(i, generated.leaf_input, generated.extra_data))
    batch = decode_entries(LogRef("bG9n", "local_query_log"), entries, datetime.now(UTC))
    assert batch.errors.num_rows == 0
    write_range(Lake.open(str(root)), "certs", "local_query_log", 0, 300, batch.certs)
    return root


def test_every_table_has_a_view_even_when_empty(tmp_path):
    con = connect(str(tmp_path))
    for table in TABLES:
        assert con.sql(f"select count(*) from {table}").fetchall() == [(0,)]


def test_certs_view_reads_partitions(lake):
    count, logs = run("select count(*), count(distinct log_slug) from certs", lake=str(lake)).fetchall()[0]
    assert (count, logs) == (300, 1)


def test_certs_for_domain(lake):
    sql = (SQL_DIR / "certs_for_domain.sql").read_text()
    rows = run(sql, lake=str(lake), params={"pattern": "%paypal-secure-check.com"}).fetchall()
    assert len(rows) == 1 and rows[0][2] == 5


def test_precert_to_cert_delay_joins_on_tbs_sha256(lake):
    rows = run((SQL_DIR / "precert_to_cert_delay.sql").read_text(), lake=str(lake)).fetchall()
    assert rows and sum(r[1] for r in rows) > 0
    assert all(r[2] >= 0 for r in rows), "final certificates are logged after their precertificates"


@pytest.mark.parametrize("name", ["top_issuers_per_day.sql", "ingest_health.sql", "suspicious_names_per_brand.sql"])
def test_other_queries_run(lake, name):
    rows = run((SQL_DIR / name).read_text(), lake=str(lake)).fetchall()
    if name != "suspicious_names_per_brand.sql":
        assert rows


def test_enriched_high_risk_runs_on_an_empty_table(lake):
    assert run((SQL_DIR / "enriched_high_risk.sql").read_text(), lake=str(lake), params={"min_risk": "60"}).fetchall() == []


def test_cli_prints_csv_and_json(lake):
    out = subprocess.run(
        [sys.executable, "-m", "ctlib.query", "--lake", str(lake), "--format", "csv",
         "select log_slug, count(*) as n from certs group by 1"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.splitlines() == ['"log_slug","n"', '"local_query_log",300']
    out = subprocess.run(
        [sys.executable, "-m", "ctlib.query", "--lake", str(lake), "--format", "json", "select 1 as one"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.strip() == '{"one": 1}'
    bad = subprocess.run([sys.executable, "-m", "ctlib.query", "--lake", str(lake), "select * from nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "query failed" in bad.stderr
