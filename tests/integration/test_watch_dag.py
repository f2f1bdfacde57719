"""ct_watch end to end with `dag.test()`: certificates for watched names in a local CT log are
ingested, matched against CT_WATCHLIST, kept once per issuance in watch_matches and notified
once per issuance through a local webhook receiver, also when the webhook fails mid-way and
Airflow retries the task; a precertificate's final certificate, a later run, does not notify
again. ct_score's phishing notification goes through the same channel, batched per run."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from ctlib.testing.ctlog import LogServer
from ctlib.testing.receivers import SmtpReceiver, WebhookReceiver
from tests.support.airflow import configure, load_dag_module, run_dag, state_of

pytestmark = pytest.mark.integration

WATCHLIST = """# ours
.example.com
www.example.org
"""


def _rows(lake, table: str, order: str) -> list[dict]:
    return duckdb.sql(f"select * from read_parquet('{lake}/{table}/**/*.parquet') order by {order}").to_arrow_table().to_pylist()


def test_watched_issuances_are_kept_and_notified_once(airflow_db, tmp_path, monkeypatch):
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(WATCHLIST)
    with LogServer() as ct_server, WebhookReceiver() as hook, SmtpReceiver() as smtp:
        # Seed 3: this log's generator follows the precertificate below with its final certificate.
        log = ct_server.add_log("Local Watch Log", initial_size=10, seed=3)
        precert = log.submit(["login.example.com"], entry_type="precert")
        log.submit(["*.example.org", "example.org"], entry_type="x509")  # covers www.example.org
        log.submit(["mail.example.net", "example.com.evil.net"], entry_type="x509")  # no match
        log.publish()
        lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_WATCHLIST=str(watchlist),
                         CT_TASK_RETRIES="2", CT_TASK_RETRY_DELAY="1", CT_NOTIFY_EMAIL_TO="soc@example.org")
        for name, value in {**hook.airflow_conn_env("ct_webhook"), **smtp.airflow_conn_env("ct_smtp")}.items():
            monkeypatch.setenv(name, value)
        ingest = load_dag_module("ct_ingest").ct_ingest__local_watch_log
        watch = load_dag_module("ct_watch").ct_watch

        assert ingest.test().state == "success"
        hook.fail_next(1, 500, after=1)  # the second notice fails once in match: its notify task sends the rest
        assert watch.test().state == "success"
        accepted = hook.accepted
        assert sorted(r.body["watch_items"][0] for r in accepted) == [".example.com", "www.example.org"]
        assert len(hook.received) == 3, "one refused POST, then each notice exactly once"
        login = next(r.body for r in accepted if r.body["watch_items"] == [".example.com"])
        assert (login["index"], login["entry_type"], login["names"]) == (precert, "precert", ["login.example.com"])
        assert login["crtsh"].endswith(login["cert_sha256"])
        # E-mail, its own notify task: the same two issuances, one message each, to the recipient.
        assert sorted(m.subject for m in smtp.accepted) == sorted(r.body["title"] for r in accepted)
        assert all(m.rcpt_tos == ("soc@example.org",) for m in smtp.accepted)

        # The precertificate's final certificate arrives in a later ingest run (a later ct_watch run).
        log.grow(40)
        log.publish()
        assert ingest.test().state == "success"
        rows = _rows(lake, "certs", "index")
        final = [r for r in rows if r["entry_type"] == "x509" and r["dns_names"] == ["login.example.com"]]
        assert final, "the log emitted the precertificate's final certificate"
        assert watch.test().state == "success"
        assert len(hook.accepted) == 2 and len(smtp.accepted) == 2, "the final certificate joins its issuance: no new notification"
        matches = _rows(lake, "watch_matches", "watch_item")
        assert [(m["watch_item"], m["entry_type"]) for m in matches] == [(".example.com", "x509"), ("www.example.org", "x509")]
        assert matches[0]["cert_sha256"] == final[0]["cert_sha256"] and matches[0]["precert_sha256"] == login["cert_sha256"]

        # A manual re-run over everything: nothing kept twice, nothing sent again.
        everything = {"log": log.slug, "start_index": 0, "end_index": state_of(log.slug)["next_index"]}
        assert watch.test(run_conf=everything).state == "success"
        assert len(hook.accepted) == 2 and len(_rows(lake, "watch_matches", "watch_item")) == 2
        record = _rows(lake, "notifications", "sent_at")
        assert sorted((r["channel"], r["kind"], r["key"]) for r in record) == sorted(
            (channel, "watch", m["tbs_sha256"]) for m in matches for channel in ("email", "webhook"))

        # The analysts' command over the ingested lake lists exactly these issuances.
        listed = subprocess.run([sys.executable, "-m", "ctlib.watch", "--lake", str(lake), "--watchlist", str(watchlist),
                                 "--format", "json"], capture_output=True, text=True, check=True)
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert sorted((r["watch_item"], r["tbs_sha256"], r["cert_sha256"], r["entry_type"]) for r in rows) == sorted(
            (m["watch_item"], m["tbs_sha256"], m["cert_sha256"], m["entry_type"]) for m in matches)


def test_a_channel_that_keeps_failing_fails_its_task_and_keeps_the_matches(airflow_db, tmp_path, monkeypatch, capfd):
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text(WATCHLIST)
    with LogServer() as ct_server, WebhookReceiver() as hook:
        log = ct_server.add_log("Local Watch Fail Log", initial_size=5)
        log.submit(["shop.example.com"], entry_type="x509")
        log.publish()
        lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_WATCHLIST=str(watchlist),
                         CT_TASK_RETRIES="1", CT_TASK_RETRY_DELAY="1")
        for name, value in hook.airflow_conn_env("ct_webhook").items():
            monkeypatch.setenv(name, value)
        assert load_dag_module("ct_ingest").ct_ingest__local_watch_fail_log.test().state == "success"
        hook.fail_next(10, 503)
        state, output = run_dag(load_dag_module("ct_watch").ct_watch, capfd)
        assert state == "failed"
        assert "webhook" in output and "ct_webhook" in output, "the failure names the channel and its connection"
        assert len(hook.received) == 3 and hook.accepted == [], "tried by match, then by notify and its one retry"
        assert [m["names"] for m in _rows(lake, "watch_matches", "watch_item")] == [["shop.example.com"]]
        assert not (lake / "notifications").exists() or _rows(lake, "notifications", "sent_at") == []


def test_phishing_alerts_are_notified_once_per_issuance_in_one_message_per_run(airflow_db, tmp_path, monkeypatch):
    with LogServer() as ct_server, WebhookReceiver() as hook:
        # Seed 3: the precertificate below gets its final certificate some entries later.
        log = ct_server.add_log("Local Phish Notify Log", initial_size=10, seed=3)
        precert = log.submit(["paypal.com.secure-login.maple12-orbit.top"], entry_type="precert")
        log.submit(["secure-login.paypa1-support.com", "www.secure-login.paypa1-support.com"], entry_type="x509")
        log.publish()
        lake = configure(monkeypatch, tmp_path, ct_server, None, CT_KAFKA_CONN_ID="", CT_NOTIFY_MIN_SCORE="65")
        for name, value in hook.airflow_conn_env("ct_webhook").items():
            monkeypatch.setenv(name, value)
        ingest = load_dag_module("ct_ingest").ct_ingest__local_phish_notify_log
        score = load_dag_module("ct_score").ct_score

        assert ingest.test().state == "success"
        assert score.test().state == "success"
        (message,) = [r.body for r in hook.accepted]
        assert message["kind"] == "phishing" and len(message["items"]) == 2, "one message for the run's alerts"
        assert {i["index"] for i in message["items"]} == {precert, precert + 1}
        assert all(i["score"] >= 65 for i in message["items"])

        log.grow(40)  # the precertificate's final certificate: the same issuance alerts again...
        log.publish()
        assert ingest.test().state == "success"
        assert score.test().state == "success"
        alerted = {r["name"] for r in _rows(lake, "alerts", "index") if r["index"] > precert + 1}
        assert "paypal.com.secure-login.maple12-orbit.top" in alerted
        assert len(hook.accepted) == 1, "...and is not notified again"
