"""The downstream watermarks (ctlib.downstream.progress): their stores, the planning of a run's
range (a first-seen log, the cap, a pending range redone, nothing to do), manual cells and
malformed values; and the range reader (ctlib.downstream.ranges) over a real lake, local and
on a local S3 server, before and after a day is merged under a manifest."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.downstream.progress import (
    ENRICH,
    SCORE,
    WATCH,
    MappingProgressStore,
    MemoryProgressStore,
    Progress,
    ProgressError,
    Work,
    begun,
    committed,
    manual_cells,
    parse_key,
    plan_range,
    progress_key,
)
from ctlib.downstream.ranges import RangeError, listing_days, read_entries, read_indexes, read_rows
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file, write_range
from ctlib.lake.manifest import Manifest, live_files, write_manifest
from ctlib.ops.audit.downstream import WatermarkError, score_watermark, score_watermarks
from ctlib.testing.certs import CertFactory

# --------------------------------------------------------------------------- the record and its stores


def test_a_watermark_round_trips_through_its_json():
    progress = Progress(next_index=120, pending=(120, 300), day=date(2026, 12, 5))
    text = json.dumps(progress.to_json())
    assert json.loads(text) == {"next_index": 120, "pending": [120, 300], "day": "2026-12-05",
                                "updated_at": progress.updated_at}
    assert Progress.from_json(text, "k") == progress
    assert Progress.from_json({"next_index": 7}, "k") == Progress(7, None, None, "")


def test_keys_name_the_consumer_and_the_log():
    assert progress_key(SCORE, "google_argon2026h1_log") == "ct_downstream__score__google_argon2026h1_log"
    assert parse_key("ct_downstream__enrich__a_log") == (ENRICH, "a_log")
    assert parse_key("ct_downstream__other__a_log") is None and parse_key("ct_state__a_log") is None
    with pytest.raises(ValueError, match="no downstream consumer 'scores'"):
        progress_key("scores", "a_log")


@pytest.mark.parametrize("value, why", [
    ("{not json", "is not JSON"),
    ('{"pending": null}', "has no next_index"),
    ("[1, 2]", "has no next_index"),
    ('{"next_index": "12"}', "next_index '12' is not an integer"),
    ('{"next_index": -1}', "next_index -1 < 0"),
    ('{"next_index": 5, "pending": [5]}', r"pending \[5\] is not \[start, end\]"),
    ('{"next_index": 5, "pending": [9, 9]}', "is not a range"),
    ('{"next_index": 5, "day": "05/12/2026"}', "malformed"),
])
def test_a_malformed_watermark_names_its_variable(value, why):
    key = "ct_downstream__watch__a_log"
    with pytest.raises(ProgressError, match=f"{key} .*{why}|{key} {why}"):
        Progress.from_json(value, key)
    with pytest.raises(ProgressError, match=key):
        MappingProgressStore({key: value})


def test_the_mapping_store_reads_an_export_of_variables_and_is_read_only():
    exported = {
        "ct_downstream__score__a_log": json.dumps({"next_index": 10, "pending": None, "day": "2026-12-01"}),
        "ct_downstream__watch__a_log": {"next_index": 4, "pending": [4, 8]},
        "ct_downstream__score__b_log": {"next_index": 0},
        "ct_state__a_log": {"next_index": 99},  # the ingest's: ignored
        "unrelated": "x",
    }
    store = MappingProgressStore(exported)
    assert store.slugs(SCORE) == ["a_log", "b_log"] and store.slugs(ENRICH) == []
    assert store.load(SCORE, "a_log").day == date(2026, 12, 1)
    assert store.load(WATCH, "a_log").pending == (4, 8)
    assert store.load(WATCH, "b_log") is None
    with pytest.raises(ProgressError, match="read-only"):
        store.save(SCORE, "a_log", Progress(11))
    with pytest.raises(ProgressError, match="JSON object"):
        MappingProgressStore(["ct_downstream__score__a_log"])  # type: ignore[arg-type]


def test_the_audit_reads_the_watermarks_the_consumers_write():
    """ops and downstream do not import each other: the audit parses the score watermark on
    its own, and must agree with what progress writes."""
    progress = Progress(next_index=4242, pending=(4242, 5000), day=date(2026, 12, 5))
    key = progress_key(SCORE, "a_log")
    values = {key: json.dumps(progress.to_json()), progress_key(WATCH, "a_log"): json.dumps(Progress(7).to_json())}
    assert score_watermarks(values) == {"a_log": 4242}
    with pytest.raises(WatermarkError, match=key):
        score_watermark('{"next_index": "x"}', key)


# --------------------------------------------------------------------------- planning


def test_a_log_first_seen_starts_at_its_first_index_and_the_cap_bounds_a_run():
    progress, work = plan_range("a_log", None, first_index=1000, available=1500, cap=200)
    assert progress.next_index == 1000 and progress.pending is None
    assert work == Work("a_log", 1000, 1200)
    progress, work = plan_range("a_log", Progress(1200), first_index=1000, available=1500, cap=200)
    assert work == Work("a_log", 1200, 1400)
    _, work = plan_range("a_log", Progress(1400), first_index=1000, available=1500, cap=200)
    assert work == Work("a_log", 1400, 1500)


def test_nothing_to_do_when_the_watermark_has_caught_up():
    assert plan_range("a_log", Progress(1500), first_index=0, available=1500)[1] is None
    assert plan_range("a_log", None, first_index=1500, available=1500)[1] is None


def test_a_pending_range_is_redone_exactly_whatever_came_since():
    stored = Progress(100, pending=(100, 180))
    _, work = plan_range("a_log", stored, first_index=0, available=10_000, cap=50)
    assert work == Work("a_log", 100, 180, reused=True), "the same range, not a new one capped or grown"
    # A pending range that does not start at next_index (stale: committed since) is ignored.
    _, work = plan_range("a_log", Progress(180, pending=(100, 180)), first_index=0, available=300)
    assert work == Work("a_log", 180, 300)


def test_a_run_saves_its_range_as_pending_then_commits_it():
    store = MemoryProgressStore()
    progress, work = plan_range("a_log", store.load(SCORE, "a_log"), first_index=5, available=50)
    store.save(SCORE, "a_log", begun(progress, work))
    assert store.load(SCORE, "a_log").pending == (5, 50) and store.load(SCORE, "a_log").next_index == 5
    # The attempt fails; the next run finds and redoes the pending range.
    again, redo = plan_range("a_log", store.load(SCORE, "a_log"), first_index=5, available=80)
    assert redo == Work("a_log", 5, 50, reused=True)
    store.save(SCORE, "a_log", committed(again, redo, date(2026, 12, 3)))
    done = store.load(SCORE, "a_log")
    assert (done.next_index, done.pending, done.day) == (50, None, date(2026, 12, 3))
    # The day only moves forward (a range of older entries, or one with none, keeps it).
    later = committed(begun(done, Work("a_log", 50, 80)), Work("a_log", 50, 80), date(2026, 12, 1))
    assert later.day == date(2026, 12, 3) and committed(later, Work("a_log", 80, 90), None).day == date(2026, 12, 3)
    with pytest.raises(ProgressError, match="cannot commit"):
        committed(later, Work("a_log", 10, 20), None)
    assert store.load(WATCH, "a_log") is None, "each consumer has its own watermark"


def test_manual_runs_are_whole_cells_below_the_limit():
    assert manual_cells(100, 200, 100_000, 8192) == [(0, 8192)]
    assert manual_cells(8000, 8300, 100_000, 8192) == [(0, 8192), (8192, 16384)]
    assert manual_cells(100, 200, 5000, 8192) == [(0, 5000)], "clipped to the limit (first_index)"
    assert manual_cells(0, 5000, 5000, 8192) == manual_cells(4000, 4001, 5000, 8192), "the same files"
    with pytest.raises(ValueError, match="reaches 5000"):
        manual_cells(4000, 6000, 5000, 8192)
    with pytest.raises(ValueError, match="start_index < end_index"):
        manual_cells(10, 10, 5000, 8192)


# --------------------------------------------------------------------------- reading a range

DAY0 = date(2026, 12, 1)


def _ms(day: date, hour: int) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def certs_lake(lake_location):
    """Entries [0, 60) of log `a_log` over three days (20 a day), written as ingest writes
    them: ranges of 15 entries, one file per range and day. Index 33 is undecodable (errors,
    with no timestamp: the 1970-01-01 partition)."""
    factory = CertFactory(seed=11)
    lake = Lake.open(lake_location)
    raws = []
    for i in range(60):
        entry = factory.next_entry(_ms(DAY0 + timedelta(days=i // 20), i % 20))
        raws.append(RawEntry(i, entry.leaf_input, entry.extra_data))
    batch = decode_entries(LogRef("bG9n", "a_log"), raws, datetime.now(UTC))
    certs = batch.certs.filter(pc.not_equal(batch.certs.column("index"), 33))
    error = pa.Table.from_pylist([{"log_id": "bG9n", "log_slug": "a_log", "index": 33, "timestamp": None,
                                   "reason": "a_log index 33: test", "leaf_input_b64": "", "extra_data_b64": "",
                                   "ingested_at": datetime.now(UTC)}], schema=layout.ERRORS_SCHEMA)
    for start in range(0, 60, 15):
        rows = certs.filter(pc.and_(pc.greater_equal(certs.column("index"), start),
                                    pc.less(certs.column("index"), start + 15)))
        write_range(lake, layout.CERTS, "a_log", start, start + 15, rows)
    write_range(lake, layout.ERRORS, "a_log", 30, 45, error)
    return lake


def _merge_day(lake: Lake, day: date) -> None:
    """What compaction does to a closed day: one merged file of its rows, named by its span,
    and the manifest absorbing the range files (left in place: a reader must skip them)."""
    files = live_files(lake, layout.CERTS, slug="a_log", days=[day])
    from ctlib.lake.reading import dataset

    rows = dataset(lake, layout.CERTS, files).to_table().select(layout.CERTS_SCHEMA.names).sort_by("index")
    first, end = min(f.span[0] for f in files), max(f.span[1] for f in files)
    directory = layout.partition_dir(lake.root, layout.CERTS, "a_log", day)
    name = layout.merged_file_name(first, end, 1)
    write_file(lake, directory, name, rows)
    write_manifest(lake, directory, Manifest(generation=1, file=name, rows=rows.num_rows, first=first, end=end,
                                             absorbed=frozenset(f.name for f in files)))


def test_listing_days_reach_back_the_mmd_and_forward_a_day():
    assert listing_days(None, DAY0) is None
    assert listing_days(DAY0, DAY0) == [DAY0 - timedelta(days=1), DAY0, DAY0 + timedelta(days=1)]
    assert listing_days(DAY0, DAY0 + timedelta(days=1), mmd_seconds=2 * 86400)[0] == DAY0 - timedelta(days=2)


def test_a_range_reads_each_entry_once_before_and_after_its_days_are_merged(certs_lake):
    lake = certs_lake
    today = DAY0 + timedelta(days=2)
    before = read_entries(lake, "a_log", 10, 50, columns=["dns_names"], since=None, today=today)
    assert before.rows.column("index").to_pylist() == [i for i in range(10, 50) if i != 33]
    assert before.newest_day == DAY0 + timedelta(days=2) and before.rows.column_names == ["index", "dns_names"]
    _merge_day(lake, DAY0)
    _merge_day(lake, DAY0 + timedelta(days=1))
    after = read_entries(lake, "a_log", 10, 50, columns=["dns_names"], since=DAY0 + timedelta(days=1), today=today)
    assert after.rows.equals(before.rows)
    assert any(layout.parse_merged(p.rpartition("/")[2]) for p in after.files), "read through the merged file"
    # Only the files whose span meets the range are read.
    small = read_entries(lake, "a_log", 50, 60, columns=[], since=None, today=today)
    assert small.rows.column("index").to_pylist() == list(range(50, 60)) and len(small.files) == 1
    tbs = read_indexes(lake, layout.CERTS, "a_log", [12, 47], columns=["tbs_sha256"], days=None)
    assert sorted(tbs.column("index").to_pylist()) == [12, 47]


def test_an_entry_outside_the_listed_days_is_found_and_a_missing_one_is_an_error(certs_lake):
    lake = certs_lake
    today = DAY0 + timedelta(days=30)
    # `since` claims the newest entry was a month later: the listing misses every day, then
    # reads every day of the log rather than skip committed entries.
    late = read_entries(lake, "a_log", 0, 60, columns=[], since=today, today=today)
    assert late.rows.num_rows == 59
    directory = layout.partition_dir(lake.root, layout.CERTS, "a_log", DAY0 + timedelta(days=1))
    lake.filesystem.delete_file(f"{directory}/{layout.range_file_name(15, 30)}")
    with pytest.raises(RangeError, match=r"a_log: .* \[0, 60\) .*first missing index is 20"):
        read_entries(lake, "a_log", 0, 60, columns=[], since=None, today=today)
    # Without the completeness check (a manual run over history), what is there is read.
    assert read_entries(lake, "a_log", 0, 60, columns=[], since=None, today=today, complete=False).rows.num_rows == 49


def test_rows_sharing_an_index_are_all_read_from_a_sparse_table(lake_location):
    lake = Lake.open(lake_location)
    base = {"log_id": "bG9n", "log_slug": "a_log", "cert_sha256": "c", "entry_type": "x509", "issuer_org": None,
            "registered_domain": "d.example", "brand": None, "score": 80.0, "alert": True, "rules": [],
            "scored_at": datetime.now(UTC)}
    at = datetime(2026, 12, 1, 5, tzinfo=UTC)
    rows = [{**base, "index": i, "name": name, "timestamp": at}
            for i, name in ((3, "a.d.example"), (7, "a.d.example"), (7, "b.d.example"))]
    write_range(lake, layout.ALERTS, "a_log", 0, 10, pa.Table.from_pylist(rows, schema=layout.SCORES_SCHEMA))
    found = read_rows(lake, layout.ALERTS, "a_log", 5, 10, columns=["name"], since=DAY0, today=DAY0)
    assert found.rows.to_pylist() == [{"index": 7, "name": "a.d.example"}, {"index": 7, "name": "b.d.example"}]
    assert found.newest_day == DAY0


# --------------------------------------------------------------------------- the audit's downstream check


def test_the_audit_fails_naming_the_log_the_consumer_and_the_first_missing_or_doubled_index(certs_lake, tmp_path):
    """ct_score's output over a lake, then broken three ways: the audit (`python -m
    ctlib.audit --state-json`) passes, then fails and says where."""
    import contextlib
    import io

    from ctlib.downstream.score import Scorer
    from ctlib.downstream.scoring import CERT_COLUMNS, score_range
    from ctlib.ops.audit import main

    lake = certs_lake
    today = DAY0 + timedelta(days=2)
    scorer = Scorer()
    for start, end in ((0, 30), (30, 60)):
        rows = read_entries(lake, "a_log", start, end, columns=CERT_COLUMNS, since=None, today=today).rows
        score_range(lake, "a_log", start, end, rows, scorer)
    variables = tmp_path / "variables.json"
    variables.write_text(json.dumps({
        "ct_state__a_log": {"next_index": 60, "first_index": 0, "tree_size": 60},
        progress_key(SCORE, "a_log"): Progress(next_index=60).to_json(),
    }))

    def audit() -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(["--state-json", str(variables), "--lake", lake.uri(lake.root), "--log", "a_log"])
        return code, out.getvalue()

    code, report = audit()
    assert code == 0 and "a_log: downstream score: [0, 60) checked: 59 of 59" in report, report

    scores = {f.name: f for f in live_files(lake, layout.SCORES, slug="a_log")
              if f.day == DAY0 + timedelta(days=1) and f.span == (0, 30)}
    (lost,) = scores.values()  # entries 20..29: day 2 of the range [0, 30)
    kept = lake.filesystem.open_input_file(lost.path).readall()
    lake.filesystem.delete_file(lost.path)
    code, report = audit()
    assert code == 1 and "a_log: downstream score: 10 certificate(s) with a name below its watermark 60 have no " \
                         "scores rows; the first at index 20" in report, report

    # Back, and a copy of it under another range's name: every (index, name) of it twice.
    with lake.filesystem.open_output_stream(lost.path) as out:
        out.write(kept)
    copy = lost.path.replace(layout.range_file_name(0, 30), layout.range_file_name(20, 30))
    with lake.filesystem.open_output_stream(copy) as out:
        out.write(kept)
    code, report = audit()
    assert code == 1 and "a_log: downstream score: " in report and "scored more than once; the first at index 20" \
        in report, report
    lake.filesystem.delete_file(copy)

    # An alert that is no scores row.
    alert = pa.Table.from_pylist([{"log_id": "bG9n", "log_slug": "a_log", "index": 5, "timestamp": datetime(
        2026, 12, 1, 5, tzinfo=UTC), "cert_sha256": "c", "entry_type": "x509", "issuer_org": None,
        "name": "not-a-name-of-5.example", "registered_domain": "example", "brand": None, "score": 99.0,
        "alert": True, "rules": [], "scored_at": datetime.now(UTC)}], schema=layout.SCORES_SCHEMA)
    write_range(lake, layout.ALERTS, "a_log", 5, 6, alert)
    code, report = audit()
    assert code == 1 and "1 alerts row(s) not in scores; the first at index 5 (not-a-name-of-5.example)" in report, \
        report
