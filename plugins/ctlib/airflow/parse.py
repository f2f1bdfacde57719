"""What the DAG files read at parse time: the settings, the monitored logs and each log's
schedule as an Airflow timetable. Parsed every ~30 s and by every task, so only cheap imports
here (no pyarrow, cryptography, requests or the ingest code)."""

from __future__ import annotations

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable

from ctlib.ct.loglist import CTLog, LogListError, load_log_list
from ctlib.ingest.schedule import LogSchedule, schedule_for
from ctlib.settings import Settings

__all__ = ["CTLog", "LogListError", "LogSchedule", "Settings", "monitored_logs", "schedule_for", "timetable_for"]


def monitored_logs(settings: Settings) -> list[CTLog]:
    """The logs to ingest, from the configured log list; none before the log-list refresh DAG
    has downloaded a first snapshot of a list given by URL."""
    path = settings.log_list_path
    if not path.exists() and settings.log_list_is_url:
        return []
    return load_log_list(path).monitored()


def timetable_for(sched: LogSchedule):
    """The DAG's schedule: the cron shifted by the log's offset (a timetable registered by
    plugins/ct_timetables.py); a frozen log's also runs on its wake-up asset."""
    if sched.offset:
        from ctlib.airflow.timetables import OffsetCronTriggerTimetable

        timetable: OffsetCronTriggerTimetable | CronTriggerTimetable
        timetable = OffsetCronTriggerTimetable(sched.cron, timezone="UTC", offset=sched.offset)
    elif sched.frozen:
        timetable = CronTriggerTimetable(sched.cron, timezone="UTC")
    else:
        return sched.cron  # CT_SCHEDULE_SPREAD=false: the plain cron, as Airflow makes it
    if not sched.frozen:
        return timetable
    assert sched.wake is not None  # schedule_for gives every frozen log its wake-up asset
    # The SDK types `timetable` as its own BaseTimetable, but a core Timetable such as our
    # registered OffsetCronTriggerTimetable is accepted and serialized (tests/integration/test_schedules.py).
    return AssetOrTimeSchedule(timetable=timetable, assets=Asset(sched.wake))  # type: ignore[arg-type]

