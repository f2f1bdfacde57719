"""When each ingest DAG runs: per minute (CT_SCHEDULE) for a log that can still grow, hourly
(CT_FROZEN_SCHEDULE) plus a wake-up asset for a log that cannot, each at its own offset.

Pure and cheap (hashlib, datetime, croniter): the DAG factory calls `schedule_for` for every
log at every parse, so a log that froze since the last parse gets its new schedule then.

A log is *frozen* when nothing can be added to it any more: its state is `readonly` or
`retired`, or its temporal interval ended more than its MMD ago. The log list alone says so:
ctlib.ct.loglist.frozen_reason decides it, and states the rule in full.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ctlib.ct.loglist import CTLog, frozen_reason
from ctlib.settings import Settings

MAX_SPREAD = timedelta(hours=1)
"""The longest offset: a log starts at most this long after its schedule's tick."""
_SAMPLE_FROM = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday, for a stable sample
_SAMPLE_RUNS = 64
_PRESETS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@weekly": "0 0 * * 0",
            "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}


def wake_uri(slug: str) -> str:
    """The asset whose events start a run of a frozen log at once (a backlog left behind,
    a new log list that changed the log)."""
    return f"ct://wake/{slug}"


@functools.cache  # a handful of crons; asked for every log at every parse of the DAG file
def period_of(cron: str) -> timedelta:
    """The shortest gap between two runs of `cron` (UTC), sampled over its next 64 runs."""
    from croniter import croniter

    runs = croniter(_PRESETS.get(cron, cron), _SAMPLE_FROM.replace(tzinfo=None))
    times = [runs.get_next(datetime) for _ in range(_SAMPLE_RUNS)]
    return min(b - a for a, b in zip(times, times[1:]))


def offset_for(slug: str, cron: str) -> timedelta:
    """The log's fixed start offset after each tick of `cron`: a hash of the slug, in whole
    seconds, below the cron's shortest gap (so runs keep their order) and below MAX_SPREAD."""
    window = int(min(period_of(cron), MAX_SPREAD).total_seconds())
    digest = hashlib.sha256(slug.encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % max(window, 1))


@dataclass(frozen=True, slots=True)
class LogSchedule:
    """How one log's ingest DAG is scheduled. `wake` is the wake-up asset URI of a frozen
    log, None for a live one."""

    cron: str
    offset: timedelta
    frozen: bool
    reason: str
    wake: str | None

    def describe(self) -> str:
        """One paragraph for the DAG's doc_md: which schedule and why."""
        at = f", {int(self.offset.total_seconds())} s after each tick" if self.offset else ""
        if not self.frozen:
            return (f"**Schedule**: `{self.cron}`{at} (CT_SCHEDULE): the log can still grow. "
                    "Each log starts at its own offset, so the logs do not all start at once.")
        return (f"**Schedule**: `{self.cron}`{at} (CT_FROZEN_SCHEDULE), or at once on an event of "
                f"the asset `{self.wake}`: the log is frozen ({self.reason}), nothing can be "
                "added to it. A run that leaves a backlog behind emits the wake-up event, so a "
                "backlog drains run after run; the log-list refresh emits it when a new list "
                "changes the log's state or interval.")


def schedule_for(ctlog: CTLog, now: datetime, settings: Settings) -> LogSchedule:
    """The schedule of `ctlog`'s ingest DAG as of `now` (timezone-aware). Offsets are zero
    when CT_SCHEDULE_SPREAD is off."""
    reason = frozen_reason(ctlog, now)
    cron = settings.frozen_schedule if reason else settings.schedule
    offset = offset_for(ctlog.slug, cron) if settings.schedule_spread else timedelta()
    return LogSchedule(cron=cron, offset=offset, frozen=bool(reason), reason=reason,
                       wake=wake_uri(ctlog.slug) if reason else None)


def window_of(sched: LogSchedule, logical_date: datetime) -> tuple[datetime, datetime]:
    """The time window a run of logical date `logical_date` stands for: from it to the next
    run's logical date on this schedule (the cron, shifted by the offset; UTC).

    Airflow 3's cron timetables give every run a zero-length data interval, so a backfill
    run's window is defined here from the schedule instead: the runs Airflow's backfill
    creates, one per tick, give windows that meet end to start, with no gap and no overlap."""
    from croniter import croniter

    start = logical_date.astimezone(UTC)
    tick = (start - sched.offset).replace(tzinfo=None)
    following = croniter(_PRESETS.get(sched.cron, sched.cron), tick).get_next(datetime)
    return start, following.replace(tzinfo=UTC) + sched.offset
