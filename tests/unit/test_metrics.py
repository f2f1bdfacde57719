"""The monitor's series on made-up states (ctlib.airflow.monitor.snapshot and .metrics) and
the per-run counters behind its totals (ctlib.ops.counters): exact series and values; a run
recorded twice counts once."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ctlib.airflow.monitor.metrics import exposition
from ctlib.airflow.monitor.snapshot import HealthRow, LogSnapshot, build_snapshots, parse_states
from ctlib.ct.loglist import CTLog
from ctlib.ingest.state import LogState
from ctlib.ops import counters
from ctlib.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({"CT_HEALTH_MAX_LAG_SECONDS": "900", "CT_HEALTH_STALL_SECONDS": "1800"})


def ctlog(slug: str, kind: str = "rfc6962", operator: str = "Op") -> CTLog:
    return CTLog(description=f"{slug} log", slug=slug, operator=operator, log_id="aWQ=", key="a2V5", kind=kind,  # type: ignore[arg-type]
                 url=f"https://{slug}.example/", state="usable", mmd=86400)


def state(next_index: int, tree_size: int, *, ago: float = 30, entries: int = 0, errors: int = 0) -> LogState:
    return LogState(next_index=next_index, tree_size=tree_size, first_index=0, entries_ingested=entries,
                    errors_ingested=errors, updated_at=(NOW - timedelta(seconds=ago)).isoformat())


def health(next_index: int | None, tree_size: int | None, *, pending_ago: float | None = None, status: str = "ok",
           incidents: int = 0) -> HealthRow:
    pending = NOW - timedelta(seconds=pending_ago) if pending_ago is not None else None
    return HealthRow(NOW - timedelta(seconds=60), status, next_index, tree_size, pending, incidents)


def one(log: CTLog, st: LogState | None, row: HealthRow | None = None) -> LogSnapshot:
    [snap] = build_snapshots([log], {log.slug: st} if st else {}, {log.slug: row} if row else {}, SETTINGS, NOW)
    return snap


# --------------------------------------------------------------------------- snapshot rules


def test_caught_up_log():
    snap = one(ctlog("a"), state(100, 100, entries=100, errors=2), health(100, 100, incidents=1))
    assert snap == LogSnapshot("a", "a log", "Op", "rfc6962", 100, 100, 0, 0.0, NOW - timedelta(seconds=30),
                               100, 2, 1, "ok")


def test_tiled_kind_and_not_started():
    snap = one(ctlog("t", kind="static"), None)
    assert (snap.kind, snap.status, snap.tree_size, snap.next_index, snap.backlog) == ("tiled", "not_started", None, None, None)
    assert (snap.freshness_lag_seconds, snap.last_success, snap.entries_total) == (None, None, 0)


def test_lag_from_the_health_check_at_the_same_watermark():
    snap = one(ctlog("a"), state(100, 100), health(100, 150, pending_ago=120))
    assert (snap.tree_size, snap.backlog, snap.freshness_lag_seconds, snap.status) == (150, 50, 120.0, "ok")


def test_behind_past_the_lag_threshold():
    assert one(ctlog("a"), state(100, 200), health(90, 200, pending_ago=901)).status == "behind"


def test_lag_unknown_without_a_check_that_read_the_pending_entry():
    snap = one(ctlog("a"), state(100, 200))
    assert (snap.backlog, snap.freshness_lag_seconds, snap.status) == (100, None, "ok")
    assert one(ctlog("a"), state(100, 200), health(150, 200, pending_ago=60)).freshness_lag_seconds is None


def test_stalled_with_a_backlog_and_no_progress():
    assert one(ctlog("a"), state(100, 200, ago=1801)).status == "stalled"
    assert one(ctlog("a"), state(200, 200, ago=99999)).status == "ok"  # caught up: nothing to do


def test_failing_when_unreachable_at_this_watermark():
    assert one(ctlog("a"), state(100, 100), health(100, None, status="unreachable")).status == "failing"
    # the watermark moved since the check: the log answers again
    assert one(ctlog("a"), state(120, 120), health(100, None, status="unreachable")).status == "ok"


def test_parse_states_skips_other_keys_and_unreadable_states():
    states = parse_states({"ct_state__a": '{"next_index": 5, "tree_size": 9}', "ct_state__b": "not json",
                           "ct_plan__a": "{}"})
    assert list(states) == ["a"] and states["a"].tree_size == 9


# --------------------------------------------------------------------------- exposition

TWO = [
    LogSnapshot("argon", "Argon", "Google", "rfc6962", 1000, 990, 10, 42.5, datetime(2026, 12, 1, tzinfo=UTC),
                990, 3, 1, "ok"),
    LogSnapshot("tuscolo", "Tuscolo", "Geomys", "tiled", None, None, None, None, None, 0, 0, 0, "not_started"),
]
TOTALS = {"alerts": 7, "watch_matches": 2, "enrichment_calls": 12, "enrichment_failures": 1}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_series_with_exact_names_and_values():
    body, content_type = exposition(TWO, TOTALS)
    assert content_type.startswith("text/plain")
    text = body.decode()
    got = samples(text)
    argon = (("kind", "rfc6962"), ("log", "argon"), ("operator", "Google"))
    tuscolo = (("kind", "tiled"), ("log", "tuscolo"), ("operator", "Geomys"))
    expected_argon = {
        "ct_log_tree_size": 1000, "ct_log_next_index": 990, "ct_log_backlog_entries": 10,
        "ct_log_freshness_lag_seconds": 42.5, "ct_log_last_success_timestamp_seconds": 1796083200.0,  # 2026-12-01T00:00:00Z
        "ct_log_entries_total": 990, "ct_log_errors_total": 3, "ct_log_incidents_total": 1,
    }
    for name, value in expected_argon.items():
        assert got[(name, argon)] == value, name
        assert f"\n{name}{{" in text  # the exposed name is exactly this (counters: one _total)
    for name in ("ct_log_tree_size", "ct_log_next_index", "ct_log_freshness_lag_seconds",
                 "ct_log_last_success_timestamp_seconds"):
        assert math.isnan(got[(name, tuscolo)]), name  # unknown: NaN, the series still there
    for name in ("ct_log_entries_total", "ct_log_errors_total", "ct_log_incidents_total"):
        assert got[(name, tuscolo)] == 0
    assert got[("ct_log_status", (*argon, ("status", "ok")))] == 1
    assert got[("ct_log_status", (*argon, ("status", "stalled")))] == 0
    assert got[("ct_log_status", (*tuscolo, ("status", "not_started")))] == 1
    for name, key in (("ct_alerts_total", "alerts"), ("ct_watch_matches_total", "watch_matches"),
                      ("ct_enrichment_calls_total", "enrichment_calls"),
                      ("ct_enrichment_failures_total", "enrichment_failures")):
        assert got[(name, ())] == TOTALS[key]
        assert f"\n{name} " in text
    assert "# TYPE ct_log_entries_total counter" in text
    assert "# TYPE ct_log_freshness_lag_seconds gauge" in text
    assert "_total_total" not in text and "_created" not in text


def test_openmetrics_when_asked():
    body, content_type = exposition(TWO, TOTALS, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")
    assert 'ct_log_entries_total{kind="rfc6962",log="argon",operator="Google"} 990.0' in body.decode()


# --------------------------------------------------------------------------- counters


def test_a_run_recorded_twice_counts_once():
    doc = counters.record(None, "run1", {"alerts": 3})
    doc = counters.record(doc, "run2", {"alerts": 4})
    again = counters.record(doc, "run1", {"alerts": 3})  # a retry of run1
    assert again["totals"] == {"alerts": 7}
    # a retry that finds nothing new (its first attempt wrote the rows) takes nothing away
    assert counters.record(again, "run2", {"alerts": 0})["totals"] == {"alerts": 7}
    # a retry that finds more adds only the difference
    assert counters.record(again, "run2", {"alerts": 6})["totals"] == {"alerts": 9}


def test_only_the_last_runs_are_kept_and_totals_stay():
    doc = None
    for n in range(5):
        doc = counters.record(doc, f"run{n}", {"watch_matches": 1}, keep=3)
    assert doc is not None
    assert list(doc["runs"]) == ["run2", "run3", "run4"] and doc["totals"] == {"watch_matches": 5}


def test_a_damaged_document_starts_again():
    assert counters.parse("{not json") == {"totals": {}, "runs": {}}
    assert counters.record('{"totals": {"alerts": "x"}, "runs": []}', "r", {"alerts": 1})["totals"] == {"alerts": 1}


def test_totals_of_every_document_and_shard():
    store = counters.MemoryCounterStore()
    counters.record_run(store, "ct_score", "r1", {"alerts": 2})
    counters.record_run(store, "ct_enrich", "r1", counters.enrichment_counts(["ok", "skipped", "rate_limited"]), shard=0)
    counters.record_run(store, "ct_enrich", "r1", counters.enrichment_counts(["not_found", "error"]), shard=1)
    counters.record_run(store, "ct_enrich", "r1", counters.enrichment_counts(["not_found", "error"]), shard=1)
    assert sorted(store.docs) == ["ct_counters__ct_enrich__0", "ct_counters__ct_enrich__1", "ct_counters__ct_score"]
    assert counters.totals_of(store.docs.values()) == {
        "alerts": 2, "watch_matches": 0, "enrichment_calls": 4, "enrichment_failures": 2}


def test_record_quietly_never_fails_and_skips_zeros():
    class Broken(counters.MemoryCounterStore):
        def save(self, key, doc):
            raise RuntimeError("no API server")

    counters.record_quietly("ct_score", "r", {"alerts": 1}, store=Broken())  # logged, not raised
    store = counters.MemoryCounterStore()
    counters.record_quietly("ct_score", "r", {"alerts": 0}, store=store)
    assert store.docs == {}


@pytest.mark.parametrize("statuses, expected", [
    ([], (0, 0)), (["skipped", "skipped"], (0, 0)), (["ok", "not_found"], (2, 0)),
    (["quota_exceeded", "ok", "unavailable"], (3, 2)),
])
def test_enrichment_counts(statuses, expected):
    got = counters.enrichment_counts(statuses)
    assert (got["enrichment_calls"], got["enrichment_failures"]) == expected


# --------------------------------------------------------------------------- the health file, on any lake


def test_snapshots_and_series_from_the_newest_health_file_on_a_local_and_an_s3_lake(lake_location: str):
    """snapshot.latest_health reads the newest ct_health file of the configured lake (a local
    folder or s3://...), not a writer's temporary; the snapshots and series follow it."""
    from ctlib.airflow.monitor import snapshot
    from ctlib.lake import layout
    from ctlib.lake.files import Lake
    from ctlib.ops.health import Observation, Thresholds, assess, write_health

    lake = Lake.open(lake_location)
    settings = Settings.from_env({"CT_LAKE": lake_location, "CT_HEALTH_MAX_LAG_SECONDS": "900",
                                  "CT_HEALTH_STALL_SECONDS": "1800"})
    limits = Thresholds(900, 1800)
    snapshot.clear_cache()
    assert snapshot.latest_health(settings) == {}

    def check(at: datetime, tree_size: int, incidents: int) -> None:
        o = Observation(slug="a", log_id="aWQ=", checked_at=at, next_index=100, tree_size=tree_size,
                        last_progress_at=at, oldest_pending_at=at - timedelta(seconds=120), incidents=incidents)
        write_health(lake, [assess(o, limits)], at)

    check(NOW - timedelta(days=1, minutes=5), 110, 1)  # yesterday's directory
    check(NOW - timedelta(minutes=10), 130, 2)
    check(NOW - timedelta(minutes=5), 150, 3)  # the newest
    today = layout.day_dir(lake.root, layout.HEALTH, NOW.date())
    with lake.filesystem.open_output_stream(f"{today}/.9999999999999.parquet.host-1.x.tmp") as out:
        out.write(b"partial")  # a writer's temporary, named after every check: never read
    rows = snapshot.latest_health(settings)
    assert list(rows) == ["a"]
    assert (rows["a"].checked_at, rows["a"].tree_size, rows["a"].incidents) == (NOW - timedelta(minutes=5), 150, 3)

    [snap] = build_snapshots([ctlog("a")], {"a": state(100, 100)}, rows, settings, NOW)
    assert (snap.tree_size, snap.backlog, snap.freshness_lag_seconds, snap.incidents_total) == (150, 50, 420.0, 3)
    got = samples(exposition([snap], TOTALS)[0].decode())
    labels = (("kind", "rfc6962"), ("log", "a"), ("operator", "Op"))
    assert (got[("ct_log_tree_size", labels)], got[("ct_log_incidents_total", labels)]) == (150, 3)
    snapshot.clear_cache()
