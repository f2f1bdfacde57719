"""The runtime edges: the tansu broker, the embedded PostgreSQL, and bin/airflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from ctlib.localsvc import port_accepts
from ctlib.localsvc.broker import BrokerError, LocalBroker, connection_json, consume_all
from ctlib.localsvc.postgres import EmbeddedPostgres
from ctlib.localsvc.run import ensure_admin_password, standalone_env
from tests.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

VENV_BIN = PROJECT_ROOT / ".venv" / "bin"


def _topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- tansu


def test_idempotent_producer_round_trip(kafka_broker):
    from confluent_kafka import Producer

    topic = _topic()
    producer = Producer(
        {"bootstrap.servers": kafka_broker.bootstrap_servers, "enable.idempotence": True,
         "acks": "all", "linger.ms": 5}
    )  # fmt: skip
    errors = []
    for i in range(500):
        producer.produce(topic, key=f"k{i}".encode(), value=json.dumps({"i": i}).encode(),
                         on_delivery=lambda err, msg: err and errors.append(err))  # fmt: skip
    assert producer.flush(20) == 0
    assert errors == []

    records = consume_all(kafka_broker.bootstrap_servers, topic, timeout=20)
    assert sorted(r.key for r in records) == sorted(f"k{i}".encode() for i in range(500))
    assert {r.json()["i"] for r in records} == set(range(500))
    key, value = records[0]  # a record iterates as (key, value)
    assert key == records[0].key and value == records[0].value
    assert consume_all(kafka_broker.bootstrap_servers, "no-such-topic", timeout=5) == []


def test_consumer_group_reads_and_resumes(kafka_broker):
    """Classic consumer groups work; tansu's first join takes ~session.timeout.ms / 2."""
    from confluent_kafka import Consumer, Producer

    topic, group = _topic(), f"g-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap_servers, "acks": "all"})
    for i in range(50):
        producer.produce(topic, key=str(i).encode(), value=b"v")
    assert producer.flush(10) == 0

    def consumer() -> Consumer:
        c = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": group,
                      "auto.offset.reset": "earliest", "enable.auto.commit": False,
                      "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})  # fmt: skip
        c.subscribe([topic])
        return c

    first, seen, deadline = consumer(), 0, time.monotonic() + 30
    while seen < 50 and time.monotonic() < deadline:
        msg = first.poll(0.5)
        if msg is not None and not msg.error():
            seen += 1
    assert seen == 50
    first.commit(asynchronous=False)
    first.close()

    producer.produce(topic, key=b"late", value=b"after the commit")
    assert producer.flush(10) == 0
    second, got, deadline = consumer(), [], time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        msg = second.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg.key())
    second.close()
    assert got == [b"late"], "the group resumes from its committed offsets"


def test_airflow_kafka_producer_hook_with_env_connection(kafka_broker, monkeypatch):
    from airflow.providers.apache.kafka.hooks.produce import KafkaProducerHook

    env = kafka_broker.airflow_env()
    assert env == {"AIRFLOW_CONN_KAFKA_DEFAULT": connection_json(kafka_broker.bootstrap_servers)}
    assert json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"]) == {
        "conn_type": "kafka", "extra": {"bootstrap.servers": kafka_broker.bootstrap_servers}
    }  # fmt: skip
    monkeypatch.setenv(*env.popitem())
    topic = _topic()
    producer = KafkaProducerHook(kafka_config_id="kafka_default").get_producer()
    reports = []
    producer.produce(topic, key=b"hook", value=b"hello", on_delivery=lambda e, m: reports.append(e))
    assert producer.flush(10) == 0 and reports == [None]
    records = consume_all(kafka_broker.bootstrap_servers, topic)
    assert [tuple(r) for r in records] == [(b"hook", b"hello")]


def test_broker_stops_promptly_with_clients_and_reports_a_taken_port():
    from confluent_kafka import Producer

    broker = LocalBroker(topics=[]).start()
    try:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        producer.produce("x", b"x")
        assert producer.flush(10) == 0
        with pytest.raises(BrokerError, match="taken"):
            LocalBroker(broker.port, startup_timeout=3).start()
        started = time.monotonic()
        broker.stop()
        assert time.monotonic() - started < 3, "SIGINT stops tansu even with connected clients"
        assert not port_accepts(broker.port)
    finally:
        broker.stop()  # twice is fine


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def open_tmp():
    """A temp folder others may traverse (0755), so that the embedded PostgreSQL's user can
    reach it without any permission change (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ct-localsvc-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _modes(path: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mode for p in path.parents}


def test_embedded_postgres_ensure_is_idempotent_and_stop_works(open_tmp):
    import psycopg2

    data = open_tmp / "pg"
    before = _modes(data)
    pg = EmbeddedPostgres(data, port=0)
    try:
        url = pg.ensure_running()
        assert url.startswith("postgresql+psycopg2://postgres@127.0.0.1:")
        assert url.endswith("/airflow")
        port = pg.running_port()
        assert url.endswith(f":{port}/airflow")
        assert _modes(data) == before, "no parent folder of the data was opened up"
        assert not [c for c in pg.changes if c.startswith("chmod") and str(open_tmp) in c]

        dsn = dict(host="127.0.0.1", port=port, user="postgres", dbname="airflow")
        with psycopg2.connect(**dsn) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
            # a dead client's open transaction (and its row locks) ends after a minute
            cur.execute("SELECT setting FROM pg_settings WHERE name = 'idle_in_transaction_session_timeout'")
            assert cur.fetchone() == ("60000",)
        conn.close()

        again = EmbeddedPostgres(data)  # another handle (e.g. another process) finds it running
        assert again.ensure_running() == url

        assert pg.stop() is True
        assert pg.running_port() is None and not port_accepts(port)
        assert pg.stop() is False

        url2 = EmbeddedPostgres(data, port=0).ensure_running()  # restarts on the same data
        port2 = int(url2.rsplit(":", 1)[1].split("/")[0])
        with psycopg2.connect(**{**dsn, "port": port2}) as conn, conn.cursor() as cur:
            cur.execute("SELECT x FROM kept")
            assert cur.fetchall() == [(42,)]
        conn.close()
    finally:
        pg.stop()


# --------------------------------------------------------------------------- bin/airflow


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Airflow settings (the integration conftest sets some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(extra)
    return env


@pytest.fixture
def project_copy(open_tmp):
    """A project skeleton with bin/airflow, using the real .venv: where it puts .run/ and
    .airflow/ shows which defaults it took."""
    (open_tmp / "bin").mkdir()
    shutil.copy2(PROJECT_ROOT / "bin" / "airflow", open_tmp / "bin" / "airflow")
    (open_tmp / "dags").mkdir()
    (open_tmp / "plugins").mkdir()
    return open_tmp


def _bin_airflow(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    env = {**env, "CT_VENV": str(PROJECT_ROOT / ".venv")}
    return subprocess.run(
        [str(project / "bin" / "airflow"), *args], env=env, capture_output=True, text=True,
        timeout=300, cwd=project,
    )  # fmt: skip


def test_bin_airflow_honours_home_and_database_from_the_environment(project_copy, open_tmp):
    home = open_tmp / "home"
    home.mkdir()
    env = _clean_env(
        AIRFLOW_HOME=str(home), AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db"
    )
    result = _bin_airflow(project_copy, "db", "migrate", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (home / "airflow.db").is_file()
    assert not (project_copy / ".run").exists(), "no embedded PostgreSQL with a database set"
    assert not (project_copy / ".airflow").exists(), "AIRFLOW_HOME from the environment"

    result = _bin_airflow(project_copy, "config", "get-value", "core", "dags_folder", env=env)
    assert result.returncode == 0 and result.stdout.strip() == str(project_copy / "dags")
    assert _bin_airflow(project_copy, "no-such-command", env=env).returncode == 2


def test_bin_airflow_defaults_to_embedded_postgres_and_migrates_once(project_copy):
    env = _clean_env()
    try:
        first = _bin_airflow(
            project_copy, "config", "get-value", "database", "sql_alchemy_conn", env=env
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert first.stdout.strip().startswith("postgresql+psycopg2://postgres@127.0.0.1:")
        assert "migrating the Airflow database" in first.stderr
        assert (project_copy / ".airflow").is_dir()
        assert (project_copy / ".run" / "postgres" / ".ct-airflow-migrated").is_file()

        second = _bin_airflow(project_copy, "config", "get-value", "core", "load_examples", env=env)
        assert second.returncode == 0 and second.stdout.strip() == "False", second.stderr[-3000:]
        assert "migrating" not in second.stderr, "migrated once per Airflow version"
    finally:
        EmbeddedPostgres(project_copy / ".run" / "postgres").stop()


# --------------------------------------------------------------------------- make run settings


def test_run_defaults_yield_to_the_environment(tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PARALLELISM": "3"}
    standalone_env(env, 8081)
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8081"
    assert ensure_admin_password(env) == ("admin", "admin")
    passwords = tmp_path / "simple_auth_manager_passwords.json.generated"
    passwords.write_text(json.dumps({"admin": "kept"}))
    assert ensure_admin_password(env) == ("admin", "kept")
