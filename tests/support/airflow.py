"""Airflow for tests: a throw-away AIRFLOW_HOME and metadata database, set up when this
module is first imported (conftest.py files import it before anything imports airflow);
loading the project's DAGs, running them with `dag.test()` in this process, the settings
a test run of the ingest DAG uses (`configure`) and a log's state (`state_of`)."""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tests.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from ctlib.testing.ctlog import LogServer

AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ct-airflow-test-home-"))
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME}/airflow.db",
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT_ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
)


def migrate_airflow_db() -> Path:
    """Migrate the throw-away metadata database; its AIRFLOW_HOME."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return AIRFLOW_HOME


def load_dag_module(name: str):
    """Import dags/<name>.py afresh, so it reads the environment as the test set it."""
    spec = importlib.util.spec_from_file_location(f"test_dag_{name}", PROJECT_ROOT / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_dag(dag, capfd, **test_kwargs) -> tuple[str, str]:
    """One `dag.test(**test_kwargs)` run: (its state, what it logged and printed). Depending on how
    Airflow set up logging, a record reaches stdout (structlog) or only the stdlib handlers,
    so both are collected: a test finds the error a task failed with, or a retry's warning."""
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    capfd.readouterr()
    root.addHandler(handler)
    try:
        state = dag.test(**test_kwargs).state
    finally:
        root.removeHandler(handler)
    out, err = capfd.readouterr()
    return str(state), out + err + records.getvalue()


def configure(monkeypatch, tmp_path: Path, server: LogServer, broker, **overrides) -> Path:
    """Set the environment for a test run of the ingest DAG against `server`'s logs (Kafka
    through `broker`, or none); `overrides` win. Returns the lake folder."""
    log_list = server.write_log_list(tmp_path / "log_list.json")
    lake = tmp_path / "lake"
    env = {
        "CT_LOG_LIST": str(log_list),
        "CT_LAKE": str(lake),
        "CT_START_AT": "beginning",
        "CT_ENTRIES_PER_TASK": "70",
        "CT_ENTRIES_PER_RUN": "160",
        "CT_GET_ENTRIES_BATCH": "100",
        "CT_HTTP_BACKOFF": "0.05",
        "CT_TASK_RETRIES": "2",
        "CT_TASK_RETRY_DELAY": "1",
        "CT_KAFKA_CONN_ID": "kafka_default",
        "CT_PARTIAL_TILE_WAIT": "0",
        **(broker.airflow_env() if broker else {}),
        **overrides,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return lake


def state_of(slug: str) -> dict:
    """The ingest state of log `slug` (its Airflow Variable)."""
    from airflow.models import Variable

    return json.loads(Variable.get(f"ct_state__{slug}"))


def xcom_of(run, task_id: str, key: str = "return_value", map_index: int = -1):
    """The XCom `key` that task `task_id` (map index `map_index`) of DAG run `run` pushed, or None."""
    from airflow.models.xcom import XComModel
    from airflow.sdk.serde import deserialize
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == run.dag_id, XComModel.run_id == run.run_id, XComModel.task_id == task_id,
                XComModel.map_index == map_index, XComModel.key == key)
        ).first()
    return None if row is None else deserialize(XComModel.deserialize_value(row))


def ingest_dag(slug: str):
    """The ingest DAG of `slug`, built from the environment as the test set it."""
    return getattr(load_dag_module("ct_ingest"), f"ct_ingest__{slug}")


def run_until_caught_up(dag, capfd, log, max_runs: int = 8) -> str:
    """Successful runs until the watermark reaches the log's published size; their output."""
    outputs = []
    for runs in range(1, max_runs + 1):
        state, output = run_dag(dag, capfd)
        outputs.append(output)
        assert state == "success", f"run {runs} ended {state}:\n{failure_lines(output)}"
        if state_of(log.slug)["next_index"] >= log.sth.tree_size:
            return "".join(outputs)
    raise AssertionError(f"{log.slug} not caught up after {max_runs} runs")


def failure_lines(output: str, limit: int = 20) -> str:
    """The error lines of a run's output (exceptions, 'failed'), for assertion messages."""
    keep = [line for line in output.splitlines() if "Error" in line or "failed" in line or "error" in line]
    return "\n".join(keep[-limit:])
