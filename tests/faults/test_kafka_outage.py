"""The Kafka broker goes down between runs and comes back on the same port.

While it is down, a run fails visibly (the fetch task fails with a Kafka delivery timeout
naming the log and range) and the watermark stays; once a broker answers again, the next
runs deliver everything from the watermark on. The audit then proves the lake has no gap
and no duplicate, and that Kafka has every certificate's key from the restart's watermark on.

tansu, the local broker, keeps its data in memory only: the restarted broker starts empty,
so the keys delivered before the outage are gone from it (the audit over the whole topic
shows them as a Kafka gap, on purpose). A production Apache Kafka keeps them on disk.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from ctlib.localsvc.broker import LocalBroker, consume_all
from ctlib.testing.ctlog import Faults
from tests.support.airflow import configure, failure_lines, ingest_dag, run_dag, run_until_caught_up, state_of
from tests.support.audit import assert_audit_clean, audit

pytestmark = pytest.mark.integration

SLOW = os.environ.get("CT_SLOW_FAULTS", "").strip().lower() in {"1", "true", "yes", "on"}
"""CT_SLOW_FAULTS=1: the long variant (a Kafka outage of two minutes instead of ~25 s)."""

# How long the broker stays down. Two minutes is the realistic outage (CT_SLOW_FAULTS=1);
# by default it is shortened to 20 s, which already spans two failed runs: a run notices
# the outage within CT_KAFKA_FLUSH_TIMEOUT (5 s) per fetch task, whatever its length.
OUTAGE_SECONDS = 120 if SLOW else 20


def test_broker_down_fails_runs_visibly_and_recovery_delivers_from_the_watermark(
    airflow_db, ct_server, tmp_path, monkeypatch, capfd
):
    topic = "ct-certs-outage"
    broker = LocalBroker(topics=(topic,), log_path=tmp_path / "tansu.log").start()
    port = broker.port
    restarted = None
    try:
        log = ct_server.add_log("Local Fault Kafka Outage", initial_size=90, faults=Faults(cap=40))
        lake = configure(monkeypatch, tmp_path, ct_server, broker, CT_KAFKA_TOPIC=topic,
                         CT_KAFKA_FLUSH_TIMEOUT="5", CT_TASK_RETRIES="0")
        dag = ingest_dag(log.slug)
        run_until_caught_up(dag, capfd, log)
        keys = {r.key.decode() for r in consume_all(broker.bootstrap_servers, topic, timeout=30)}
        assert keys == {f"{log.log_id_b64}:{i}" for i in range(90)}

        broker.stop()
        down_since = time.monotonic()
        log.grow(100)
        log.publish()
        watermark = state_of(log.slug)
        failed_runs = 0
        while failed_runs == 0 or time.monotonic() - down_since < OUTAGE_SECONDS:
            state, output = run_dag(dag, capfd)
            failed_runs += 1
            assert state == "failed", f"run {failed_runs} during the outage ended {state}"
            assert "KafkaDeliveryError" in output and f"{log.slug} [90, " in output, failure_lines(output)
            assert "not acknowledged" in output and "still queued after 5s" in output, failure_lines(output)
            assert state_of(log.slug) == watermark, "the watermark stays while Kafka is down"
        assert 90 == watermark["next_index"]

        restarted = LocalBroker(port, topics=(topic,), log_path=tmp_path / "tansu-restarted.log").start()
        restarted_at = datetime.now(UTC)
        assert restarted.bootstrap_servers == broker.bootstrap_servers  # same port: same connection
        run_until_caught_up(dag, capfd, log)
        assert state_of(log.slug)["next_index"] == 190

        keys = {r.key.decode() for r in consume_all(restarted.bootstrap_servers, topic, timeout=30)}
        assert keys == {f"{log.log_id_b64}:{i}" for i in range(90, 190)}, "everything from the watermark on"
        assert_audit_clean(lake, log.slug, "--kafka", "--bootstrap", restarted.bootstrap_servers,
                           "--topic", topic, "--since", "90")
        # The same by time: the certificates ingested since the restart all have their key.
        assert_audit_clean(lake, log.slug, "--kafka", "--bootstrap", restarted.bootstrap_servers,
                           "--topic", topic, "--since", restarted_at.isoformat())
        # The memory-only broker lost what it held before the outage; the audit says so.
        code, report = audit("--log", log.slug, "--lake", str(lake), "--kafka",
                             "--bootstrap", restarted.bootstrap_servers, "--topic", topic)
        assert code == 1 and f"{log.slug}: Kafka gap [0, 90)" in report, report
    finally:
        broker.stop()
        if restarted is not None:
            restarted.stop()
