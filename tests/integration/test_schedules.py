"""Each ingest DAG's schedule fits its log: live logs every minute at their own second,
frozen logs hourly plus a wake-up asset that a run leaving a backlog behind emits."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pendulum
import pytest

from ctlib.ingest.schedule import schedule_for, wake_uri
from ctlib.settings import DEFAULT_LOG_LIST, Settings
from ctlib.testing.ctlog import LogServer
from tests.paths import PROJECT_ROOT
from tests.support.airflow import configure, load_dag_module, state_of

pytestmark = pytest.mark.integration


def _restriction(catchup: bool):
    from airflow.timetables.base import TimeRestriction

    return TimeRestriction(earliest=pendulum.datetime(2026, 1, 1, tz="UTC"), latest=None, catchup=catchup)


def test_offset_timetable_lands_on_its_offset_every_period_without_drift():
    from ctlib.airflow.timetables import OffsetCronTriggerTimetable

    timetable = OffsetCronTriggerTimetable("* * * * *", timezone="UTC", offset=timedelta(seconds=17))
    timetable.validate()
    assert timetable.summary == "* * * * * +17s"
    info, runs = None, []
    for _ in range(500):  # catch-up from the start date: each run is the previous one's next
        info = timetable.next_dagrun_info(last_automated_data_interval=info and info.data_interval,
                                          restriction=_restriction(True))
        runs.append(info.run_after)
    assert runs[0] == pendulum.datetime(2026, 1, 1, 0, 0, 17, tz="UTC")
    assert all(run.second == 17 and run.microsecond == 0 for run in runs)
    assert all(b - a == timedelta(minutes=1) for a, b in zip(runs, runs[1:])), "no drift"
    assert runs[-1] == pendulum.datetime(2026, 1, 1, 8, 19, 17, tz="UTC")

    hourly = OffsetCronTriggerTimetable("0 * * * *", timezone="UTC", offset=timedelta(minutes=41, seconds=5))
    moment = pendulum.datetime(2026, 12, 5, 10, 41, 4, tz="UTC")
    assert hourly._align_to_next(moment) == pendulum.datetime(2026, 12, 5, 10, 41, 5, tz="UTC")
    assert hourly._align_to_prev(moment) == pendulum.datetime(2026, 12, 5, 9, 41, 5, tz="UTC")
    on_it = pendulum.datetime(2026, 12, 5, 10, 41, 5, tz="UTC")
    assert hourly._align_to_next(on_it) == on_it == hourly._align_to_prev(on_it)
    assert hourly._get_next(on_it) == on_it + timedelta(hours=1)
    # Without catch-up the latest offset moment at or before now, as Airflow's cron does.
    latest = hourly.next_dagrun_info(last_automated_data_interval=None, restriction=_restriction(False)).run_after
    now = pendulum.now("UTC")
    assert latest.minute == 41 and latest.second == 5 and now - timedelta(hours=1) < latest <= now


def test_offset_timetable_serializes_through_the_plugin():
    from airflow.sdk import Asset, AssetOrTimeSchedule
    from airflow.serialization.decoders import decode_timetable
    from airflow.serialization.encoders import encode_timetable

    from ctlib.airflow.timetables import OffsetCronTriggerTimetable

    timetable = OffsetCronTriggerTimetable("*/5 * * * *", timezone="UTC", offset=timedelta(seconds=123))
    encoded = encode_timetable(timetable)
    assert encoded["__type"] == "ctlib.airflow.timetables.OffsetCronTriggerTimetable"
    decoded = decode_timetable(json.loads(json.dumps(encoded)))
    assert decoded == timetable and decoded.offset == timedelta(seconds=123) and decoded.summary == "*/5 * * * * +123s"
    assert decoded != OffsetCronTriggerTimetable("*/5 * * * *", timezone="UTC", offset=timedelta(seconds=124))

    combined = AssetOrTimeSchedule(timetable=timetable, assets=Asset("ct://wake/x"))
    decoded = decode_timetable(json.loads(json.dumps(encode_timetable(combined))))
    assert type(decoded).__name__ == "AssetOrTimeSchedule" and decoded.timetable == timetable
    assert [key.uri for key, _ in decoded.asset_condition.iter_assets()] == ["ct://wake/x"]


@pytest.fixture(scope="module")
def bundled_dags(airflow_db):
    import os

    saved = {name: os.environ.pop(name, None) for name in ("CT_LOG_LIST", "CT_LAKE", "CT_SCHEDULE_SPREAD")}
    try:
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(str(PROJECT_ROOT / "dags"))
    finally:
        os.environ.update({name: value for name, value in saved.items() if value is not None})
    assert bag.import_errors == {}
    return bag


def test_bundled_list_gets_spread_and_frozen_schedules(bundled_dags):
    from airflow.sdk import AssetOrTimeSchedule
    from airflow.serialization.serialized_objects import DagSerialization

    from ctlib.ct.loglist import load_log_list
    from ctlib.airflow.timetables import OffsetCronTriggerTimetable

    now, settings = datetime.now(timezone.utc), Settings.from_env({})
    live_offsets, frozen = [], []
    for log in load_log_list(DEFAULT_LOG_LIST).monitored():
        dag = bundled_dags.dags[f"ct_ingest__{log.slug}"]
        expected = schedule_for(log, now, settings)
        outlets = {task: [o.name for o in dag.get_task(task).outlets] for task in ("ingest", "commit")}
        if expected.frozen:
            frozen.append(log.slug)
            assert isinstance(dag.timetable, AssetOrTimeSchedule)
            assert dag.timetable.asset_condition.uri == wake_uri(log.slug)
            timetable = dag.timetable.timetable
            assert timetable.summary.startswith("0 * * * * ")
            assert f"ct_wake__{log.slug}" in outlets["ingest"] and f"ct_wake__{log.slug}" in outlets["commit"]
            assert "frozen" in dag.doc_md and wake_uri(log.slug) in dag.doc_md
        else:
            timetable = dag.timetable
            assert timetable.summary.startswith("* * * * * ")
            assert not [o for o in outlets["ingest"] + outlets["commit"] if o.startswith("ct_wake__")]
            live_offsets.append(timetable.offset)
            assert "can still grow" in dag.doc_md
        assert isinstance(timetable, OffsetCronTriggerTimetable) and timetable.offset == expected.offset
    # The bundled list (v80.14) has shards up to 2028, and 34 frozen logs as of 2026-12-05.
    assert len(frozen) >= 34 and live_offsets
    assert all(timedelta(0) <= o < timedelta(minutes=1) for o in live_offsets)
    assert len(set(live_offsets)) >= len(live_offsets) * 0.6, "offsets differ between logs"

    # What the scheduler reads back: the serialized DAG decodes to the same schedule.
    dag = bundled_dags.dags[f"ct_ingest__{frozen[0]}"]
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert restored.timetable.timetable == dag.timetable.timetable
    assert restored.timetable.summary == f"Asset or {dag.timetable.timetable.summary}"


def test_spread_off_gives_the_plain_cron(airflow_db, monkeypatch, tmp_path):
    with LogServer() as server:
        server.add_log("Local Plain Cron Log")
        monkeypatch.setenv("CT_LOG_LIST", str(server.write_log_list(tmp_path / "list.json")))
    monkeypatch.setenv("CT_SCHEDULE_SPREAD", "false")
    monkeypatch.setenv("CT_SCHEDULE", "*/2 * * * *")
    dag = load_dag_module("ct_ingest").ct_ingest__local_plain_cron_log
    assert type(dag.timetable).__name__ == "CronTriggerTimetable" and dag.timetable.expression == "*/2 * * * *"


def _wake_events(slug: str) -> list[tuple[str, dict]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [tuple(row) for row in session.execute(
            select(AssetEvent.source_task_id, AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == wake_uri(slug)).order_by(AssetEvent.id)
        )]


def test_frozen_log_wakes_itself_until_caught_up(airflow_db, tmp_path, monkeypatch):
    with LogServer() as server:
        log = server.add_log("Local Frozen Log", initial_size=300)
        configure(monkeypatch, tmp_path, server, None, CT_KAFKA_CONN_ID="",
                  CT_ENTRIES_PER_TASK="70", CT_ENTRIES_PER_RUN="160")
        listed = tmp_path / "log_list.json"
        data = json.loads(listed.read_text())
        data["operators"][0]["logs"][0]["temporal_interval"] = {
            "start_inclusive": "2025-01-01T00:00:00Z", "end_exclusive": "2025-07-01T00:00:00Z"}
        listed.write_text(json.dumps(data))
        dag = load_dag_module("ct_ingest").ct_ingest__local_frozen_log
        assert dag.timetable.asset_condition.uri == wake_uri(log.slug)

        # 1: 160 of 300 in three mapped fetch tasks: commit wakes the next run.
        run = dag.test()
        assert run.state == "success" and state_of(log.slug)["next_index"] == 160
        assert {ti.task_id: ti.state for ti in run.get_task_instances()}["commit"] == "success"
        assert _wake_events(log.slug) == [("commit", {"log": log.slug, "next_index": 160, "tree_size": 300})]

        # 2: a per-run cap of 70 makes it one range, done by ingest alone: ingest wakes the next run.
        monkeypatch.setenv("CT_ENTRIES_PER_RUN", "70")
        assert dag.test().state == "success" and state_of(log.slug)["next_index"] == 230
        assert _wake_events(log.slug)[1:] == [("ingest", {"log": log.slug, "next_index": 230, "tree_size": 300})]

        # 3: the run that catches up, and an idle run after it, emit nothing.
        assert dag.test().state == "success" and state_of(log.slug)["next_index"] == 300
        assert dag.test().state == "success"
        assert len(_wake_events(log.slug)) == 2


def test_refresh_wakes_a_frozen_log_its_new_list_changed(airflow_db, publish_signed_list):
    def publish(data: dict) -> None:
        publish_signed_list(json.dumps(data).encode())

    with LogServer() as server:
        server.add_log("Local Ended Log")
        server.add_log("Local Live Log")
        data = server.log_list()
    ended, live = data["operators"][0]["logs"]
    ended["temporal_interval"] = {"start_inclusive": "2025-01-01T00:00:00Z", "end_exclusive": "2025-07-01T00:00:00Z"}
    publish(data)
    refresh = load_dag_module("ct_ops").ct_loglist_refresh
    assert refresh.test().state == "success"  # the first list: nothing to compare with
    assert _wake_events("local_ended_log") == []

    ended["state"] = {"readonly": {"timestamp": "2025-08-01T00:00:00Z"}}
    live["state"] = {"qualified": {"timestamp": "2025-08-01T00:00:00Z"}}  # live: runs every minute anyway
    publish(data)
    assert refresh.test().state == "success"
    assert [task for task, _ in _wake_events("local_ended_log")] == ["refresh"]
    assert _wake_events("local_live_log") == []

    assert refresh.test().state == "success"  # the same list again: no change, no event
    assert len(_wake_events("local_ended_log")) == 1
