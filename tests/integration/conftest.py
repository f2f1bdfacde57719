"""Airflow for integration tests: a throw-away AIRFLOW_HOME and metadata database, set up
before anything imports airflow, and helpers to load the project's DAGs and run them with
`dag.test()` in this process."""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.paths import PROJECT_ROOT

_HOME = Path(tempfile.mkdtemp(prefix="ct-airflow-test-home-"))
os.environ.update(
    AIRFLOW_HOME=str(_HOME),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_HOME}/airflow.db",
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT_ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata database for this test session."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _HOME


def load_dag_module(name: str):
    """Import dags/<name>.py afresh, so it reads the environment as the test set it."""
    spec = importlib.util.spec_from_file_location(f"test_dag_{name}", PROJECT_ROOT / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def run_dag(dag, capfd) -> tuple[str, str]:
    """One `dag.test()` run: (its state, what it logged and printed). Depending on how
    Airflow set up logging, a record reaches stdout (structlog) or only the stdlib handlers,
    so both are collected: a test finds the error a task failed with, or a retry's warning."""
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    capfd.readouterr()
    root.addHandler(handler)
    try:
        state = dag.test().state
    finally:
        root.removeHandler(handler)
    out, err = capfd.readouterr()
    return str(state), out + err + records.getvalue()
