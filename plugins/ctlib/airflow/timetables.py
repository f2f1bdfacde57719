"""A cron timetable whose every run starts a fixed offset after the cron's tick.

Airflow's cron has no seconds field, so forty per-minute DAGs all start at second :00 and
queue for executor slots. `OffsetCronTriggerTimetable("* * * * *", offset=17 s)` runs at
:17 of every minute instead. It is Airflow's CronTriggerTimetable conjugated by the offset
(every "next" and "previous" tick is computed on `time - offset`, then shifted back), so the
runs keep the cron's period exactly and never drift, and catch-up, first-run and data
interval rules are Airflow's own.

A custom timetable must be registered through a plugin for the scheduler to deserialize it:
plugins/ct_timetables.py does it (by this module's class, so its import path is
`ctlib.airflow.timetables.OffsetCronTriggerTimetable` on both sides).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from airflow.timetables.trigger import CronTriggerTimetable

if TYPE_CHECKING:
    from airflow.timetables.base import Timetable
    from pendulum import DateTime
    from pendulum.tz.timezone import FixedTimezone, Timezone


class OffsetCronTriggerTimetable(CronTriggerTimetable):
    """CronTriggerTimetable whose runs start `offset` after each tick of `cron`.

    The offset should be shorter than the cron's shortest gap between ticks (else a shifted
    run passes the next tick; nothing breaks, but the order reads oddly). `summary` shows it
    as `<cron> +<seconds>s`."""

    def __init__(
        self,
        cron: str,
        *,
        timezone: str | Timezone | FixedTimezone,
        offset: datetime.timedelta = datetime.timedelta(),
        interval: datetime.timedelta = datetime.timedelta(),
        run_immediately: bool | datetime.timedelta = False,
    ) -> None:
        super().__init__(cron, timezone=timezone, interval=interval, run_immediately=run_immediately)
        self._offset = offset
        if offset and self.description:
            self.description = f"{self.description}, {int(offset.total_seconds())} s after the tick"

    @property
    def offset(self) -> datetime.timedelta:
        return self._offset

    @property
    def summary(self) -> str:
        return f"{self._expression} +{int(self._offset.total_seconds())}s" if self._offset else self._expression

    def validate(self) -> None:
        from airflow.exceptions import AirflowTimetableInvalid

        super().validate()
        if self._offset < datetime.timedelta():
            raise AirflowTimetableInvalid(f"offset {self._offset} is negative")

    def _get_next(self, current: DateTime) -> DateTime:
        return super()._get_next(current - self._offset) + self._offset

    def _get_prev(self, current: DateTime) -> DateTime:
        return super()._get_prev(current - self._offset) + self._offset

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), "offset_seconds": self._offset.total_seconds()}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> Timetable:
        from airflow._shared.timezones.timezone import parse_timezone
        from airflow.serialization.decoders import decode_interval, decode_run_immediately

        return cls(
            data["expression"],
            timezone=parse_timezone(data["timezone"]),
            offset=datetime.timedelta(seconds=data.get("offset_seconds", 0)),
            interval=decode_interval(data["interval"]),
            run_immediately=decode_run_immediately(data.get("run_immediately", False)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OffsetCronTriggerTimetable):
            return NotImplemented
        return (self._expression, self._timezone, self._offset) == (other._expression, other._timezone, other._offset)

    def __hash__(self) -> int:
        return hash((self._expression, self._timezone, self._offset))
