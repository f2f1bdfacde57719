"""Shared fixtures. The logic lives in ctlib.localsvc; these stay thin.

- `kafka_broker`: one tansu broker (memory-only, 127.0.0.1, free port) for the test session,
  started on first use. It exports nothing: a test that runs Airflow code sets
  `monkeypatch.setenv(*kafka_broker.airflow_env().popitem())` (AIRFLOW_CONN_KAFKA_DEFAULT).
  Topics are auto-created on first produce; use a topic per test to keep them apart.
- `consume_all`: `consume_all(bootstrap, topic, timeout=15.0, *, min_messages=None)` ->
  list of `Record` (`.key`, `.value`, `.json()`, `.partition`, `.offset`; iterates as
  `(key, value)`), every message of the topic in (partition, offset) order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ctlib.localsvc import broker as _broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_broker.LocalBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with _broker.LocalBroker(log_path=log) as broker:
        yield broker


@pytest.fixture(scope="session")
def consume_all() -> Callable[..., list[_broker.Record]]:
    return _broker.consume_all
