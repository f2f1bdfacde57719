"""Which logs are frozen, and each log's start offset (ctlib.ingest.schedule), on the bundled list."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from ctlib.ct.loglist import frozen_reason, load_log_list, parse_log_list
from ctlib.ingest.schedule import offset_for, period_of, schedule_for, wake_uri
from ctlib.settings import DEFAULT_LOG_LIST, Settings

UTC = timezone.utc
DEC_5 = datetime(2026, 12, 5, tzinfo=UTC)
SETTINGS = Settings.from_env({})


@pytest.fixture(scope="module")
def bundled():
    return load_log_list(DEFAULT_LOG_LIST)


def test_temporal_interval_is_parsed(bundled):
    argon = bundled.by_slug("google_argon2025h2_log")
    assert (argon.interval_start, argon.interval_end, argon.mmd) == ("2025-07-01T00:00:00Z", "2026-01-01T00:00:00Z", 86400)
    tuscolo = bundled.by_slug("geomys_tuscolo2026h2")
    assert tuscolo.kind == "static" and tuscolo.interval_end == "2027-01-01T00:00:00Z" and tuscolo.mmd == 60


def test_frozen_count_on_the_bundled_list(bundled):
    monitored = bundled.monitored()
    assert len(monitored) == 71
    frozen = [log.slug for log in monitored if schedule_for(log, DEC_5, SETTINGS).frozen]
    # 31 monitored logs' intervals ended (plus MMD) by 2026-12-05, and 3 more are read-only
    # with an interval still open (Sectigo Mammoth/Sabre 2026h2, Let's Encrypt Oak 2026h2).
    assert len(frozen) == 34
    ended = [log for log in monitored if log.interval_end and log.interval_end < "2026-12-05"]
    assert len(ended) == 31
    assert {"sectigo_mammoth2026h2", "sectigo_sabre2026h2", "let_s_encrypt_oak2026h2"} <= set(frozen)
    # On the list's own date: the 12 shards that ended 2026-01-01 (+1 day MMD), 2 that ended
    # in December 2025, and the 9 read-only logs (2 of them among those shards).
    assert sum(schedule_for(log, datetime(2026, 1, 2, tzinfo=UTC), SETTINGS).frozen for log in monitored) == 21


def test_interval_end_plus_mmd_both_sides(bundled):
    argon = bundled.by_slug("google_argon2025h2_log")  # usable, ended 2026-01-01, mmd 1 day
    end = datetime(2026, 1, 1, tzinfo=UTC)
    assert frozen_reason(argon, end - timedelta(days=1)) == ""
    assert frozen_reason(argon, end) == "", "still within its MMD: entries may still be added"
    assert frozen_reason(argon, end + timedelta(seconds=86399)) == ""
    assert "MMD" in frozen_reason(argon, end + timedelta(seconds=86400))
    tiled = bundled.by_slug("let_s_encrypt_willow2026h2")  # mmd 60 s, ends 2026-12-16
    end = datetime(2026, 12, 16, tzinfo=UTC)
    assert not schedule_for(tiled, end + timedelta(seconds=59), SETTINGS).frozen
    assert schedule_for(tiled, end + timedelta(seconds=60), SETTINGS).frozen


def test_states(bundled):
    oak = bundled.by_slug("let_s_encrypt_oak2026h2")  # readonly, interval until 2027-01-20
    assert oak.state == "readonly" and frozen_reason(oak, DEC_5) == "its state is readonly"
    live = bundled.by_slug("google_argon2026h2_log")
    assert live.state == "usable" and frozen_reason(live, DEC_5) == ""
    assert frozen_reason(replace(live, state="retired"), DEC_5) == "its state is retired"
    for state in ("pending", "qualified", "usable"):
        assert frozen_reason(replace(live, state=state), DEC_5) == ""


def test_future_and_missing_intervals_are_hot(bundled):
    future = bundled.by_slug("google_argon2027h1")  # qualified, starts 2027-01-01
    assert future.interval_start > "2026-12-05" and not schedule_for(future, DEC_5, SETTINGS).frozen
    assert frozen_reason(replace(future, interval_start="", interval_end=""), datetime(2040, 1, 1, tzinfo=UTC)) == ""


def test_schedules_and_offsets(bundled):
    frozen = schedule_for(bundled.by_slug("google_argon2025h2_log"), DEC_5, SETTINGS)
    assert frozen.frozen and frozen.cron == "0 * * * *" and frozen.wake == wake_uri("google_argon2025h2_log")
    assert timedelta(0) <= frozen.offset < timedelta(hours=1)
    assert "frozen" in frozen.describe() and frozen.wake in frozen.describe()
    live = [schedule_for(log, DEC_5, SETTINGS) for log in bundled.monitored()]
    live = [s for s in live if not s.frozen]
    assert all(s.cron == "* * * * *" and s.wake is None and s.offset < timedelta(minutes=1) for s in live)
    assert len({s.offset for s in live}) > len(live) // 2, "offsets spread over the minute"
    # Deterministic: the same slug always gets the same offset.
    assert offset_for("google_argon2026h2_log", "* * * * *") == offset_for("google_argon2026h2_log", "* * * * *")
    off = Settings.from_env({"CT_SCHEDULE_SPREAD": "false"})
    assert all(schedule_for(log, DEC_5, off).offset == timedelta(0) for log in bundled.monitored())


def test_offset_stays_within_the_cron_period():
    assert period_of("* * * * *") == timedelta(minutes=1)
    assert period_of("*/5 * * * *") == timedelta(minutes=5)
    assert period_of("@hourly") == timedelta(hours=1)
    assert period_of("0,10 * * * *") == timedelta(minutes=10)
    for slug in ("a", "b", "google_argon2026h2_log", "cloudflare_nimbus2026"):
        assert offset_for(slug, "*/5 * * * *") < timedelta(minutes=5)
        assert offset_for(slug, "@daily") < timedelta(hours=1), "at most an hour"
    settings = Settings.from_env({"CT_SCHEDULE": "*/5 * * * *", "CT_FROZEN_SCHEDULE": "30 */6 * * *"})
    assert settings.schedule == "*/5 * * * *" and settings.frozen_schedule == "30 */6 * * *"


def test_malformed_interval_fails_clearly():
    from ctlib.ct.loglist import LogListError
    from tests.support.loglist import one_log_list

    data = one_log_list()
    data["operators"][0]["logs"][0]["temporal_interval"] = {"start_inclusive": "2026-01-01T00:00:00Z"}
    with pytest.raises(LogListError, match="end_exclusive"):
        parse_log_list(data)


def test_a_new_list_wakes_the_frozen_logs_it_changed(bundled):
    from ctlib.ct.loglist import LogList
    from ctlib.ct.loglist_sync import woken_logs

    def changed(**fields):
        return LogList(bundled.version, bundled.timestamp, tuple(
            replace(log, **fields.get(log.slug, {})) for log in bundled.logs))

    after = changed(**{
        "google_argon2025h2_log": {"state": "readonly"},  # frozen, state changed
        "sectigo_mammoth2026h2": {"interval_end": "2027-02-01T00:00:00Z"},  # read-only: frozen, interval changed
        "google_argon2026h2_log": {"state": "readonly"},  # becomes frozen: its DAG is re-parsed hourly
        "google_argon2027h1": {"interval_start": "2027-01-02T00:00:00Z"},  # live: runs every minute anyway
    })
    assert woken_logs(bundled, after, DEC_5) == ["google_argon2025h2_log", "google_argon2026h2_log", "sectigo_mammoth2026h2"]
    assert woken_logs(bundled, bundled, DEC_5) == []
    assert woken_logs(None, after, DEC_5) == [], "no list before: every DAG is new"


def test_backfill_windows_follow_the_schedule_with_no_gap_or_overlap():
    from ctlib.ingest.schedule import LogSchedule, window_of

    utc = timezone.utc
    live = LogSchedule("* * * * *", timedelta(seconds=17), False, "", None)
    runs = [datetime(2026, 12, 1, 9, 58, 17, tzinfo=utc) + timedelta(minutes=k) for k in range(5)]
    windows = [window_of(live, run) for run in runs]
    assert windows[0] == (runs[0], runs[1])
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:])), "each window ends where the next begins"
    frozen = LogSchedule("0 * * * *", timedelta(seconds=1234), True, "retired", "ct://wake/x")
    start = datetime(2026, 12, 1, 9, 20, 34, tzinfo=utc)
    assert window_of(frozen, start) == (start, start + timedelta(hours=1))
    plain = LogSchedule("@hourly", timedelta(), True, "", None)
    assert window_of(plain, datetime(2026, 12, 1, 23, tzinfo=utc))[1] == datetime(2026, 12, 2, tzinfo=utc)
    # A logical date in another zone is the same instant.
    cet = timezone(timedelta(hours=1))
    assert window_of(live, runs[0].astimezone(cet)) == windows[0]


def test_backfill_runs_go_to_the_backfill_pool(monkeypatch):
    from types import SimpleNamespace

    from ctlib.airflow.pools import backfill_pool, route_task_instance

    monkeypatch.delenv("CT_BACKFILL_POOL", raising=False)
    ingest = "ct_ingest__some_log"
    assert backfill_pool(ingest, SimpleNamespace(value="backfill"), "backfill__2026-12-01", {}) == "ct_backfill"
    assert backfill_pool(ingest, None, "backfill__2026-12-01T09:00:00+00:00", None) == "ct_backfill", "run not at hand"
    assert backfill_pool(ingest, "manual", "manual__x", {"start_time": "2026-12-01T09:00:00Z"}) == "ct_backfill"
    assert backfill_pool(ingest, "manual", "manual__x", {"start_index": 0, "end_index": 5}) == "ct_backfill"
    assert backfill_pool(ingest, "scheduled", "scheduled__x", {}) is None
    assert backfill_pool(ingest, "manual", "manual__x", {"start_time": None}) is None
    assert backfill_pool("ct_score", "backfill", "backfill__x", {}) is None, "ingest DAGs only"
    monkeypatch.setenv("CT_BACKFILL_POOL", "history")
    ti = SimpleNamespace(dag_id=ingest, run_id="backfill__x", pool="default_pool")
    route_task_instance(ti, SimpleNamespace(run_type="backfill", run_id="backfill__x", conf={}))
    assert ti.pool == "history"
    live = SimpleNamespace(dag_id=ingest, run_id="scheduled__x", pool="default_pool")
    route_task_instance(live, SimpleNamespace(run_type="scheduled", run_id="scheduled__x", conf={}))
    assert live.pool == "default_pool"


def test_the_cluster_policy_is_registered():
    import airflow.settings as airflow_settings
    from airflow.policies import make_plugin_from_local_settings  # noqa: F401  (the hook spec exists)

    import airflow_local_settings

    assert callable(airflow_local_settings.task_instance_mutation_hook)
    assert "task_instance_mutation_hook" in airflow_local_settings.__all__
    assert hasattr(airflow_settings, "task_instance_mutation_hook")
