"""Notifications of watch matches (ct_watch) and phishing alerts (ct_score), sent through
Airflow's own notifiers and Connections, at most once per issuance, kind and channel.

A `Notice` is what one issuance (one `tbs_sha256`: a precertificate and its final certificate
are one issuance) tells a person. `watch_notices` builds one per issuance from watch_matches
rows, `phishing_notices` one per issuance from alerts rows at or above the notification
score. Both are pure.

Channels (`CHANNELS`); `configured_channels` keeps those whose Connection exists, looked up
through the Task SDK (AIRFLOW_CONN_<ID>, the metadata DB or a secrets backend):

- webhook: `HttpNotifier` POSTs JSON to the HTTP connection CT_NOTIFY_WEBHOOK_CONN. One
  notice: `{"kind", "key", "title", **payload}`; batched: `{"kind", "title", "run_id",
  "items": [{"key", "title", **payload}, ...]}`. Any answer outside 2xx fails, a redirect
  too (following it would turn the POST into a GET without its body).
- slack: `SlackWebhookNotifier` on the incoming-webhook connection CT_NOTIFY_SLACK_CONN,
  plain text.
- email: `SmtpNotifier` on CT_NOTIFY_SMTP_CONN to CT_NOTIFY_EMAIL_TO, HTML.

`deliver` sends notices on one channel and keeps the delivery record, the `notifications`
table (ctlib.lake.layout). It first reads the keys already delivered on the channel for the
kind within RECORD_DAYS and skips them, so a retried task, a re-run or a later certificate
of the same issuance never notifies twice. Unbatched (watch matches): one message per notice;
batched (phishing): one message with every notice left. After each message that went
through it rewrites this attempt's record file with everything the attempt sent so far, so
a failure midway keeps what was sent; the failure raises NotificationError and Airflow's
retry sends only the rest. Delivery is at least once: a message the endpoint took but whose
answer was lost, or whose record could not be written, is sent again by the retry.

Certificate text is hostile input. Notifiers are called through `.notify()`, never
`__call__`, and every e-mail field is given, so nothing here is rendered as a Jinja
template; e-mail is HTML-escaped, Slack text has its markup characters escaped, and titles
are one line (control characters replaced).

Secrets (a connection's password, a Slack webhook token, a token in a webhook URL's path or
query) never reach a message, log line written here, the record or an error: failures are
reported with them redacted.
"""

from __future__ import annotations

import functools
import html
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ctlib.downstream.enrich.connections import airflow_connection, redact
from ctlib.downstream.watchlist import CRTSH
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file
from ctlib.settings import Settings

log = logging.getLogger(__name__)

KINDS = ("watch", "phishing")
CHANNELS = ("webhook", "slack", "email")

RECORD_DAYS = 7
"""How far back `deliver` reads the delivery record: the date partitions of the last
RECORD_DAYS days, today included (UTC). A notice sent within them is not sent again on that
channel. Retries and re-runs come within hours, and the final certificate of an issuance is
usually logged within hours of its precertificate: a week covers them while keeping the read
small. An issuance that shows up again later is notified again."""

WEBHOOK_TIMEOUT_SECONDS = 30.0
"""The webhook request's timeout when its connection sets none (the HTTP hook has no default:
it would wait forever). A connection's `timeout` extra overrides it."""

DEFAULT_FROM_EMAIL = "ct-airflow@localhost"
"""The e-mail sender when the SMTP connection names none (its `from_email` extra, else its
login when that is an address)."""

TEXT_MAX_NOTICES = 50
"""Most notices a batched Slack or e-mail message lists, then "... and N more" (the webhook
carries them all)."""

LISTED_NAMES = 10
"""Most names a Slack or e-mail message lists for one notice."""

_CONNECTION_OF = {
    "webhook": "notify_webhook_conn",
    "slack": "notify_slack_conn",
    "email": "notify_smtp_conn",
}
_NOUNS = {"watch": ("watch match", "watch matches"), "phishing": ("phishing alert", "phishing alerts")}


@dataclass(frozen=True, slots=True)
class Notice:
    """One issuance to tell about, once per channel."""

    kind: str  # "watch" | "phishing"
    key: str  # the issuance: its tbs_sha256 (one notice per issuance and kind)
    title: str  # one line a person reads first
    payload: dict[str, Any]  # JSON-able facts (the webhook sends them as they are)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What `deliver` did on one channel."""

    channel: str
    sent: int  # notices newly delivered
    skipped: int  # notices already in the delivery record (or repeated in the input)
    messages: int  # messages sent


class NotificationError(RuntimeError):
    """A channel could not deliver: the message names the channel, its connection, how many
    notices were not delivered and the cause (secrets redacted). `channel` holds the channel."""

    def __init__(self, message: str, *, channel: str = "") -> None:
        super().__init__(message)
        self.channel = channel


# --------------------------------------------------------------------------- notices


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """`text` with every control or line-break character replaced by '?': certificate text
    must not add lines (or e-mail headers) to what a notice says."""
    return _CONTROL.sub("?", text).strip()


def _iso(value: Any) -> str | None:
    """A timestamp as ISO-8601 UTC (naive counts as UTC); a date as YYYY-MM-DD; None as None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _unique(values: Iterable[str]) -> list[str]:
    """`values` without repeats, in first-seen order."""
    return list(dict.fromkeys(values))


def _some(values: Sequence[str], shown: int) -> str:
    """The first `shown` values, then "and N more"."""
    head = ", ".join(one_line(str(v)) for v in values[:shown])
    rest = len(values) - shown
    return f"{head} and {rest} more" if rest > 0 else head


def watch_notices(rows: Sequence[Mapping[str, Any]]) -> list[Notice]:
    """One notice per issuance (tbs_sha256) of `rows` (watch_matches rows: the
    WATCH_MATCHES_SCHEMA columns, tz-aware datetimes), in first-seen order, listing every
    watch item that matched it and the names each matched."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["tbs_sha256"], []).append(row)
    return [_watch_notice(key, group) for key, group in groups.items()]


def _watch_notice(key: str, group: Sequence[Mapping[str, Any]]) -> Notice:
    # Where it was first seen: the earliest entry; what it is now: the freshest row (the
    # final certificate, once seen, replaces the precertificate's hash and type).
    first = min(group, key=lambda r: r["timestamp"])
    latest = max(group, key=lambda r: (r["entry_type"] == "x509", r["updated_at"]))
    items = _unique(str(r["watch_item"]) for r in group)
    matched: dict[str, set[str]] = {item: set() for item in items}
    for row in group:
        matched[str(row["watch_item"])].update(str(n) for n in row["names"])
    names = sorted(set().union(*matched.values()))
    entry_type = str(latest["entry_type"])
    payload = {
        "tbs_sha256": key,
        "watch_items": items,
        "names": names,
        "matches": [{"watch_item": item, "names": sorted(matched[item])} for item in items],
        "issuer": latest["issuer"],
        "not_before": _iso(latest["not_before"]),
        "not_after": _iso(latest["not_after"]),
        "log_slug": first["log_slug"],
        "index": int(first["index"]),
        "timestamp": _iso(first["timestamp"]),
        "entry_type": entry_type,
        "cert_sha256": latest["cert_sha256"],
        "precert_sha256": latest.get("precert_sha256"),
        "crtsh": latest["crtsh"],
    }
    what = "certificate" if entry_type == "x509" else "precertificate"
    title = (f"New {what} for {_some(names, 1)} (watch {_some(items, 3)}) "
             f"in {one_line(str(first['log_slug']))} #{int(first['index'])}")
    return Notice("watch", key, one_line(title), payload)


def phishing_notices(rows: Sequence[Mapping[str, Any]], min_score: float) -> list[Notice]:
    """One notice per issuance (tbs_sha256) among `rows` scoring at least `min_score`
    (alerts rows: SCORES_SCHEMA columns plus "tbs_sha256"), highest score first: its
    alerting names, the best score with that name's brand and rules, crt.sh by cert_sha256."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        if float(row["score"]) >= min_score:
            groups.setdefault(row["tbs_sha256"], []).append(row)
    notices = [_phishing_notice(key, group) for key, group in groups.items()]
    return sorted(notices, key=lambda n: -n.payload["score"])


def _phishing_notice(key: str, group: Sequence[Mapping[str, Any]]) -> Notice:
    ranked = sorted(group, key=lambda r: -float(r["score"]))  # stable: ties keep their order
    best = ranked[0]
    names = _unique(str(r["name"]) for r in ranked)
    score = float(best["score"])
    brand = best.get("brand")
    payload = {
        "tbs_sha256": key,
        "names": names,
        "best_name": best["name"],
        "score": score,
        "brand": brand,
        "registered_domain": best.get("registered_domain"),
        "rules": [str(rule) for rule in best.get("rules") or ()],
        "issuer_org": best.get("issuer_org"),
        "log_slug": best["log_slug"],
        "index": int(best["index"]),
        "timestamp": _iso(best["timestamp"]),
        "entry_type": best["entry_type"],
        "cert_sha256": best["cert_sha256"],
        "crtsh": CRTSH + str(best["cert_sha256"]),
    }
    about = f"brand {one_line(str(brand))}, score {score:g}" if brand else f"score {score:g}"
    title = f"Possible phishing: {_some(names, 1)} ({about}) in {one_line(str(best['log_slug']))} #{int(best['index'])}"
    return Notice("phishing", key, one_line(title), payload)


# --------------------------------------------------------------------------- connections


def connection_id(settings: Settings, channel: str) -> str:
    """The Airflow connection id of `channel` (ValueError for an unknown channel)."""
    if channel not in _CONNECTION_OF:
        raise ValueError(f"unknown notification channel {channel!r}; use one of {', '.join(CHANNELS)}")
    return str(getattr(settings, _CONNECTION_OF[channel]))


def configured_channels(settings: Settings, *, get_connection: Callable[[str], Any] = airflow_connection) -> list[str]:
    """The channels (CHANNELS order) whose connection exists; each one missing is left out
    with one INFO line."""
    found = []
    for channel in CHANNELS:
        conn_id = connection_id(settings, channel)
        if get_connection(conn_id) is None:
            log.info("notify: %s: connection %s not configured; not notified there", channel, conn_id)
        else:
            found.append(channel)
    return found


def _secrets_of(conn: Any) -> list[str]:
    """What of a connection must never be shown: its password (a Slack webhook token too,
    with and without its leading '/'), a password, path or query in its host URL (webhook
    URLs carry tokens there), and extras named like a secret (an Authorization header)."""
    found = []
    password = (conn.password or "").strip()
    found += [password, password.lstrip("/")]
    host = (conn.host or "").strip()
    if host:
        parts = urlsplit(host if "://" in host else f"//{host}")
        found += [parts.password or "", parts.path if len(parts.path) > 1 else "", parts.query]
    extra = getattr(conn, "extra_dejson", None) or {}
    for name, value in extra.items():
        if isinstance(value, str) and any(word in name.lower() for word in ("secret", "token", "password", "key", "auth")):
            found.append(value)
    # Longest first, so a secret containing another is replaced whole.
    return sorted({s for s in found if s}, key=len, reverse=True)


def _from_email(conn: Any) -> str:
    extra = getattr(conn, "extra_dejson", None) or {}
    if extra.get("from_email"):
        return str(extra["from_email"])
    login = (conn.login or "").strip()
    return login if "@" in login else DEFAULT_FROM_EMAIL


# --------------------------------------------------------------------------- delivery record


def delivered_keys(lake: Lake, channel: str, kind: str, *, today: date) -> set[str]:
    """The keys of `kind` the record shows delivered on `channel` in the date partitions of
    the RECORD_DAYS days up to `today` (later ones too: another worker's clock)."""
    paths = _record_files(lake, channel, today - timedelta(days=RECORD_DAYS - 1))
    if not paths:
        return set()
    dataset = ds.dataset(paths, schema=layout.NOTIFICATIONS_SCHEMA, format="parquet", filesystem=lake.filesystem)
    table = dataset.to_table(columns=["key"], filter=(ds.field("channel") == channel) & (ds.field("kind") == kind))
    return set(table.column("key").to_pylist())


def _record_files(lake: Lake, channel: str, since: date) -> list[str]:
    """The record files of `channel` in date partitions from `since` on (hidden temporaries,
    which start with '.', are not the channel's)."""
    table_dir = layout.table_dir(lake.root, layout.NOTIFICATIONS)
    paths = []
    for day_info in lake.filesystem.get_file_info(pafs.FileSelector(table_dir, allow_not_found=True)):
        day = layout.parse_day_dir(day_info.base_name)
        if day_info.type != pafs.FileType.Directory or day is None or day < since:
            continue
        for info in lake.filesystem.get_file_info(pafs.FileSelector(day_info.path, allow_not_found=True)):
            name = info.base_name
            if info.type == pafs.FileType.File and name.startswith(f"{channel}-") and name.endswith(".parquet"):
                paths.append(info.path)
    return sorted(paths)


class _AttemptRecord:
    """This attempt's file of the record, `notifications/date=<day>/<channel>-<run>-<try>`,
    rewritten whole after every message. It starts from what the file already holds: the
    same attempt run again (a test run, a manual re-run) keeps the rows it wrote before."""

    def __init__(self, lake: Lake, channel: str, *, dag_id: str, run_id: str, try_number: int, day: date) -> None:
        self._lake = lake
        self._channel = channel
        self._dag_id = dag_id
        self._run_id = run_id
        self._directory = layout.day_dir(lake.root, layout.NOTIFICATIONS, day)
        self._name = layout.notification_file_name(channel, run_id, try_number)
        path = f"{self._directory}/{self._name}"
        found = lake.filesystem.get_file_info(path).type == pafs.FileType.File
        self._rows: list[dict[str, Any]] = (
            pq.read_table(path, filesystem=lake.filesystem, schema=layout.NOTIFICATIONS_SCHEMA).to_pylist() if found else []
        )

    def add(self, notices: Sequence[Notice], sent_at: datetime) -> str:
        self._rows += [
            {"sent_at": sent_at, "channel": self._channel, "kind": n.kind, "key": n.key, "title": n.title,
             "dag_id": self._dag_id, "run_id": self._run_id}
            for n in notices
        ]
        table = pa.Table.from_pylist(self._rows, schema=layout.NOTIFICATIONS_SCHEMA)
        return write_file(self._lake, self._directory, self._name, table)


# --------------------------------------------------------------------------- messages


def batch_title(notices: Sequence[Notice]) -> str:
    """The title of a batched message: how many, and the first notice's title."""
    singular, plural = _NOUNS.get(notices[0].kind, ("notice", "notices"))
    count = len(notices)
    more = f" (and {count - 1} more)" if count > 1 else ""
    return one_line(f"{count} {singular if count == 1 else plural}: {notices[0].title}{more}")


def webhook_body(notices: Sequence[Notice], *, batched: bool, run_id: str) -> dict[str, Any]:
    """The JSON body of one webhook message."""
    if not batched:
        (notice,) = notices
        return {"kind": notice.kind, "key": notice.key, "title": notice.title, **notice.payload}
    items = [{"key": n.key, "title": n.title, **n.payload} for n in notices]
    return {"kind": notices[0].kind, "title": batch_title(notices), "run_id": run_id, "items": items}


def facts(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The key facts of a notice as (label, one-line text), for Slack and e-mail."""
    out: list[tuple[str, str]] = []
    if payload.get("watch_items"):
        out.append(("watch", _some(payload["watch_items"], LISTED_NAMES)))
    out.append(("names", _some(payload.get("names") or [], LISTED_NAMES)))
    if payload.get("score") is not None:
        brand = f" (brand {one_line(str(payload['brand']))})" if payload.get("brand") else ""
        out.append(("score", f"{float(payload['score']):g}{brand}"))
    if payload.get("rules"):
        out.append(("rules", _some(payload["rules"], LISTED_NAMES)))
    issuer = payload.get("issuer") or payload.get("issuer_org")
    if issuer:
        out.append(("issuer", one_line(str(issuer))))
    if payload.get("not_before"):
        out.append(("valid", f"{payload['not_before']} to {payload.get('not_after')}"))
    if payload.get("log_slug"):
        out.append(("log", one_line(f"{payload['log_slug']} #{payload.get('index')} "
                                    f"({payload.get('entry_type')}, {payload.get('timestamp')})")))
    if payload.get("crtsh"):
        out.append(("crt.sh", one_line(str(payload["crtsh"]))))
    return out


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links or mentions (<!channel>) and &...; as entities: the three
    # characters its docs say to escape.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(notices: Sequence[Notice], *, batched: bool) -> str:
    """The text of one Slack message: a notice's title and facts, or a batch's title and a
    line per notice (at most TEXT_MAX_NOTICES)."""
    if not batched:
        (notice,) = notices
        lines = [f"*{_slack_escape(notice.title)}*"]
        lines += [f"{label}: {_slack_escape(value)}" for label, value in facts(notice.payload)]
        return "\n".join(lines)
    lines = [f"*{_slack_escape(batch_title(notices))}*"]
    for notice in notices[:TEXT_MAX_NOTICES]:
        link = one_line(str(notice.payload.get("crtsh", "")))
        lines.append(f"• {_slack_escape(notice.title)} {_slack_escape(link)}".rstrip())
    if len(notices) > TEXT_MAX_NOTICES:
        lines.append(f"… and {len(notices) - TEXT_MAX_NOTICES} more")
    return "\n".join(lines)


def _html_facts(notice: Notice) -> str:
    rows = []
    for label, value in facts(notice.payload):
        shown = html.escape(value)
        if label == "crt.sh" and value.startswith("https://"):
            shown = f'<a href="{html.escape(value, quote=True)}">{shown}</a>'
        rows.append(f'<tr><th align="left">{html.escape(label)}</th><td>{shown}</td></tr>')
    return "<table>" + "".join(rows) + "</table>"


def email_content(notices: Sequence[Notice], *, batched: bool) -> tuple[str, str]:
    """(subject, HTML body) of one e-mail; every text from a certificate is escaped."""
    if not batched:
        (notice,) = notices
        return notice.title, f"<html><body><p><b>{html.escape(notice.title)}</b></p>{_html_facts(notice)}</body></html>"
    subject = batch_title(notices)
    parts = [f"<html><body><p><b>{html.escape(subject)}</b></p>"]
    for notice in notices[:TEXT_MAX_NOTICES]:
        parts.append(f"<h3>{html.escape(notice.title)}</h3>{_html_facts(notice)}")
    if len(notices) > TEXT_MAX_NOTICES:
        parts.append(f"<p>… and {len(notices) - TEXT_MAX_NOTICES} more (see the alerts table).</p>")
    parts.append("</body></html>")
    return subject, "".join(parts)


# --------------------------------------------------------------------------- channels


@functools.cache
def _webhook_notifier_class() -> type:
    """HttpNotifier whose hook fails on any answer outside 2xx (made once, on first use: the
    provider is imported only where a webhook is sent)."""
    from airflow.providers.http.hooks.http import HttpHook
    from airflow.providers.http.notifications.http import HttpNotifier

    class Only2xxHttpHook(HttpHook):
        """HttpHook's check (>= 400 raises), and any other answer outside 2xx raises too."""

        def check_response(self, response: Any) -> None:
            super().check_response(response)
            if not 200 <= response.status_code < 300:
                raise RuntimeError(f"{response.status_code}:{response.reason} (not 2xx; redirects are not followed)")

    class WebhookNotifier(HttpNotifier):
        @cached_property
        def hook(self) -> HttpHook:
            return Only2xxHttpHook(method=self.method, http_conn_id=self.http_conn_id)

    return WebhookNotifier


def _sender(channel: str, conn_id: str, conn: Any, settings: Settings, *, batched: bool,
            run_id: str) -> Callable[[Sequence[Notice]], None]:
    """A function sending one message of notices on `channel` through Airflow's notifier;
    it raises whatever the notifier raises."""
    # .notify() renders nothing; the SMTP notifier reads the context only to render the fields
    # left empty, and none is.
    context: Any = {}
    if channel == "webhook":
        notifier_class = _webhook_notifier_class()
        extra = getattr(conn, "extra_dejson", None) or {}
        options: dict[str, Any] = {"check_response": True, "allow_redirects": False}
        if "timeout" not in extra:
            options["timeout"] = WEBHOOK_TIMEOUT_SECONDS

        def send_webhook(notices: Sequence[Notice]) -> None:
            notifier_class(
                http_conn_id=conn_id, method="POST", json=webhook_body(notices, batched=batched, run_id=run_id),
                headers={"Content-Type": "application/json"}, extra_options=options,
            ).notify(context)

        return send_webhook
    if channel == "slack":
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        def send_slack(notices: Sequence[Notice]) -> None:
            # No retry handlers: slack_sdk logs the webhook URL, token included, when it retries.
            SlackWebhookNotifier(
                slack_webhook_conn_id=conn_id, text=slack_text(notices, batched=batched), retry_handlers=[],
            ).notify(context)

        return send_slack
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    sender = _from_email(conn)

    def send_email(notices: Sequence[Notice]) -> None:
        subject, body = email_content(notices, batched=batched)
        SmtpNotifier(
            smtp_conn_id=conn_id, to=list(settings.notify_email_to), from_email=sender, subject=subject,
            html_content=body,
        ).notify(context)

    return send_email


def deliver(lake: Lake, channel: str, notices: Sequence[Notice], *, settings: Settings, dag_id: str,
            run_id: str, try_number: int, batched: bool,
            get_connection: Callable[[str], Any] = airflow_connection) -> DeliveryReport:
    """Send `notices` (all of one kind) on `channel`, skipping those the delivery record
    holds; record each message once it went through. Raises NotificationError when a message
    fails (after recording those before it), when the connection does not exist, or for
    e-mail without CT_NOTIFY_EMAIL_TO. See the module docstring."""
    conn_id = connection_id(settings, channel)
    kinds = {n.kind for n in notices}
    if len(kinds) > 1:
        raise ValueError(f"deliver takes notices of one kind at a time, not {sorted(kinds)}")
    if channel == "email" and not settings.notify_email_to:
        raise NotificationError(
            f"email: CT_NOTIFY_EMAIL_TO names no recipient; set it, or remove the connection {conn_id}",
            channel=channel)
    if not notices:
        log.info("notify: %s: nothing to send", channel)
        return DeliveryReport(channel, 0, 0, 0)
    kind = notices[0].kind
    today = datetime.now(UTC).date()
    done = delivered_keys(lake, channel, kind, today=today)
    pending: list[Notice] = []
    for notice in notices:
        if notice.key not in done:
            done.add(notice.key)  # a key repeated in `notices` goes once
            pending.append(notice)
    skipped = len(notices) - len(pending)
    messages = ([pending] if pending else []) if batched else [[n] for n in pending]
    if not messages:
        log.info("notify: %s: 0 sent, %d skipped (already delivered), 0 messages", channel, skipped)
        return DeliveryReport(channel, 0, skipped, 0)

    conn = get_connection(conn_id)
    if conn is None:
        raise NotificationError(
            f"{channel}: {len(pending)} of {len(pending)} {kind} notices not delivered: connection {conn_id} "
            "is not defined", channel=channel)
    secrets = _secrets_of(conn)
    send = _sender(channel, conn_id, conn, settings, batched=batched, run_id=run_id)
    record = _AttemptRecord(lake, channel, dag_id=dag_id, run_id=run_id, try_number=try_number, day=today)
    sent = 0
    for message in messages:
        try:
            send(message)
        except Exception as err:
            raw = f"{type(err).__name__}: {err}"
            cause = redact(raw, *secrets)
            error = NotificationError(
                f"{channel}: {len(pending) - sent} of {len(pending)} {kind} notices not delivered through connection "
                f"{conn_id}: {cause}", channel=channel)
            if cause != raw:
                raise error from None  # the cause's own text (and traceback) holds a secret
            raise error from err
        record.add(message, datetime.now(UTC))
        sent += len(message)
    log.info("notify: %s: %d sent, %d skipped (already delivered), %d message(s) through connection %s",
             channel, sent, skipped, len(messages), conn_id)
    return DeliveryReport(channel, sent, skipped, len(messages))
