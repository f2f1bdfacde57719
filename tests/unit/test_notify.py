"""ctlib.downstream.notify: notices from watch matches and alerts, and their delivery through
Airflow's notifiers to the local receivers of ctlib.testing.receivers (real HTTP and SMTP
servers on 127.0.0.1), with the delivery record in the lake read back with DuckDB.

Connections come from AIRFLOW_CONN_<ID> variables, which the Task SDK reads in a plain
process (no metadata database needed)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import requests

import tests.support.airflow  # noqa: F401  (a throw-away AIRFLOW_HOME before the notifiers import airflow)
from ctlib.downstream import notify
from ctlib.downstream.notify import (
    CHANNELS,
    RECORD_DAYS,
    DeliveryReport,
    Notice,
    NotificationError,
    configured_channels,
    deliver,
    phishing_notices,
    watch_notices,
)
from ctlib.downstream.watch_query import CRTSH
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file
from ctlib.lake.query import connect
from ctlib.settings import Settings
from ctlib.testing.receivers import Received, SmtpReceiver, WebhookReceiver, describe

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({"CT_NOTIFY_EMAIL_TO": "soc@example.org, oncall@example.org"})
HOSTILE = ["<script>alert(1)</script>.example.com", "{{ 7*7 }}.example.com"]
TBS = [f"{n:x}" * 64 for n in range(10, 16)]  # six issuances: aaaa..., bbbb..., ...


def watch_row(tbs: str, item: str, names: list[str], *, index: int = 7, entry_type: str = "precert",
              cert: str = "1" * 64, timestamp: datetime = T0, updated: datetime = T0) -> dict:
    return {
        "watch_item": item, "tbs_sha256": tbs, "names": names, "cert_sha256": cert,
        "precert_sha256": "1" * 64, "entry_type": entry_type, "log_slug": "argon2026h2", "index": index,
        "timestamp": timestamp, "issuer": "CN=R10,O=Let's Encrypt,C=US", "not_before": T0,
        "not_after": T0 + timedelta(days=90), "crtsh": CRTSH + cert, "run_id": "scheduled__x",
        "matched_at": T0, "updated_at": updated,
    }


def alert_row(tbs: str, name: str, score: float, *, brand: str | None = "paypal", index: int = 3) -> dict:
    return {
        "log_id": "bG9n", "log_slug": "xenon2026h2", "index": index, "timestamp": T0, "cert_sha256": "2" * 64,
        "entry_type": "x509", "issuer_org": "Let's Encrypt", "name": name, "registered_domain": name.split(".", 1)[-1],
        "brand": brand, "score": score, "alert": True, "rules": [f"brand_lookalike={score:g}"], "scored_at": T0,
        "tbs_sha256": tbs,
    }


def watch(n: int, names: list[str] | None = None) -> Notice:
    """The watch notice of issuance TBS[n]."""
    (notice,) = watch_notices([watch_row(TBS[n], ".example.com", names or [f"host{n}.example.com"], index=n)])
    return notice


def phish(n: int) -> Notice:
    (notice,) = phishing_notices([alert_row(TBS[n], f"paypal-{n}.login.example", 90.0 + n, index=n)], 0)
    return notice


def record(lake: Lake) -> list[tuple]:
    """The delivery record: (channel, kind, key, title, dag_id, run_id) rows, oldest first."""
    return connect(lake.root).execute(
        "select channel, kind, key, title, dag_id, run_id from notifications order by sent_at, key").fetchall()


def send(lake: Lake, channel: str, notices: list[Notice], *, run_id: str = "run-1", try_number: int = 1,
         batched: bool = False, settings: Settings = SETTINGS) -> DeliveryReport:
    return deliver(lake, channel, notices, settings=settings, dag_id="ct_watch", run_id=run_id,
                   try_number=try_number, batched=batched)


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
def no_notify_connections(monkeypatch):
    """Only the connections a test sets exist."""
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_CT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def lake(tmp_path) -> Lake:
    return Lake.open(str(tmp_path / "lake"))


@pytest.fixture
def webhook(monkeypatch):
    with WebhookReceiver() as receiver:
        set_env(monkeypatch, receiver.airflow_conn_env("ct_webhook"))
        yield receiver


@pytest.fixture
def slack(monkeypatch):
    with WebhookReceiver() as receiver:
        set_env(monkeypatch, receiver.slack_conn_env("ct_slack"))
        yield receiver


@pytest.fixture
def smtp(monkeypatch):
    with SmtpReceiver() as receiver:
        set_env(monkeypatch, receiver.airflow_conn_env("ct_smtp"))
        yield receiver


# --------------------------------------------------------------------------- notices


def test_watch_notices_one_per_issuance_listing_every_item_and_name():
    later = T0 + timedelta(minutes=5)
    rows = [
        watch_row(TBS[0], ".example.com", ["www.example.com", "example.com"]),
        watch_row(TBS[1], "shop.example.org", ["shop.example.org"], index=9, entry_type="x509", cert="3" * 64),
        # The same issuance under a second item, its final certificate seen since (later, other log entry).
        watch_row(TBS[0], "www.example.com", ["www.example.com"], index=12, entry_type="x509", cert="4" * 64,
                  timestamp=later, updated=later),
    ]
    first, second = watch_notices(rows)
    assert (first.kind, first.key, second.key) == ("watch", TBS[0], TBS[1])
    assert first.title == "New certificate for example.com and 1 more (watch .example.com, www.example.com) in argon2026h2 #7"
    assert second.title == "New certificate for shop.example.org (watch shop.example.org) in argon2026h2 #9"
    payload = first.payload
    assert payload["watch_items"] == [".example.com", "www.example.com"]
    assert payload["names"] == ["example.com", "www.example.com"]
    assert payload["matches"] == [
        {"watch_item": ".example.com", "names": ["example.com", "www.example.com"]},
        {"watch_item": "www.example.com", "names": ["www.example.com"]},
    ]
    # First seen: the earliest entry; the certificate: the final one, seen later.
    assert (payload["log_slug"], payload["index"], payload["timestamp"]) == ("argon2026h2", 7, T0.isoformat())
    assert (payload["entry_type"], payload["cert_sha256"], payload["crtsh"]) == ("x509", "4" * 64, CRTSH + "4" * 64)
    assert payload["not_after"] == (T0 + timedelta(days=90)).isoformat()
    json.dumps(payload)  # JSON-able as it is
    (pre,) = watch_notices([watch_row(TBS[2], ".example.com", ["a.example.com"])])
    assert pre.title.startswith("New precertificate for a.example.com ")


def test_phishing_notices_keep_the_min_score_one_per_issuance_best_first():
    rows = [
        alert_row(TBS[0], "paypal.com.secure-login.xyz", 95.0),
        alert_row(TBS[0], "www.paypal.com.secure-login.xyz", 97.5, brand="paypal"),
        alert_row(TBS[0], "mail.secure-login.xyz", 60.0, brand=None),  # below: not named
        alert_row(TBS[1], "appleid-verify.top", 99.0, brand="apple", index=4),
        alert_row(TBS[2], "login-bank.example", 89.9, brand=None),  # below: no notice
    ]
    notices = phishing_notices(rows, 90.0)
    assert [n.key for n in notices] == [TBS[1], TBS[0]]
    apple, paypal = notices
    assert apple.title == "Possible phishing: appleid-verify.top (brand apple, score 99) in xenon2026h2 #4"
    assert paypal.payload["names"] == ["www.paypal.com.secure-login.xyz", "paypal.com.secure-login.xyz"]
    assert (paypal.payload["score"], paypal.payload["best_name"]) == (97.5, "www.paypal.com.secure-login.xyz")
    assert paypal.payload["rules"] == ["brand_lookalike=97.5"]
    assert paypal.payload["crtsh"] == CRTSH + "2" * 64
    assert paypal.title == ("Possible phishing: www.paypal.com.secure-login.xyz and 1 more (brand paypal, score 97.5) "
                            "in xenon2026h2 #3")
    assert phishing_notices(rows, 99.5) == []


def test_titles_stay_one_line_whatever_a_certificate_says():
    (notice,) = watch_notices([watch_row(TBS[0], ".example.com", ["evil\r\nBcc: victim@example.org.example.com"])])
    assert "\n" not in notice.title and "\r" not in notice.title
    assert "evil??Bcc: victim@example.org.example.com" in notice.title


# --------------------------------------------------------------------------- webhook


def test_webhook_one_post_per_notice_recorded_and_never_twice(lake, webhook):
    notices = [watch(0), watch(1)]
    assert send(lake, "webhook", notices) == DeliveryReport("webhook", sent=2, skipped=0, messages=2)
    posts = webhook.wait_for(2)
    assert [p.path for p in posts] == ["/hook", "/hook"]
    first = posts[0].body
    assert (first["kind"], first["key"], first["title"]) == ("watch", TBS[0], notices[0].title)
    assert first["names"] == ["host0.example.com"] and first["crtsh"] == CRTSH + "1" * 64
    assert posts[0].headers["Content-Type"] == "application/json"
    assert record(lake) == [("webhook", "watch", n.key, n.title, "ct_watch", "run-1") for n in notices]

    # A retry of the task, then a later run whose issuance is the same (a final certificate).
    assert send(lake, "webhook", notices, try_number=2) == DeliveryReport("webhook", 0, 2, 0)
    assert send(lake, "webhook", [watch(1, ["other.example.com"])], run_id="run-2") == DeliveryReport("webhook", 0, 1, 0)
    assert len(webhook.received) == 2 and len(record(lake)) == 2


def test_a_failed_post_stops_the_run_and_the_retry_sends_only_the_rest(lake, webhook):
    notices = [watch(0), watch(1), watch(2)]
    webhook.fail_next(1, status=500, after=1)
    with pytest.raises(NotificationError) as failed:
        send(lake, "webhook", notices)
    message = str(failed.value)
    assert failed.value.channel == "webhook"
    assert message.startswith("webhook: 2 of 3 watch notices not delivered through connection ct_webhook: ")
    assert "500" in message
    assert [row[2] for row in record(lake)] == [TBS[0]]

    assert send(lake, "webhook", notices, try_number=2) == DeliveryReport("webhook", 2, 1, 2)
    assert [p.status for p in webhook.received] == [200, 500, 200, 200]
    assert [p.body["key"] for p in webhook.accepted] == [TBS[0], TBS[1], TBS[2]]
    assert sorted(row[2] for row in record(lake)) == [TBS[0], TBS[1], TBS[2]]


def test_a_redirect_is_not_a_delivery(lake, webhook):
    webhook.fail_next(1, status=301)
    with pytest.raises(NotificationError, match=r"webhook: 1 of 1 .*301"):
        send(lake, "webhook", [watch(0)])
    assert record(lake) == []
    assert [p.path for p in webhook.received] == ["/hook"]  # not followed


def test_batched_phishing_is_one_post_per_run_and_never_again(lake, webhook):
    notices = [phish(2), phish(1), phish(0)]
    report = send(lake, "webhook", notices, batched=True, run_id="asset_triggered__1")
    assert report == DeliveryReport("webhook", sent=3, skipped=0, messages=1)
    (post,) = webhook.wait_for(1)
    body = post.body
    assert (body["kind"], body["run_id"]) == ("phishing", "asset_triggered__1")
    assert body["title"] == f"3 phishing alerts: {notices[0].title} (and 2 more)"
    assert [item["key"] for item in body["items"]] == [TBS[2], TBS[1], TBS[0]]
    assert body["items"][0]["score"] == 92.0 and body["items"][0]["title"] == notices[0].title
    assert [(row[1], row[2]) for row in record(lake)] == [("phishing", TBS[0]), ("phishing", TBS[1]), ("phishing", TBS[2])]

    assert send(lake, "webhook", notices, batched=True, run_id="asset_triggered__1", try_number=2).messages == 0
    assert send(lake, "webhook", notices[:1] + [phish(3)], batched=True, run_id="asset_triggered__2") == \
        DeliveryReport("webhook", 1, 1, 1)
    assert [item["key"] for item in webhook.wait_for(2)[1].body["items"]] == [TBS[3]]
    # Watch notices of the same issuances are another kind: not skipped.
    assert send(lake, "webhook", [watch(2)], run_id="watch-run").sent == 1


def test_the_same_attempt_run_again_keeps_what_it_recorded(lake, webhook):
    send(lake, "webhook", [watch(0)])
    assert send(lake, "webhook", [watch(0), watch(1)]) == DeliveryReport("webhook", 1, 1, 1)
    assert [row[2] for row in record(lake)] == [TBS[0], TBS[1]]
    assert send(lake, "webhook", [watch(0), watch(1)], run_id="run-2").sent == 0


def test_the_record_covers_the_last_record_days(lake, webhook):
    today = datetime.now(UTC).date()
    for days_ago, n in ((RECORD_DAYS - 1, 0), (RECORD_DAYS, 1)):
        day = today - timedelta(days=days_ago)
        row = {"sent_at": datetime.combine(day, datetime.min.time(), UTC), "channel": "webhook", "kind": "watch",
               "key": TBS[n], "title": "old", "dag_id": "ct_watch", "run_id": f"old-{n}"}
        write_file(lake, layout.day_dir(lake.root, layout.NOTIFICATIONS, day),
                   layout.notification_file_name("webhook", f"old-{n}", 1),
                   pa.Table.from_pylist([row], schema=layout.NOTIFICATIONS_SCHEMA))
    assert send(lake, "webhook", [watch(0), watch(1)]) == DeliveryReport("webhook", 1, 1, 1)
    assert [p.body["key"] for p in webhook.received] == [TBS[1]]


def test_hostile_names_reach_the_webhook_as_they_are(lake, webhook):
    notice = watch(0, HOSTILE)
    send(lake, "webhook", [notice])
    (post,) = webhook.wait_for(1)
    assert post.body["names"] == HOSTILE and post.body["title"] == notice.title
    assert "{{ 7*7 }}" in json.dumps(post.body)


# --------------------------------------------------------------------------- slack


def test_slack_through_the_fake_incoming_webhook_never_shows_the_token(lake, slack, caplog, capfd):
    caplog.set_level(logging.INFO)
    notice = watch(0, HOSTILE)
    assert send(lake, "slack", [notice]) == DeliveryReport("slack", 1, 0, 1)
    (post,) = slack.wait_for(1)
    assert post.path == "/" + slack.slack_token
    text = post.body["text"]
    assert text.splitlines()[0] == "*New precertificate for &lt;script&gt;alert(1)&lt;/script&gt;.example.com and 1 more " \
                                   "(watch .example.com) in argon2026h2 #0*"
    assert "{{ 7*7 }}.example.com" in text and "<script>" not in text
    assert f"crt.sh: {CRTSH}{'1' * 64}" in text and "log: argon2026h2 #0 (precert, " in text

    batch = [phish(n) for n in range(3)]
    slack.fail_next(1, status=500)
    with pytest.raises(NotificationError) as failed:
        send(lake, "slack", batch, batched=True)
    assert str(failed.value).startswith("slack: 3 of 3 phishing notices not delivered through connection ct_slack: ")
    assert send(lake, "slack", batch, batched=True, try_number=2) == DeliveryReport("slack", 3, 0, 1)
    lines = slack.wait_for(3)[2].body["text"].splitlines()
    assert lines[0].startswith("*3 phishing alerts: ") and len(lines) == 4 and lines[1].startswith("• Possible phishing")

    token_part = slack.slack_token.rsplit("/", 1)[1]
    out, err = capfd.readouterr()
    for text in (str(failed.value), str(record(lake)), caplog.text, out, err):
        assert token_part not in text


def test_a_batched_slack_message_lists_at_most_fifty_notices():
    notices = [phish(n % 6) for n in range(60)]
    lines = notify.slack_text(notices, batched=True).splitlines()
    assert len(lines) == 1 + notify.TEXT_MAX_NOTICES + 1 and lines[-1] == "… and 10 more"


# --------------------------------------------------------------------------- e-mail


def test_email_to_the_configured_recipients_escaped_and_unrendered(lake, smtp):
    notice = watch(0, HOSTILE)
    assert send(lake, "email", [notice]) == DeliveryReport("email", 1, 0, 1)
    (mail,) = smtp.wait_for(1)
    assert mail.rcpt_tos == ("soc@example.org", "oncall@example.org")
    assert mail.mail_from == notify.DEFAULT_FROM_EMAIL
    assert mail.subject == notice.title
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.example.com" in mail.body and "<script>" not in mail.body
    assert "{{ 7*7 }}.example.com" in mail.body
    assert f'<a href="{CRTSH}{"1" * 64}">' in mail.body
    assert send(lake, "email", [notice], try_number=2).skipped == 1
    assert record(lake) == [("email", "watch", TBS[0], notice.title, "ct_watch", "run-1")]


def test_email_sender_from_the_connection_and_batched(lake, monkeypatch):
    with SmtpReceiver() as smtp:
        set_env(monkeypatch, smtp.airflow_conn_env("ct_smtp", from_email="ct@example.org"))
        notices = [phish(n) for n in range(3)]
        assert send(lake, "email", notices, batched=True) == DeliveryReport("email", 3, 0, 1)
        (mail,) = smtp.wait_for(1)
    assert mail.mail_from == "ct@example.org"
    assert mail.subject == notify.batch_title(notices)
    assert mail.body.count("<h3>") == 3


def test_a_refused_email_fails_and_the_retry_sends_it(lake, smtp):
    smtp.refuse_next(1)
    with pytest.raises(NotificationError, match=r"^email: 1 of 1 watch notices not delivered through connection ct_smtp: .*554"):
        send(lake, "email", [watch(0)])
    assert record(lake) == []
    assert send(lake, "email", [watch(0)], try_number=2).sent == 1
    assert [m.refused for m in smtp.messages] == [True, False]


def test_email_without_recipients_fails(lake, smtp):
    no_one = Settings.from_env({})
    with pytest.raises(NotificationError, match=r"^email: CT_NOTIFY_EMAIL_TO names no recipient"):
        send(lake, "email", [watch(0)], settings=no_one)
    assert smtp.messages == [] and record(lake) == []


# --------------------------------------------------------------------------- channels


def test_configured_channels_are_those_with_a_connection(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="ctlib.downstream.notify")
    assert configured_channels(SETTINGS) == []
    with WebhookReceiver() as receiver, SmtpReceiver() as smtp:
        set_env(monkeypatch, receiver.airflow_conn_env("ct_webhook") | smtp.airflow_conn_env("ct_smtp"))
        caplog.clear()
        assert configured_channels(SETTINGS) == ["webhook", "email"]
        assert [r.getMessage() for r in caplog.records] == [
            "notify: slack: connection ct_slack not configured; not notified there"]
        other = Settings.from_env({"CT_NOTIFY_SLACK_CONN": "team_slack"})
        set_env(monkeypatch, receiver.slack_conn_env("team_slack"))
        assert configured_channels(other) == list(CHANNELS)


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_dead_endpoint_fails_quickly_naming_the_channel(lake, monkeypatch, caplog, capfd, channel):
    caplog.set_level(logging.INFO)
    with WebhookReceiver() as receiver, SmtpReceiver() as smtp:  # stopped at once: their ports are closed
        env = {
            "webhook": receiver.airflow_conn_env("ct_webhook", path="/hooks/secret-path-1234"),
            "slack": receiver.slack_conn_env("ct_slack"),
            "email": smtp.airflow_conn_env("ct_smtp"),
        }[channel]
        token = receiver.slack_token
    set_env(monkeypatch, env)
    started = time.monotonic()
    with pytest.raises(NotificationError) as failed:
        send(lake, channel, [watch(0), watch(1)])
    assert time.monotonic() - started < 5
    message = str(failed.value)
    conn_id = notify.connection_id(SETTINGS, channel)
    assert message.startswith(f"{channel}: 2 of 2 watch notices not delivered through connection {conn_id}: ")
    assert record(lake) == []
    out, err = capfd.readouterr()
    secrets = ["secret-path-1234", token.rsplit("/", 1)[1]]
    assert not [s for s in secrets if s in message], "a secret in the error"
    if channel == "slack":  # the HTTP hook itself logs the URL it could not reach; ours never does
        assert not [s for s in secrets if s in caplog.text + out + err], "a secret in the log"


def test_a_missing_connection_fails_delivery(lake):
    missing = r"^webhook: 1 of 1 watch notices not delivered: connection ct_webhook is not defined"
    with pytest.raises(NotificationError, match=missing):
        send(lake, "webhook", [watch(0)])


def test_nothing_to_send_needs_no_connection(lake):
    assert send(lake, "webhook", []) == DeliveryReport("webhook", 0, 0, 0)


# --------------------------------------------------------------------------- the receivers' CLI


def test_describe_prints_a_line_per_notice():
    at = datetime(2026, 12, 5, 10, 1, 2, tzinfo=UTC)
    batched = {"kind": "phishing", "title": "2 phishing alerts", "run_id": "r",
               "items": [{"key": "ab" * 32, "title": "Possible phishing: x", "crtsh": "https://crt.sh/?q=1"},
                         {"key": "cd" * 32, "title": "Possible phishing: y"}]}
    assert describe(Received("/hook", batched, {}, at, 200)) == [
        "10:01:02 phishing Possible phishing: x key=abababababababab https://crt.sh/?q=1",
        "10:01:02 phishing Possible phishing: y key=cdcdcdcdcdcdcdcd",
    ]
    assert describe(Received("/T/B/x", {"text": "*a*\nb"}, {}, at, 200)) == ["10:01:02 slack *a*", "10:01:02 slack b"]


def test_the_receiver_cli_prints_each_notification_and_stops_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "ctlib.testing.receivers", "webhook"], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = proc.stdout.readline().split()[-1]
        name, _, value = proc.stdout.readline().strip().partition("=")
        assert name == "AIRFLOW_CONN_CT_WEBHOOK" and url in value
        body = {"kind": "watch", "key": "ef" * 32, "title": "New certificate for a.example.com", "crtsh": "https://crt.sh/?q=2"}
        assert requests.post(url + "/hook", json=body, timeout=5).text == "ok"
        assert proc.stdout.readline().strip().endswith("watch New certificate for a.example.com key=efefefefefefefef "
                                                       "https://crt.sh/?q=2")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
