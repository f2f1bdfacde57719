"""The ingest DAG end to end with `dag.test()`: a real local CT log over HTTP (capped, with
429 and 5xx answers), a real Kafka-compatible broker, Parquet read back with DuckDB."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ctlib.localsvc.broker import consume_all
from ctlib.testing.ctlog import Faults, LogServer
from tests.support.airflow import configure, load_dag_module, state_of, xcom_of
from tests.support.lake import lake_rows

pytestmark = pytest.mark.integration


@pytest.fixture
def ct_server():
    with LogServer() as server:
        yield server


def run_until_caught_up(dag, log, slug: str, max_runs: int = 10) -> int:
    runs = 0
    while runs < max_runs:
        result = dag.test()
        runs += 1
        assert result.state == "success", f"run {runs} ended {result.state}"
        if state_of(slug)["next_index"] >= log.sth.tree_size:
            return runs
    raise AssertionError(f"{slug} not caught up after {max_runs} runs")


@pytest.mark.parametrize("tiled", [False, True], ids=["rfc6962", "tiled"])
def test_exactly_once_in_lake_and_kafka_across_growing_runs(tiled, airflow_db, kafka_broker, ct_server, tmp_path, monkeypatch):
    topic = f"ct-certs-growing-{'tiled' if tiled else 'rfc6962'}"
    name = f"Local Growing {'Tiled' if tiled else 'Classic'} Log"
    log = ct_server.add_log(
        name, initial_size=230 if not tiled else 700, tiled=tiled,
        faults=Faults(cap=31, http_429_every=9, retry_after=1, http_5xx_every=7),
    )
    lake = configure(monkeypatch, tmp_path, ct_server, kafka_broker, CT_KAFKA_TOPIC=topic,
                     **({"CT_ENTRIES_PER_TASK": "300", "CT_ENTRIES_PER_RUN": "600"} if tiled else {}))
    dag = getattr(load_dag_module("ct_ingest"), f"ct_ingest__{log.slug}")

    first_runs = run_until_caught_up(dag, log, log.slug)
    assert first_runs >= 2, "a backlog larger than CT_ENTRIES_PER_RUN drains over several runs"
    log.grow(190 if not tiled else 333)
    log.publish()
    run_until_caught_up(dag, log, log.slug)
    result = dag.test()  # idle run: nothing new
    assert result.state == "success"

    size = log.sth.tree_size
    state = state_of(log.slug)
    assert (state["next_index"], state["first_index"], state["entries_ingested"]) == (size, 0, size)

    rows = lake_rows(lake, "certs", log.slug)
    assert [index for index, _ in rows] == list(range(size)), "every index exactly once"
    for index, leaf_hash in rows:
        leaf_input, _ = log.entry(index)
        assert leaf_hash == hashlib.sha256(b"\x00" + leaf_input).hexdigest()

    counts = log.counts()
    assert counts.throttled > 0 and counts.server_errors > 0, "the faults were exercised"
    assert counts.entries_served >= size

    records = consume_all(kafka_broker.bootstrap_servers, topic, timeout=30)
    keys = {record.key.decode() for record in records}
    assert keys == {f"{log.log_id_b64}:{i}" for i in range(size)}
    sample = records[0].json()
    assert {"log_id", "index", "cert_sha256", "tbs_sha256", "dns_names", "timestamp"} <= sample.keys()
    assert sample["log_slug"] == log.slug


def test_failure_after_parquet_before_kafka_ack_leaves_one_copy(airflow_db, kafka_broker, ct_server, tmp_path, monkeypatch):
    import ctlib.kafka as kafka_sink
    from ctlib.kafka import KafkaDeliveryError

    topic = "ct-certs-retry"
    log = ct_server.add_log("Local Retry Log", initial_size=120, faults=Faults(cap=40))
    lake = configure(monkeypatch, tmp_path, ct_server, kafka_broker, CT_KAFKA_TOPIC=topic,
                     CT_ENTRIES_PER_TASK="120", CT_ENTRIES_PER_RUN="120", CT_TASK_RETRIES="0")
    real_publish = kafka_sink.publish
    calls = []

    def publish_then_lose_the_ack(producer, topic_, messages, **kwargs):
        calls.append(kwargs["what"])
        if len(calls) == 1:
            parquet = list((lake / "certs").rglob("*.parquet"))
            assert parquet, "Parquet is written before Kafka"
            messages = list(messages)
            real_publish(producer, topic_, messages[:50], **kwargs)  # half delivered, then the ack is lost
            raise KafkaDeliveryError("simulated: broker acknowledgement lost")
        return real_publish(producer, topic_, messages, **kwargs)

    monkeypatch.setattr(kafka_sink, "publish", publish_then_lose_the_ack)
    dag = load_dag_module("ct_ingest").ct_ingest__local_retry_log

    failed = dag.test()
    assert failed.state == "failed"
    state = state_of(log.slug)
    assert state["next_index"] == 0, "state does not advance past an unacknowledged range"
    files_after_failure = sorted(p.name for p in (lake / "certs").rglob("*.parquet"))

    rerun = dag.test()
    assert rerun.state == "success"
    state = state_of(log.slug)
    assert (state["next_index"], state["entries_ingested"]) == (120, 120), "advanced exactly once"
    assert sorted(p.name for p in (lake / "certs").rglob("*.parquet")) == files_after_failure, "same file rewritten"
    assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(120))

    records = consume_all(kafka_broker.bootstrap_servers, topic, timeout=30)
    keys = [record.key.decode() for record in records]
    assert set(keys) == {f"{log.log_id_b64}:{i}" for i in range(120)}
    assert len(keys) == 170, "at-least-once: the 50 sent before the failure are sent again, same keys"


def test_undecodable_entries_land_in_errors_and_never_stop_the_range(airflow_db, ct_server, tmp_path, monkeypatch):
    log = ct_server.add_log("Local Malformed Log", initial_size=60, faults=Faults(cap=25, malformed=frozenset({5, 17, 40})))
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="")
    dag = load_dag_module("ct_ingest").ct_ingest__local_malformed_log
    assert dag.test().state == "success"
    certs = [i for i, _ in lake_rows(lake, "certs", log.slug)]
    errors = lake_rows(lake, "errors", log.slug)
    assert [i for i, _ in errors] == [5, 17, 40]
    assert certs == [i for i in range(60) if i not in {5, 17, 40}]
    for index, reason in errors:
        assert log.slug in reason and f"index {index}" in reason
    state = state_of(log.slug)
    assert (state["next_index"], state["entries_ingested"], state["errors_ingested"]) == (60, 57, 3)


def test_start_at_latest_skips_history_and_idle_runs_skip_fetch(airflow_db, ct_server, tmp_path, monkeypatch):
    log = ct_server.add_log("Local Latest Log", initial_size=80)
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_START_AT="latest")
    dag = load_dag_module("ct_ingest").ct_ingest__local_latest_log
    run = dag.test()
    assert run.state == "success"
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"ingest": "success", "fetch": "skipped", "commit": "skipped"}
    assert xcom_of(run, "ingest", "result")["entries"] == 0 and xcom_of(run, "ingest") == []
    assert state_of(log.slug)["next_index"] == 80
    assert not (lake / "certs").exists()
    log.grow(15)
    log.publish()
    assert dag.test().state == "success"
    assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(80, 95))


def test_missing_kafka_connection_fails_the_task_clearly(airflow_db, ct_server, tmp_path, monkeypatch):
    from ctlib.kafka import KafkaConfigError, producer_from_connection

    monkeypatch.delenv("AIRFLOW_CONN_KAFKA_NOWHERE", raising=False)
    with pytest.raises(KafkaConfigError, match=r"'kafka_nowhere' \(CT_KAFKA_CONN_ID\) is not configured"):
        producer_from_connection("kafka_nowhere")
    log = ct_server.add_log("Local No Kafka Log", initial_size=10)
    configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="kafka_nowhere", CT_TASK_RETRIES="0")
    dag = load_dag_module("ct_ingest").ct_ingest__local_no_kafka_log
    assert dag.test().state == "failed"
    assert state_of(log.slug)["next_index"] == 0


def _certs_events(with_task: bool = False) -> list:
    """The extras of every ct://certs asset event so far, oldest first (with `with_task`:
    (the task that emitted it, extra))."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_task_id, AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "ct_certs").order_by(AssetEvent.id)
        )
        return [(task, extra) if with_task else extra for task, extra in rows]


def test_small_backlog_is_done_by_ingest_alone_large_one_maps_fetch(airflow_db, ct_server, tmp_path, monkeypatch):
    """The grid tells the truth: the task that did the work succeeded and says how much;
    a task shown skipped had nothing to do; commits are announced one way (the certs alias)."""
    log = ct_server.add_log("Local Inline Log", initial_size=150)
    lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="",
                     CT_ENTRIES_PER_TASK="100", CT_ENTRIES_PER_RUN="1000")
    dag = load_dag_module("ct_ingest").ct_ingest__local_inline_log
    before = len(_certs_events())

    # 150 entries: two ranges of at most 100, so fetch is mapped (each labelled by its range)
    # and commit commits; the plan reaches commit once, as ingest's `plan` XCom.
    run = dag.test()
    tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
    assert run.state == "success"
    assert {key: ti.state for key, ti in tis.items()} == {
        ("ingest", -1): "success", ("fetch", 0): "success", ("fetch", 1): "success", ("commit", -1): "success"}
    assert [tis["fetch", i].rendered_map_index for i in (0, 1)] == ["[0, 100)", "[100, 150)"]
    assert xcom_of(run, "ingest") == [{"start": 0, "end": 100}, {"start": 100, "end": 150}]
    assert xcom_of(run, "ingest", "result") == {"done_here": False, "entries": 0, "planned": 150, "ranges": 2}
    assert xcom_of(run, "ingest", "plan")["ranges"] == [(0, 100), (100, 150)]
    assert xcom_of(run, "commit")["entries"] == 150
    assert state_of(log.slug)["next_index"] == 150

    # 60 new entries fit in one range: ingest fetches and commits them and says so; fetch and
    # commit, with nothing to do, are skipped.
    log.grow(60)
    log.publish()
    run = dag.test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success" and states == {"ingest": "success", "fetch": "skipped", "commit": "skipped"}
    result = xcom_of(run, "ingest", "result")
    assert result["done_here"] and (result["entries"], result["certs"], result["next_index"]) == (60, 60, 210)
    assert xcom_of(run, "ingest", "plan") is None
    assert state_of(log.slug)["next_index"] == 210
    assert [i for i, _ in lake_rows(lake, "certs", log.slug)] == list(range(210))
    assert [task for task, _ in _certs_events(with_task=True)[before:]] == ["commit", "ingest"]

    # Idle: ingest alone, and no asset event.
    assert dag.test().state == "success"
    events = [e for e in _certs_events()[before:] if e.get("log") == log.slug]
    assert [(e["start"], e["end"]) for e in events] == [(0, 150), (150, 210)]
    assert len(events[0]["files"]) == 2 and len(events[1]["files"]) == 1
    assert all(Path(f).exists() for e in events for f in e["files"])
