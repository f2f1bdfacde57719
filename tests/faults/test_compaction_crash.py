"""SIGKILL of a process running `ctlib.lake.compaction.compact_log`, on a local lake and on a
local S3 server: round after round, late entries arrive in the closed days (new work), a
compaction process starts and is killed right after the k-th step it reports (a merged file
written, a manifest written, a superseded file deleted), so the kill lands in whatever it
does next (a PUT, a rename, a delete). After every kill a reader following the manifest sees
every row exactly once; the next run finishes the job, and after GRACE nothing is left but
one merged file and its manifest per closed partition (no temporaries either).

No Airflow here: the process is the task body's call, run as `python -c`. Each run is given
a `now` one GRACE later than the one before, so it also sweeps what the previous run
superseded (no reader runs across a kill here, so nothing can be holding those files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow.fs as pafs

from ctlib.lake import layout
from ctlib.lake.compaction import GRACE
from ctlib.lake.files import Lake, write_range
from ctlib.lake.manifest import live_files
from ctlib.lake.reading import register
from tests.paths import PROJECT_ROOT
from tests.unit.test_compaction import (
    CLOSED,
    ENTRIES,
    ERROR_EVERY,
    SLUG,
    TODAY,
    _certs,
    sample_certs,  # noqa: F401 (the fixture)
    write_ranges,
)

WORKER = """
import json, sys
from datetime import date, datetime
import ctlib.lake.compaction as compaction
from ctlib.lake.files import Lake

args = json.loads(sys.argv[1])
compaction._reached = lambda step: print(step, flush=True)
print("ready", flush=True)
report = compaction.compact_log(Lake.open(args["lake"]), args["slug"], first_index=0, next_index=args["next_index"],
                                mmd_seconds=0, today=date.fromisoformat(args["today"]),
                                now=datetime.fromisoformat(args["now"]))
print("done", report.count("compacted"), report.deleted, flush=True)
"""
KILLS = [("merged", 1), ("deleted", 3), ("manifest", 1), ("merged", 2), ("deleted", 1), ("manifest", 3),
         ("merged", 4), ("deleted", 7), ("manifest", 2)]
"""Where each round's process is killed: right after the n-th time it reports a step."""


def compact(location: str, next_index: int, now: datetime, kill_after: tuple[str, int] | None) -> list[str]:
    """Run compact_log in a process; SIGKILL it right after it reports the step `kill_after`
    = (step, n) for the n-th time (None: let it finish). Returns the lines it printed."""
    args = json.dumps({"lake": location, "slug": SLUG, "next_index": next_index, "today": TODAY.isoformat(),
                       "now": now.isoformat()})
    proc = subprocess.Popen([sys.executable, "-c", WORKER, args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")})
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if kill_after is not None and lines.count(kill_after[0]) == kill_after[1]:
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    if kill_after is None:
        assert proc.returncode == 0 and lines[-1].startswith("done"), lines
    return lines


def indexes(lake: Lake, table: str) -> list[int]:
    con = duckdb.connect()
    register(con, "t", lake, table, live_files(lake, table))
    return [i for (i,) in con.sql("select index from t order by index").fetchall()]


def test_compaction_killed_after_each_kind_of_step_never_shows_a_row_twice_or_not_at_all(lake_location, sample_certs):  # noqa: F811
    lake = Lake.open(lake_location)
    write_ranges(lake, sample_certs, 0, ENTRIES)
    expected = {"certs": [i for i in range(ENTRIES) if i % ERROR_EVERY],
                "errors": [i for i in range(ENTRIES) if not i % ERROR_EVERY]}
    next_index, now = ENTRIES, datetime.now(UTC)
    killed_after: list[str] = []
    for round_, kill_after in enumerate(KILLS):
        if round_:  # late entries in every closed day: something to merge (and, next round, to delete)
            for day in CLOSED:
                late = list(range(next_index, next_index + 2))
                at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=5)
                write_range(lake, "certs", SLUG, next_index, next_index + 2, _certs(sample_certs, late, at=at))
                expected["certs"] += late
                next_index += 2
        lines = compact(lake_location, next_index, now, kill_after=kill_after)
        steps = [x for x in lines if x in ("merged", "manifest", "deleted")]
        if lines and not lines[-1].startswith("done"):
            killed_after.append(steps[-1])
        for table in ("certs", "errors"):
            assert indexes(lake, table) == sorted(expected[table]), f"{table} after round {round_}: {steps}"
        now += GRACE + timedelta(minutes=1)

    assert {"merged", "manifest", "deleted"} <= set(killed_after), killed_after
    compact(lake_location, next_index, now, kill_after=None)
    compact(lake_location, next_index, now + GRACE + timedelta(minutes=1), kill_after=None)
    for table in ("certs", "errors"):
        assert indexes(lake, table) == sorted(expected[table])
        for day in CLOSED:
            directory = layout.partition_dir(lake.root, table, SLUG, day)
            infos = lake.filesystem.get_file_info(pafs.FileSelector(directory))
            names = sorted(i.base_name for i in infos)
            assert len(names) == 2 and names[1] == layout.MANIFEST and layout.parse_merged(names[0]), names
    print(f"killed after: {killed_after}")

