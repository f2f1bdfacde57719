"""Fault tests: each breaks one thing under a real `dag.test()` run (a local CT log over
HTTP, a real tansu broker where Kafka matters) and ends with `ctlib.ops.audit` proving the lake
holds every committed index exactly once (and Kafka every certificate, where it is checked).

Importing tests.support.airflow sets up the throw-away Airflow home and database before
anything imports airflow. The helpers these tests share live in tests/support/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ctlib.testing.ctlog import LogServer
from tests.support.airflow import migrate_airflow_db


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata database for this test session."""
    return migrate_airflow_db()


@pytest.fixture
def ct_server() -> Iterator[LogServer]:
    with LogServer() as server:
        yield server
