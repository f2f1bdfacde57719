"""The audit (`python -m ctlib.audit`, ctlib.ops.audit) on an S3 lake, and on a compacted
partition on a local and an S3 lake: it reads each log's live files (ctlib.lake.manifest),
so a merged file and the range files its manifest absorbed count once, a merged file no
manifest names counts not at all, and a missing or doubled range is still found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file, write_json
from ctlib.lake.manifest import Manifest, write_manifest
from ctlib.ops.audit import CountRun, log_id_from_lake, scan_lake
from tests.support.audit import audit

DAY, NEXT_DAY = date(2026, 11, 30), date(2026, 12, 1)
LOG_ID = "bG9nLWlk"


def rows(slug: str, indexes, *, log_slug: str | None = None) -> pa.Table:
    indexes = list(indexes)
    return pa.table({
        "log_id": pa.array([LOG_ID] * len(indexes)),
        "log_slug": pa.array([log_slug or slug] * len(indexes)),
        "index": pa.array(indexes, pa.int64()),
        "ingested_at": pa.array([datetime(2026, 11, 30, tzinfo=UTC)] * len(indexes), pa.timestamp("ms", tz="UTC")),
    })


def put(lake: Lake, table: str, slug: str, day: date, name: str, indexes) -> str:
    return write_file(lake, layout.partition_dir(lake.root, table, slug, day), name, rows(slug, indexes))


def range_file(lake: Lake, slug: str, day: date, start: int, end: int, table: str = layout.CERTS) -> str:
    return put(lake, table, slug, day, layout.range_file_name(start, end), range(start, end))


def compact(lake: Lake, table: str, slug: str, day: date, absorbed: list[tuple[int, int]], generation: int = 1,
            extra=()) -> str:
    """What compaction leaves of `slug`'s day: one merged file holding the rows of the range
    files `absorbed` (and `extra` indexes), and the manifest naming it; the absorbed files
    stay (compaction deletes them only later)."""
    first, end = min(s for s, _ in absorbed), max(e for _, e in absorbed)
    indexes = sorted({i for s, e in absorbed for i in range(s, e)} | set(extra))
    name = layout.merged_file_name(first, end, generation)
    put(lake, table, slug, day, name, indexes)
    write_manifest(lake, layout.partition_dir(lake.root, table, slug, day), Manifest(
        generation=generation, file=name, rows=len(indexes), first=first, end=end,
        absorbed=frozenset(layout.range_file_name(s, e) for s, e in absorbed)))
    return name


def states(tmp_path: Path, **marks: tuple[int, int]) -> Path:
    """A JSON file of the ingest states (`--state-json`): {slug: (first_index, next_index)}."""
    path = tmp_path / "variables.json"
    path.write_text(json.dumps({f"ct_state__{slug}": json.dumps({"first_index": first, "next_index": end})
                                for slug, (first, end) in marks.items()}))
    return path


# ----------------------------------------------------------------- a compacted partition, local and S3


def test_a_compacted_partition_counts_once_and_an_orphan_merge_not_at_all(lake_location: str):
    lake = Lake.open(lake_location)
    for start in (0, 100, 200):
        range_file(lake, "alpha", DAY, start, start + 100)
    range_file(lake, "alpha", DAY, 120, 125, table=layout.ERRORS)  # undecodable: present, in errors
    range_file(lake, "alpha", NEXT_DAY, 300, 400)
    before = scan_lake(lake_location, "alpha")
    assert before == ([CountRun(0, 120, 1), CountRun(120, 125, 2), CountRun(125, 400, 1)],
                      {"certs": 400, "errors": 5})

    # certs of DAY compacted (the absorbed files still there), errors of DAY too.
    compact(lake, layout.CERTS, "alpha", DAY, [(0, 100), (100, 200)])
    compact(lake, layout.ERRORS, "alpha", DAY, [(120, 125)])
    assert scan_lake(lake_location, "alpha") == before
    # A merge of the next generation whose manifest never came, and one in a partition with
    # no manifest at all: neither is live.
    put(lake, layout.CERTS, "alpha", DAY, layout.merged_file_name(0, 300, 2), range(0, 300))
    put(lake, layout.CERTS, "alpha", NEXT_DAY, layout.merged_file_name(300, 400, 1), range(300, 400))
    # A backfill that wrote an absorbed range again (the same rows): hidden behind the merge.
    range_file(lake, "alpha", DAY, 100, 200)
    assert scan_lake(lake_location, "alpha") == before
    assert scan_lake(lake_location, "alpha", window=(150, 350))[1] == {"certs": 200, "errors": 0}
    assert log_id_from_lake(lake_location, "alpha") == LOG_ID
    assert log_id_from_lake(lake_location, "nobody") is None

    # The next generation's manifest: its merged file replaces the first, [200, 300) absorbed.
    compact(lake, layout.CERTS, "alpha", DAY, [(0, 100), (100, 200), (200, 300)], generation=2)
    assert scan_lake(lake_location, "alpha") == before
    # A new backfill range beside the merge (entries the day did not hold) is live: a
    # duplicate when it doubles entries the merged file holds.
    range_file(lake, "alpha", DAY, 250, 260)
    runs, per_table = scan_lake(lake_location, "alpha")
    assert CountRun(250, 260, 1) not in runs and [r for r in runs if r.count == 2] == [
        CountRun(120, 125, 2), CountRun(250, 260, 2)]
    assert per_table == {"certs": 410, "errors": 5}


def test_rows_of_another_log_in_the_folder_and_the_where_filter(lake_location: str):
    lake = Lake.open(lake_location)
    range_file(lake, "alpha", DAY, 0, 10)
    write_file(lake, layout.partition_dir(lake.root, layout.CERTS, "alpha", DAY), "stray.parquet",
               rows("alpha", range(10, 20), log_slug="beta"))
    runs, per_table = scan_lake(lake_location, "alpha", tables=(layout.CERTS,), where="ingested_at >= ?",
                                params=[datetime(2026, 11, 30, tzinfo=UTC)])
    assert (runs, per_table) == ([CountRun(0, 10, 1)], {"certs": 10})
    assert scan_lake(lake_location, "alpha", where="ingested_at > ?", params=[datetime(2026, 12, 1, tzinfo=UTC)]) == (
        [], {"certs": 0, "errors": 0})


# ----------------------------------------------------------------- the CLI on S3


def test_cli_on_s3_clean_missing_and_doubled(s3_lake: str, tmp_path: Path):
    lake = Lake.open(s3_lake)
    for start in range(0, 400, 100):
        range_file(lake, "alpha", DAY if start < 300 else NEXT_DAY, start, start + 100)
    range_file(lake, "beta", DAY, 10, 40)
    compact(lake, layout.CERTS, "alpha", DAY, [(0, 100), (100, 200), (200, 300)])
    put(lake, layout.CERTS, "alpha", DAY, layout.merged_file_name(0, 300, 2), range(0, 300))  # orphan
    variables = states(tmp_path, alpha=(0, 400), beta=(10, 40))

    def cli(*args: str) -> tuple[int, str]:
        return audit("--state-json", str(variables), "--lake", s3_lake, *args)

    code, report = cli()
    assert code == 0, report
    assert "FAIL" not in report
    code, report = cli("--json")
    found = {a["slug"]: a for a in json.loads(report)}
    assert code == 0 and (found["alpha"]["rows"], found["beta"]["rows"]) == (400, 30)

    # A doubled range: the same entries again under a backfill window's name.
    put(lake, layout.CERTS, "alpha", NEXT_DAY, layout.window_file_name(350, 360, 1, 2), range(350, 360))
    code, report = cli("--log", "alpha")
    assert code == 1 and "alpha: duplicate [350, 360) x2" in report
    lake.filesystem.delete_file(f"{layout.partition_dir(lake.root, layout.CERTS, 'alpha', NEXT_DAY)}/"
                                f"{layout.window_file_name(350, 360, 1, 2)}")
    assert cli("--log", "alpha")[0] == 0

    # A missing range: a range file of a partition without a manifest gone.
    lake.filesystem.delete_file(range_file(lake, "alpha", NEXT_DAY, 300, 400))
    code, report = cli()
    assert code == 1 and "alpha: gap [300, 400)" in report and "FAIL" in report
    assert cli("--log", "beta")[0] == 0


def test_cli_on_s3_cannot_audit_a_partition_whose_manifest_is_unreadable(s3_lake: str, tmp_path: Path):
    lake = Lake.open(s3_lake)
    range_file(lake, "alpha", DAY, 0, 100)
    directory = layout.partition_dir(lake.root, layout.CERTS, "alpha", DAY)
    write_json(lake, f"{directory}/{layout.MANIFEST}", {"format": 1, "generation": 1})
    code, report = audit("--state-json", str(states(tmp_path, alpha=(0, 100))), "--lake", s3_lake)
    assert code == 2 and "cannot scan the lake" in report and layout.MANIFEST in report
    # A manifest naming a merged file that is not there: never guessed around either.
    write_manifest(lake, directory, Manifest(generation=1, file=layout.merged_file_name(0, 100, 1), rows=100,
                                             first=0, end=100, absorbed=frozenset([layout.range_file_name(0, 100)])))
    code, report = audit("--state-json", str(states(tmp_path, alpha=(0, 100))), "--lake", s3_lake)
    assert code == 2 and "not there" in report


def test_python_m_ctlib_audit_with_ct_lake_on_s3(s3_lake: str, tmp_path: Path):
    """The command as an operator runs it: CT_LAKE=s3://... and the AWS variables, no --lake."""
    lake = Lake.open(s3_lake)
    range_file(lake, "alpha", DAY, 0, 100)
    range_file(lake, "alpha", DAY, 100, 200)
    compact(lake, layout.CERTS, "alpha", DAY, [(0, 100), (100, 200)])
    variables = states(tmp_path, alpha=(0, 200))
    env = {**os.environ, "CT_LAKE": s3_lake}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ctlib.audit", "--state-json", str(variables), "--json"],
                              env=env, capture_output=True, text=True, timeout=120)

    done = run()
    assert done.returncode == 0, done.stdout + done.stderr
    [alpha] = json.loads(done.stdout)
    assert (alpha["slug"], alpha["rows"], alpha["gaps"], alpha["duplicates"]) == ("alpha", 200, [], [])
    range_file(lake, "alpha", DAY, 150, 160)  # a range beside the merge, doubling entries it holds
    done = run()
    assert done.returncode == 1, done.stdout + done.stderr
    assert json.loads(done.stdout)[0]["duplicates"]


@pytest.mark.parametrize("missing", [True, False])
def test_support_assert_audit_clean_takes_a_location(s3_lake: str, tmp_path: Path, missing: bool):
    """tests.support.audit.assert_audit_clean accepts an s3:// location as well as a Path."""
    from tests.support.audit import assert_audit_clean

    lake = Lake.open(s3_lake)
    range_file(lake, "alpha", DAY, 0, 50 if missing else 100)
    variables = states(tmp_path, alpha=(0, 100))
    if missing:
        with pytest.raises(AssertionError, match=r"gap \[50, 100\)"):
            assert_audit_clean(s3_lake, "alpha", "--state-json", str(variables))
    else:
        assert "alpha" in assert_audit_clean(s3_lake, "alpha", "--state-json", str(variables))
