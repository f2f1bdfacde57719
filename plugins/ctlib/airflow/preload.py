"""Import the task code once, in the long-lived Airflow processes that fork task processes.

Airflow 3 on Linux starts every task by a bare `os.fork()`: the LocalExecutor's workers are
forked from the scheduler, a Celery worker's pool from the Celery main process, and each
task's process from its worker's supervisor; the dag-processor forks one process per DAG file
parse. A module imported before those forks is inherited, already imported, by every task
and parse. Without this, each ingest task paid ~0.4 CPU s importing pyarrow, cryptography
and the decode path again (measured: `import ctlib.airflow.ingest_tasks` in a fresh interpreter), more
than the rest of an idle run.

`preload_for(argv)` is called by `plugins/airflow_local_settings.py`, which Airflow imports
early in every one of its processes (`airflow.settings.initialize`). It imports only in the
processes that fork tasks or parses (by the CLI command in argv), so the API server and the
triggerer stay lean. It never raises: a failed preload costs speed, not correctness (the
task imports what it needs itself). Idempotent.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

TASK_MODULES: tuple[str, ...] = (
    # What an ingest task imports (ctlib.airflow.ingest_tasks pulls pyarrow, cryptography, the decoder,
    # the HTTP client), its Kafka sink and the Kafka provider's hook, DuckDB (Kafka messages
    # and downstream tasks), the Task SDK's task runner, and the DAG files' own imports.
    "airflow.sdk",
    "airflow.sdk.execution_time.task_runner",
    "ctlib.airflow.parse",
    "ctlib.airflow.ingest_tasks",
    "ctlib.kafka",
    "airflow.providers.apache.kafka.hooks.produce",
    "duckdb",
    "ctlib.airflow.downstream_tasks",
    "ctlib.downstream.score",
    "ctlib.downstream.watching",  # every ct_watch run
    "ctlib.downstream.notify",  # ct_watch and ct_score notify from their own task
    "airflow.providers.http.notifications.http",  # the webhook's notifier (Slack's and SMTP's load when used)
)
PARSE_MODULES: tuple[str, ...] = ("airflow.sdk", "ctlib.airflow.parse")
"""What parsing the DAG files imports (the DAG factory reads the log list)."""

# CLI command (argv[1] of `airflow ...`) -> what its forked children need.
_BY_COMMAND: dict[str, tuple[str, ...]] = {
    "scheduler": TASK_MODULES,  # LocalExecutor workers are forked from it
    "celery": TASK_MODULES,  # `airflow celery worker`: the pool is forked from it
    "dag-processor": PARSE_MODULES,
}

DISABLE_ENV = "CT_PRELOAD"
"""CT_PRELOAD=false turns preloading off (to compare, or to save the scheduler's memory)."""


def modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The modules to preload in a process started with this argv (empty: none)."""
    command = next((arg for arg in argv[1:] if not arg.startswith("-")), "")
    if command == "celery" and "worker" not in argv:
        return ()
    return _BY_COMMAND.get(command, ())


def preload(modules: Sequence[str]) -> list[str]:
    """Import `modules`; returns those that imported. Never raises."""
    done = []
    for name in modules:
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as err:
            log.warning("ct-airflow preload: cannot import %s (%s); tasks will import it themselves", name, err)
    return done


def preload_for(argv: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """Preload what the process of `argv` forks children for, unless CT_PRELOAD is false."""
    env = os.environ if env is None else env
    if env.get(DISABLE_ENV, "").strip().lower() in {"0", "false", "no", "off"}:
        return []
    modules = modules_for(argv)
    if not modules:
        return []
    began = time.process_time()
    done = preload(modules)
    log.info("ct-airflow preload: %d modules in %.2f CPU s for the forked task processes",
             len(done), time.process_time() - began)
    return done
