"""ctlib.ops.health: the verdict rules (pure), the table and its file, and `observe` against a
fake log client (unreachable log, backlog age from the first pending entry)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ctlib.ct.client
from ctlib.ct.types import RawEntry, TreeHead
from ctlib.ops.health import (
    LAGGING,
    NOT_STARTED,
    OK,
    STALLED,
    UNREACHABLE,
    Observation,
    Thresholds,
    assess,
    check_logs,
    count_rows,
    failure_message,
    format_table,
    observe,
    to_table,
    write_health,
)
from ctlib.ct.loglist import CTLog
from ctlib.settings import Settings
from ctlib.lake.files import Lake, write_file, write_incident
from ctlib.lake.layout import HEALTH_SCHEMA
from ctlib.ingest.state import LogState, MemoryStateStore
from ctlib.testing.certs import CertFactory

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMITS = Thresholds(max_lag_seconds=900, stall_seconds=1800)


def obs(**kwargs) -> Observation:
    """A log 10 entries behind, oldest pending 60 s old, progress 30 s ago."""
    base = dict(slug="log_a", log_id="aWQ=", checked_at=NOW, next_index=100, tree_size=110,
                last_progress_at=NOW - timedelta(seconds=30), tree_head_at=NOW - timedelta(seconds=5),
                oldest_pending_at=NOW - timedelta(seconds=60))
    return Observation(**(base | kwargs))


# --------------------------------------------------------------------------- verdicts


def test_caught_up_log_is_ok_even_when_idle_for_long():
    h = assess(obs(next_index=110, oldest_pending_at=None, last_progress_at=NOW - timedelta(days=2)), LIMITS)
    assert (h.status, h.failing, h.lag_entries, h.lag_seconds) == (OK, False, 0, 0.0)
    assert h.since_progress_seconds == 2 * 86400


def test_small_backlog_within_thresholds_is_ok():
    h = assess(obs(), LIMITS)
    assert (h.status, h.failing, h.lag_entries, h.lag_seconds, h.since_progress_seconds) == (OK, False, 10, 60.0, 30.0)


def test_old_pending_entry_is_lagging_and_failing():
    h = assess(obs(oldest_pending_at=NOW - timedelta(seconds=901)), LIMITS)
    assert (h.status, h.failing, h.lag_seconds) == (LAGGING, True, 901.0)


def test_backlog_without_progress_is_stalled_before_lagging():
    h = assess(obs(oldest_pending_at=NOW - timedelta(hours=2), last_progress_at=NOW - timedelta(seconds=1801)), LIMITS)
    assert (h.status, h.failing) == (STALLED, True)
    assert assess(obs(last_progress_at=NOW - timedelta(seconds=1800)), LIMITS).status == OK, "threshold is exclusive"


def test_backlog_of_unknown_age_fails_only_when_stalled():
    assert assess(obs(oldest_pending_at=None), LIMITS).failing is False
    h = assess(obs(oldest_pending_at=None, last_progress_at=NOW - timedelta(hours=1)), LIMITS)
    assert (h.status, h.failing, h.lag_seconds) == (STALLED, True, None)


def test_unreachable_log_fails_only_after_the_stall_threshold():
    recent = assess(obs(tree_size=None, tree_head_at=None, oldest_pending_at=None, problem="tree head: timeout"), LIMITS)
    assert (recent.status, recent.failing, recent.lag_entries, recent.lag_seconds) == (UNREACHABLE, False, None, None)
    stale = assess(replace(recent.observation, last_progress_at=NOW - timedelta(hours=1)), LIMITS)
    assert (stale.status, stale.failing) == (UNREACHABLE, True)


def test_log_without_state_is_not_started_and_never_failing():
    h = assess(obs(next_index=None, last_progress_at=None, oldest_pending_at=None, tree_size=None), LIMITS)
    assert (h.status, h.failing, h.lag_entries) == (NOT_STARTED, False, None)


def test_rolled_back_tree_is_not_a_negative_lag():
    assert assess(obs(tree_size=90, oldest_pending_at=None), LIMITS).lag_entries == 0


def test_failure_message_names_each_failing_log_with_its_figures():
    healths = [
        assess(obs(slug="fine"), LIMITS),
        assess(obs(slug="slow_log", oldest_pending_at=NOW - timedelta(seconds=3600)), LIMITS),
        assess(obs(slug="dead_log", tree_size=None, last_progress_at=NOW - timedelta(hours=2), problem="tree head: refused"), LIMITS),
    ]
    message = failure_message(healths)
    assert message.startswith("2 CT log(s) unhealthy")
    assert "slow_log (lagging, 10 entries behind, oldest pending 3600 s old, last progress 30 s ago)" in message
    assert "dead_log (unreachable" in message and "tree head: refused" in message
    assert "fine" not in message
    assert failure_message(healths[:1]) is None


# --------------------------------------------------------------------------- output


def test_rows_follow_the_schema_and_land_in_a_day_partition(tmp_path):
    healths = [assess(obs(), LIMITS), assess(obs(slug="b", next_index=None, tree_size=None), LIMITS)]
    table = to_table(healths)
    assert table.schema == HEALTH_SCHEMA and table.num_rows == 2
    path = write_health(Lake.open(str(tmp_path)), healths, NOW)
    assert path.endswith(f"health/date=2026-03-01/{int(NOW.timestamp() * 1000):013d}.parquet")
    back = pq.ParquetFile(path).read().to_pylist()
    assert back[0]["status"] == OK and back[0]["lag_entries"] == 10 and back[0]["lag_seconds"] == 60.0
    assert back[1]["status"] == NOT_STARTED and back[1]["next_index"] is None


def test_text_table_for_the_task_log():
    text = format_table([assess(obs(), LIMITS), assess(obs(slug="slow", oldest_pending_at=NOW - timedelta(hours=1)), LIMITS)])
    header, first, second = text.splitlines()
    assert header.split()[:3] == ["log", "status", "fail"]
    assert first.split()[:2] == ["log_a", "ok"] and second.split()[:3] == ["slow", "lagging", "FAIL"]


def test_error_and_incident_rows_are_counted_from_the_lake(tmp_path):
    lake = Lake.open(str(tmp_path))
    assert count_rows(lake, "errors", "log_a") == 0
    from ctlib.lake.layout import ERRORS_SCHEMA

    errors = pa.Table.from_pylist([{"log_id": "aWQ=", "log_slug": "log_a", "index": i, "timestamp": NOW, "reason": "x",
                                    "leaf_input_b64": "", "extra_data_b64": "", "ingested_at": NOW} for i in range(3)],
                                  schema=ERRORS_SCHEMA)
    write_file(lake, lake.path("errors", "log=log_a", "date=2026-03-01"), "000000000000-000000000010.parquet", errors)
    write_incident(lake, {"log_id": "aWQ=", "log_slug": "log_a", "timestamp": NOW, "kind": "fork", "details": "x",
                          "tree_size": 5, "verified_size": 4, "signed": None})
    assert (count_rows(lake, "errors", "log_a"), count_rows(lake, "incidents", "log_a")) == (3, 1)


# --------------------------------------------------------------------------- observing


class FakeClient:
    def __init__(self, size: int, entries: dict[int, bytes], fail: Exception | None = None):
        self.size, self.entries, self.fail, self.asked, self.closed = size, entries, fail, [], False

    def tree_head(self) -> TreeHead:
        if self.fail:
            raise self.fail
        return TreeHead(self.size, int(NOW.timestamp() * 1000) - 5000, b"\0" * 32, "")

    def fetch_range(self, start, end, *, batch, in_flight):
        self.asked.append((start, end, batch, in_flight))
        yield [RawEntry(i, self.entries[i], b"") for i in range(start, min(end, start + batch))]

    def close(self):
        self.closed = True


def _log(kind: str = "rfc6962") -> CTLog:
    return CTLog(description="Log A", slug="log_a", operator="Op", log_id="aWQ=", key="a2V5", kind=kind,
                 url="https://log.example/", state="usable", mmd=86400)


@pytest.fixture(scope="module")
def pending_leaf() -> tuple[bytes, datetime]:
    at = NOW - timedelta(minutes=20)
    return CertFactory(seed=3).next_entry(int(at.timestamp() * 1000)).leaf_input, at


@pytest.mark.parametrize("kind, asked_end", [("rfc6962", 301), ("static", 512)])
def test_observe_reads_the_age_of_the_first_pending_entry(kind, asked_end, pending_leaf, tmp_path, monkeypatch):
    leaf, at = pending_leaf
    client = FakeClient(size=700, entries={300: leaf})
    monkeypatch.setattr(ctlib.ct.client, "open_client", lambda log, settings: client)
    state = LogState(next_index=300, tree_size=650, first_index=0, updated_at=(NOW - timedelta(minutes=1)).isoformat())
    o = observe(_log(kind), state, Settings.from_env({}), Lake.open(str(tmp_path)), NOW)
    assert (o.tree_size, o.next_index, o.oldest_pending_at, o.problem) == (700, 300, at, "")
    # Tiled logs: the whole tile holding next_index, never a partial tile nobody published.
    assert client.asked == [(300, asked_end, 1, 1)] and client.closed
    h = assess(o, LIMITS)
    assert (h.status, h.lag_entries, h.lag_seconds) == (LAGGING, 400, 1200.0)


def test_observe_records_an_unreachable_log_instead_of_raising(tmp_path, monkeypatch):
    from ctlib.http import HttpError

    client = FakeClient(size=0, entries={}, fail=HttpError("log_a: connection refused"))
    monkeypatch.setattr(ctlib.ct.client, "open_client", lambda log, settings: client)
    state = LogState(next_index=5, tree_size=5, first_index=0, updated_at=(NOW - timedelta(hours=1)).isoformat())
    o = observe(_log(), state, Settings.from_env({}), Lake.open(str(tmp_path)), NOW)
    assert o.tree_size is None and "connection refused" in o.problem and client.closed
    assert assess(o, LIMITS).status == UNREACHABLE and assess(o, LIMITS).failing


def test_check_logs_uses_short_http_retries_and_reads_state_first(tmp_path, monkeypatch):
    seen = []

    def open_client(log, settings):
        seen.append((settings.http_retries, settings.http_max_backoff))
        return FakeClient(size=10, entries={})

    monkeypatch.setattr(ctlib.ct.client, "open_client", open_client)
    store = MemoryStateStore()
    store.save("log_a", LogState(next_index=10, tree_size=10, first_index=0))
    healths = check_logs([_log(), replace(_log(), slug="log_b")], Settings.from_env({}), store,
                         Lake.open(str(tmp_path)), NOW)
    assert [(h.slug, h.status) for h in healths] == [("log_a", OK), ("log_b", NOT_STARTED)]
    assert seen == [(2, 5.0), (2, 5.0)]


# --------------------------------------------------------------------------- any lake: local and S3


def _errors(indexes) -> pa.Table:
    from ctlib.lake.layout import ERRORS_SCHEMA

    return pa.Table.from_pylist([{"log_id": "aWQ=", "log_slug": "log_a", "index": i, "timestamp": NOW, "reason": "x",
                                  "leaf_input_b64": "", "extra_data_b64": "", "ingested_at": NOW} for i in indexes],
                                schema=ERRORS_SCHEMA)


def test_counts_follow_the_live_files_on_a_local_and_an_s3_lake(lake_location):
    """A compacted errors partition counts once: its merged file, not the range files the
    manifest absorbed (still there), nor a merged file no manifest names."""
    from ctlib.lake import layout
    from ctlib.lake.manifest import Manifest, write_manifest

    lake = Lake.open(lake_location)
    assert count_rows(lake, "errors", "log_a") == 0
    day = layout.partition_dir(lake.root, layout.ERRORS, "log_a", NOW.date())
    r1, r2, r3 = (layout.range_file_name(s, e) for s, e in ((0, 10), (10, 20), (20, 30)))
    write_file(lake, day, r1, _errors([1, 2, 3]))
    write_file(lake, day, r2, _errors([15, 16]))
    merged = layout.merged_file_name(0, 20, 1)
    write_file(lake, day, merged, _errors([1, 2, 3, 15, 16]))  # not live before its manifest
    write_file(lake, day, layout.merged_file_name(0, 30, 2), _errors([1, 2, 3, 15, 16, 25]))  # never live
    write_file(lake, day, r3, _errors([25]))
    assert count_rows(lake, "errors", "log_a") == 6
    write_manifest(lake, day, Manifest(generation=1, file=merged, rows=5, first=0, end=20,
                                       absorbed=frozenset([r1, r2])))
    assert count_rows(lake, "errors", "log_a") == 6  # merged + r3; r1, r2 absorbed
    write_file(lake, layout.partition_dir(lake.root, layout.ERRORS, "log_a", NOW.date() + timedelta(days=1)),
               layout.range_file_name(30, 40), _errors([31]))
    assert count_rows(lake, "errors", "log_a") == 7
    for kind in ("fork", "rollback"):
        write_incident(lake, {"log_id": "aWQ=", "log_slug": "log_a", "timestamp": NOW, "kind": kind, "details": "x",
                              "tree_size": 5, "verified_size": 4, "signed": None})
    assert (count_rows(lake, "incidents", "log_a"), count_rows(lake, "incidents", "log_b")) == (2, 0)


def test_observe_and_write_health_on_a_local_and_an_s3_lake(lake_location, pending_leaf, monkeypatch):
    from ctlib.lake import layout
    from ctlib.lake.files import write_json
    from ctlib.lake.manifest import live_files
    from ctlib.lake.reading import dataset

    leaf, at = pending_leaf
    monkeypatch.setattr(ctlib.ct.client, "open_client", lambda log, settings: FakeClient(size=700, entries={300: leaf}))
    lake = Lake.open(lake_location)
    write_file(lake, layout.partition_dir(lake.root, layout.ERRORS, "log_a", NOW.date()), layout.range_file_name(0, 9),
               _errors([4, 5]))
    state = LogState(next_index=300, tree_size=650, first_index=0, updated_at=(NOW - timedelta(minutes=1)).isoformat())
    o = observe(_log(), state, Settings.from_env({}), lake, NOW)
    assert (o.errors, o.incidents, o.tree_size, o.oldest_pending_at, o.problem) == (2, 0, 700, at, "")
    path = write_health(lake, [assess(o, LIMITS)], NOW)
    [written] = live_files(lake, layout.HEALTH)
    assert written.path == path and written.name == layout.health_file_name(NOW)
    back = dataset(lake, layout.HEALTH, [written]).to_table().to_pylist()
    assert [(r["log_slug"], r["status"], r["errors"], r["lag_entries"]) for r in back] == [("log_a", LAGGING, 2, 400)]

    # A manifest that cannot be read: recorded as the observation's problem, the rest observed.
    write_json(lake, layout.partition_dir(lake.root, layout.ERRORS, "log_a", NOW.date()) + "/" + layout.MANIFEST, {})
    o = observe(_log(), state, Settings.from_env({}), lake, NOW)
    assert o.errors == 0 and o.problem.startswith("lake: ManifestError") and layout.MANIFEST in o.problem
    assert (o.tree_size, o.oldest_pending_at) == (700, at)
    assert "lake: ManifestError" in to_table([assess(o, LIMITS)]).column("detail")[0].as_py()
