"""Shared fixtures. The logic lives in ctlib.localsvc; these stay thin.

- `kafka_broker`: one tansu broker (memory-only, 127.0.0.1, free port) for the test session,
  started on first use. It exports nothing: a test that runs Airflow code sets
  `monkeypatch.setenv(*kafka_broker.airflow_env().popitem())` (AIRFLOW_CONN_KAFKA_DEFAULT).
  Topics are auto-created on first produce; use a topic per test to keep them apart.
- `consume_all`: `consume_all(bootstrap, topic, timeout=15.0, *, min_messages=None)` ->
  list of `Record` (`.key`, `.value`, `.json()`, `.partition`, `.offset`; iterates as
  `(key, value)`), every message of the topic in (partition, offset) order.
- `s3_server`: one local S3 server (moto_server, ctlib.testing.s3) for the session, started on
  first use.
- `s3_lake`: a fresh `s3://<bucket>/lake` on it, with the AWS variables of the server set
  for the test (AWS_ENDPOINT_URL, keys, region); the location as a string.
- `lake_location`: a lake location, once a local folder and once `s3_lake` (the test runs
  twice: `[local]`, `[s3]`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from ctlib.localsvc import broker as _broker
from ctlib.testing.s3 import LocalS3


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_broker.LocalBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with _broker.LocalBroker(log_path=log) as broker:
        yield broker


@pytest.fixture(scope="session")
def consume_all() -> Callable[..., list[_broker.Record]]:
    return _broker.consume_all


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    with LocalS3(log_path=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_lake(s3_server: LocalS3, monkeypatch: pytest.MonkeyPatch) -> str:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(bucket)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return f"s3://{bucket}/lake"


@pytest.fixture(params=["local", "s3"])
def lake_location(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "s3":
        return request.getfixturevalue("s3_lake")
    return str(tmp_path / "lake")
