"""Registers ct-airflow's timetable with Airflow, so the scheduler, the dag-processor and the
API server can deserialize DAGs that use it (plugins/.airflowignore hides ctlib/ itself)."""

from airflow.plugins_manager import AirflowPlugin

from ctlib.airflow.timetables import OffsetCronTriggerTimetable


class CtTimetablesPlugin(AirflowPlugin):
    name = "ct_timetables"
    timetables = [OffsetCronTriggerTimetable]  # noqa: RUF012 (AirflowPlugin's own attribute)
