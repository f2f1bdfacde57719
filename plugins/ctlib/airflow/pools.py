"""Which pool a task instance runs in: every task of a backfill run of an ingest DAG goes to
CT_BACKFILL_POOL (default `ct_backfill`), so however long a backfill is, it holds at most
that pool's slots and never the executor slots live ingestion needs.

Applied by Airflow's `task_instance_mutation_hook` cluster policy (plugins/airflow_local_settings.py),
which the scheduler calls as it creates a run's task instances. A backfill run is one that
Airflow's backfill made, or a run triggered with the Params of a backfill (start_time or
start_index). The pool must exist: `make run`, docker-compose's init and the README's
set-up create it; the scheduler leaves tasks of a missing pool waiting and says so in its log.

Cheap and free of I/O: the hook runs inside the scheduler's transaction."""

from __future__ import annotations

import os
from typing import Any

INGEST_PREFIX = "ct_ingest__"
BACKFILL_RUN_PREFIX = "backfill__"
BACKFILL_PARAMS = ("start_time", "start_index")


def is_backfill_type(run_type: Any) -> bool:
    """True for the run type of a run Airflow's backfill made (UI Backfill dialog, `airflow
    backfill create`, POST /api/v2/backfills): DagRunType.BACKFILL_JOB or its value."""
    return getattr(run_type, "value", run_type) == "backfill"


def is_backfill(run_type: Any, run_id: str | None, conf: Any) -> bool:
    """A run Airflow's backfill made (by run type, or by run id when the run is not at hand),
    or one triggered with a backfill's Params."""
    if is_backfill_type(run_type) or (run_type is None and (run_id or "").startswith(BACKFILL_RUN_PREFIX)):
        return True
    return isinstance(conf, dict) and any(conf.get(name) is not None for name in BACKFILL_PARAMS)


def backfill_pool(dag_id: str, run_type: Any, run_id: str | None, conf: Any) -> str | None:
    """The pool for a task of this run: CT_BACKFILL_POOL for a backfill run of an ingest
    DAG, None (leave the task's own pool) for any other."""
    if not dag_id.startswith(INGEST_PREFIX) or not is_backfill(run_type, run_id, conf):
        return None
    return os.environ.get("CT_BACKFILL_POOL", "").strip() or "ct_backfill"


def route_task_instance(task_instance: Any, dag_run: Any = None) -> None:
    """The cluster policy: move a backfill run's task instance to the backfill pool."""
    pool = backfill_pool(
        task_instance.dag_id,
        getattr(dag_run, "run_type", None),
        getattr(dag_run, "run_id", None) or getattr(task_instance, "run_id", None),
        getattr(dag_run, "conf", None),
    )
    if pool is not None:
        task_instance.pool = pool
