"""ctlib.lake.query and the analysts' SQL files over a real lake written by the Parquet sink,
on a local folder and on a local S3 server (`lake_location`): views over the live files, so
a compacted partition counts once, `--files` for readers outside ctlib, and the CLI on
`--lake s3://...` with the AWS variables."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file, write_range
from ctlib.lake.layout import TABLES
from ctlib.lake.manifest import Manifest, live_files, write_manifest
from ctlib.lake.query import connect, run
from ctlib.testing.certs import CertFactory
from tests.paths import PROJECT_ROOT

SQL_DIR = PROJECT_ROOT / "include" / "sql"
SLUG = "local_query_log"


@pytest.fixture(scope="module")
def certs() -> pa.Table:
    factory = CertFactory(seed=7)
    now_ms = int(time.time() * 1000)
    entries = []
    for i in range(300):
        names = ["login.paypal-secure-check.com"] if i == 5 else None
        generated = factory.next_entry(now_ms - (300 - i) * 1000, names=names)
        entries.append(RawEntry(i, generated.leaf_input, generated.extra_data))
    batch = decode_entries(LogRef("bG9n", SLUG), entries, datetime.now(UTC))
    assert batch.errors.num_rows == 0
    return batch.certs


@pytest.fixture
def lake(lake_location, certs) -> str:
    """300 certificates of one log in `lake_location` (one range file per day they span)."""
    write_range(Lake.open(lake_location), "certs", SLUG, 0, 300, certs)
    return lake_location


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m ctlib.query ...` in a process of its own (the environment as set: the AWS
    variables of the S3 lake)."""
    return subprocess.run([sys.executable, "-m", "ctlib.query", *args], capture_output=True, text=True, timeout=120)


def compact_by_hand(location: str) -> list[str]:
    """Each certs day partition's rows as one merged file made live by its manifest (what
    ct_compact does), and a merged file of a later generation no manifest names (a
    compaction that stopped before its manifest). Returns the merged files' names."""
    lake = Lake.open(location)
    merged = []
    for f in live_files(lake, layout.CERTS):
        directory = f.path.rpartition("/")[0]
        rows = ds.dataset(f.path, filesystem=lake.filesystem, format="parquet").to_table()
        first, end = f.span or (0, 0)
        name = layout.merged_file_name(first, end, 1)
        write_file(lake, directory, name, rows.sort_by("index"))
        write_file(lake, directory, layout.merged_file_name(first, end, 2), rows)  # not live
        write_manifest(lake, directory, Manifest(generation=1, file=name, rows=rows.num_rows, first=first, end=end,
                                                 absorbed=frozenset({f.name})))
        merged.append(name)
    return merged


def test_every_table_has_a_view_even_when_empty(lake_location):
    con = connect(lake_location)
    for table in TABLES:
        assert con.sql(f"select count(*) from {table}").fetchall() == [(0,)]
    assert [c[0] for c in con.sql("describe certs").fetchall()][-2:] == ["log", "date"]


def test_certs_view_reads_partitions(lake):
    count, logs, distinct = run("select count(*), count(distinct log_slug), count(distinct index) from certs",
                                lake=lake).fetchall()[0]
    assert (count, logs, distinct) == (300, 1, 300)
    assert run("select distinct log from certs", lake=lake).fetchall() == [(SLUG,)]


def test_a_compacted_partition_counts_once(lake):
    before = run("select index, leaf_hash from certs order by index", lake=lake).fetchall()
    merged = compact_by_hand(lake)
    assert merged
    assert run("select index, leaf_hash from certs order by index", lake=lake).fetchall() == before
    assert sorted(f.name for f in live_files(Lake.open(lake), layout.CERTS)) == sorted(merged)


def test_no_duckdb_extension_is_ever_downloaded(lake):
    con = connect(lake, tables=["certs"])
    assert con.sql("select current_setting('autoinstall_known_extensions')").fetchall() == [(False,)]
    assert con.sql("select count(*) from certs").fetchall() == [(300,)]
    assert con.sql("select count(*) from duckdb_extensions() where extension_name = 'httpfs' and loaded").fetchall() \
        == [(0,)]


def test_certs_for_domain(lake):
    sql = (SQL_DIR / "certs_for_domain.sql").read_text()
    rows = run(sql, lake=lake, params={"pattern": "%paypal-secure-check.com"}).fetchall()
    assert len(rows) == 1 and rows[0][2] == 5


def test_precert_to_cert_delay_joins_on_tbs_sha256(lake):
    rows = run((SQL_DIR / "precert_to_cert_delay.sql").read_text(), lake=lake).fetchall()
    assert rows and sum(r[1] for r in rows) > 0
    assert all(r[2] >= 0 for r in rows), "final certificates are logged after their precertificates"


@pytest.mark.parametrize("name", ["top_issuers_per_day.sql", "ingest_health.sql", "suspicious_names_per_brand.sql"])
def test_other_queries_run(lake, name):
    rows = run((SQL_DIR / name).read_text(), lake=lake).fetchall()
    if name != "suspicious_names_per_brand.sql":
        assert rows
    if name == "ingest_health.sql":
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [(SLUG, 300, 0, 0)]
    if name == "top_issuers_per_day.sql":
        assert sum(r[2] for r in rows) <= 300


def test_every_sql_file_is_tested():
    tested = {"certs_for_domain.sql", "precert_to_cert_delay.sql", "top_issuers_per_day.sql", "ingest_health.sql",
              "suspicious_names_per_brand.sql", "enriched_high_risk.sql"}
    assert {p.name for p in SQL_DIR.glob("*.sql")} == tested


def test_enriched_high_risk_runs_on_an_empty_table(lake):
    assert run((SQL_DIR / "enriched_high_risk.sql").read_text(), lake=lake, params={"min_risk": "60"}).fetchall() == []


def test_cli_prints_csv_and_json(lake):
    out = cli("--lake", lake, "--format", "csv", "select log_slug, count(*) as n from certs group by 1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['"log_slug","n"', f'"{SLUG}",300']
    out = cli("--lake", lake, "--format", "json", "select 1 as one")
    assert out.stdout.strip() == '{"one": 1}'
    bad = cli("--lake", lake, "select * from nope")
    assert bad.returncode == 1 and "query failed" in bad.stderr


def test_cli_files_lists_the_live_files_a_reader_opens(lake):
    """`--files certs`: the URIs of the live files; read with pyarrow as they are listed (a
    reader outside ctlib), they hold every entry once, also after a compaction."""
    for compacted in (False, True):
        if compacted:
            compact_by_hand(lake)
        out = cli("--lake", lake, "--files", "certs")
        assert out.returncode == 0, out.stderr
        uris = out.stdout.split()
        opened = Lake.open(lake)
        assert uris == [opened.uri(f.path) for f in live_files(opened, layout.CERTS)] and uris
        assert all(u.startswith("s3://") for u in uris) if lake.startswith("s3://") else all(u.startswith("/") for u in uris)
        assert all(layout.parse_merged(u.rpartition("/")[2]) for u in uris) == compacted
        table = ds.dataset([opened.path_of(u) for u in uris], filesystem=opened.filesystem, format="parquet").to_table()
        assert sorted(table.column("index").to_pylist()) == list(range(300))
    described = [json.loads(line) for line in cli("--lake", lake, "--files", "certs", "--format", "json").stdout.splitlines()]
    assert [d["uri"] for d in described] == uris
    assert {(d["table"], d["log"]) for d in described} == {("certs", SLUG)} and all(d["size"] > 0 for d in described)
    assert cli("--lake", lake, "--files", "alerts").stdout == ""


def test_cli_on_s3_with_the_aws_variables(s3_lake, certs, monkeypatch):
    """The README's command: CT_LAKE and --lake s3://bucket/prefix, AWS_ENDPOINT_URL at the
    local server (set by s3_lake for this process and its children)."""
    write_range(Lake.open(s3_lake), "certs", SLUG, 0, 300, certs)
    compact_by_hand(s3_lake)
    monkeypatch.setenv("CT_LAKE", s3_lake)
    out = cli("--lake", s3_lake, "--format", "csv", "select count(*) as n from certs")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['"n"', "300"]
    out = cli("--format", "csv", "--file", str(SQL_DIR / "ingest_health.sql"))  # CT_LAKE
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].startswith(f'"{SLUG}",300,0,0,')
    missing = s3_lake.replace("s3://lake-", "s3://nolake-")
    out = cli("--lake", missing, "select count(*) from certs")
    assert out.returncode == 2 and missing in out.stderr and "does not exist" in out.stderr
    assert "testing" not in out.stderr, "no key in the error"
