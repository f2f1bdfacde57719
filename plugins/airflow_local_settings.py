"""Airflow imports this module early in each of its processes (it is on sys.path through the
plugins folder; an `airflow_local_settings.py` in `$AIRFLOW_HOME/config/` comes first and
replaces it: call `ctlib.airflow.preload.preload_for(sys.argv)` from yours to keep the preload).

It preloads the task code into the processes that fork task processes (scheduler with
the LocalExecutor, Celery workers) and DAG parses (dag-processor): see ctlib.airflow.preload.
And it sets one cluster policy, `task_instance_mutation_hook`: the tasks of a backfill run of
an ingest DAG go to the backfill pool (ctlib.airflow.pools).
"""

from __future__ import annotations

import sys
from typing import Any

from ctlib.airflow.pools import route_task_instance
from ctlib.airflow.preload import preload_for

__all__ = ["task_instance_mutation_hook"]


def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
    route_task_instance(task_instance, dag_run)


preload_for(sys.argv)
