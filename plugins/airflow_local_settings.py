"""Airflow imports this module early in each of its processes (it is on sys.path through the
plugins folder; an `airflow_local_settings.py` in `$AIRFLOW_HOME/config/` comes first and
replaces it: call `ctlib.airflow.preload.preload_for(sys.argv)` from yours to keep the preload).

It only preloads the task code into the processes that fork task processes (scheduler with
the LocalExecutor, Celery workers) and DAG parses (dag-processor): see ctlib.airflow.preload.
"""

from __future__ import annotations

import sys

from ctlib.airflow.preload import preload_for

__all__: list[str] = []  # nothing here overrides an Airflow setting or policy

preload_for(sys.argv)
