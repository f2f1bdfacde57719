"""Local receivers of notifications, for tests and the demo: a webhook server (which is also a
fake Slack incoming webhook) and an SMTP server, on 127.0.0.1, recording what they receive.

- `WebhookReceiver`: a threaded HTTP server recording every POST as a `Received` (path, body
  parsed as JSON or kept as text, headers, arrival time in UTC, the status answered). It
  answers 200 "ok": what Slack's incoming webhooks answer, and the only answer the
  SlackWebhookHook accepts (it fails on any status but 200), so one receiver serves both.
  `fail_next(n, status)` makes the next n POSTs fail (a 3xx comes with a Location).
  `airflow_conn_env(conn_id)`: an http connection to it; `slack_conn_env(conn_id)`: a
  slackwebhook connection to it whose password is a fake token path (`slack_token`).
- `SmtpReceiver`: aiosmtpd on 127.0.0.1 recording every message as a `Mail`;
  `refuse_next(n)` refuses the next n messages; `airflow_conn_env(conn_id)`: a plain SMTP
  connection to it (no TLS, no SSL, no login).

Both are context managers (port 0, the default: a free port) with a thread-safe record and
`wait_for(count, timeout)`; `airflow_conn_env` and `slack_conn_env` return
`{"AIRFLOW_CONN_<ID>": <JSON connection>}`.

    python -m ctlib.testing.receivers webhook --port 8812

runs a WebhookReceiver until SIGTERM, prints its AIRFLOW_CONN_ line, then one line per
notification received (`describe`).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiosmtpd.controller import Controller

from ctlib.testing.local_http import HOST, LocalHttpServer, serve_until_stopped


def _conn_env(conn_id: str, conn: dict[str, Any]) -> dict[str, str]:
    return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}


T = TypeVar("T")


class _Recorder(Generic[T]):
    """A thread-safe list of what arrived, with a wait for a count."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()

    def add(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def items(self) -> list[T]:
        with self._changed:
            return list(self._items)

    def wait_for(self, count: int, timeout: float, what: str) -> list[T]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._items) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._items)} {what} received in {timeout:g} s, expected {count}")
                self._changed.wait(left)
            return list(self._items)


class _Failures:
    """Which of the next requests fail, and how: after `after` more go through, `count` fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._after = 0
        self._left = 0
        self._how: Any = None

    def set(self, count: int, how: Any, after: int = 0) -> None:
        with self._lock:
            self._after, self._left, self._how = after, count, how

    def take(self) -> Any:
        """The failure for this request, or None when it goes through."""
        with self._lock:
            if self._after > 0:
                self._after -= 1
                return None
            if self._left <= 0:
                return None
            self._left -= 1
            return self._how


# --------------------------------------------------------------------------- webhook


@dataclass(frozen=True, slots=True)
class Received:
    """One POST the webhook receiver answered."""

    path: str
    body: Any  # the parsed JSON, or the text when it is not JSON
    headers: dict[str, str]
    at: datetime  # arrival, UTC
    status: int  # what the receiver answered

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookServer

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "")
        raw = self.rfile.read(int(length)) if length.isdigit() else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        status = self.server.receiver._failures.take() or 200
        received = Received(self.path, body, dict(self.headers.items()), datetime.now(UTC), status)
        # Recorded before answering: once the sender has its answer, `received` shows the POST.
        self.server.receiver._record(received)
        answer = b"ok" if status < 300 else b"error"
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            if 300 <= status < 400:
                self.send_header("Location", "/moved")
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: the paths of a fake Slack are its token


class _WebhookServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: WebhookReceiver


class WebhookReceiver(LocalHttpServer):
    """A webhook (and Slack incoming-webhook) endpoint on 127.0.0.1 recording every POST."""

    thread_name = "webhook-receiver"

    def __init__(self, port: int = 0, *, on_receive: Callable[[Received], None] | None = None) -> None:
        httpd = _WebhookServer((HOST, port), _WebhookHandler)
        httpd.receiver = self
        super().__init__(httpd)
        self._received: _Recorder[Received] = _Recorder()
        self._failures = _Failures()
        self._on_receive = on_receive
        self.slack_token = f"T00FAKE00/B00FAKE00/{secrets.token_hex(12)}"
        """The fake Slack webhook token of `slack_conn_env` (Slack's T.../B.../secret path)."""

    def fail_next(self, count: int, status: int = 500, *, after: int = 0) -> None:
        """Answer `count` POSTs with `status`, once `after` more went through (they are
        recorded too, with that status)."""
        self._failures.set(count, status, after)

    @property
    def received(self) -> list[Received]:
        """Every POST so far, in arrival order."""
        return self._received.items()

    @property
    def accepted(self) -> list[Received]:
        """The POSTs answered 2xx."""
        return [r for r in self._received.items() if r.accepted]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Every POST once there are at least `count`; TimeoutError after `timeout` s."""
        return self._received.wait_for(count, timeout, "POSTs")

    def _record(self, received: Received) -> None:
        self._received.add(received)
        if self._on_receive is not None:
            self._on_receive(received)

    def airflow_conn_env(self, conn_id: str = "ct_webhook", *, path: str = "/hook", timeout: float = 5) -> dict[str, str]:
        """An http connection POSTing to `path` of this receiver."""
        return _conn_env(conn_id, {"conn_type": "http", "host": self.url + path, "extra": {"timeout": timeout}})

    def slack_conn_env(self, conn_id: str = "ct_slack", *, timeout: int = 5) -> dict[str, str]:
        """A Slack incoming-webhook connection to this receiver: the hook POSTs to
        `<host>/<password>`, the password being the fake token `slack_token`."""
        conn = {"conn_type": "slackwebhook", "host": self.url, "password": self.slack_token, "extra": {"timeout": timeout}}
        return _conn_env(conn_id, conn)


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True, slots=True)
class Mail:
    """One message the SMTP receiver accepted or refused."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    body: str  # the HTML part's text (else the plain text), decoded
    message: EmailMessage
    at: datetime  # arrival, UTC
    refused: bool


class _MailHandler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self._receiver = receiver

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(preferencelist=("html", "plain"))
        body = part.get_content() if isinstance(part, EmailMessage) else ""
        refusal = self._receiver._refusals.take()
        self._receiver._mails.add(Mail(
            envelope.mail_from, tuple(envelope.rcpt_tos), str(message.get("Subject", "")), body, message,
            datetime.now(UTC), refused=refusal is not None,
        ))
        return refusal or "250 Message accepted for delivery"


class _FreePortController(Controller):
    """aiosmtpd's Controller on port 0 too: it learns the port the system chose before its
    start-up check connects to it."""

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpReceiver:
    """An SMTP server on 127.0.0.1 recording every message."""

    def __init__(self, port: int = 0) -> None:
        self._controller = _FreePortController(_MailHandler(self), hostname=HOST, port=port)
        self._mails: _Recorder[Mail] = _Recorder()
        self._refusals = _Failures()
        self._running = False

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        return int(self._controller.port)

    def start(self) -> Self:
        if not self._running:
            self._controller.start()
            self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._controller.stop()
            self._running = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def refuse_next(self, count: int, reply: str = "554 5.7.1 Message refused", *, after: int = 0) -> None:
        """Refuse `count` messages with `reply`, once `after` more were accepted (they are
        recorded too, as refused)."""
        self._refusals.set(count, reply, after)

    @property
    def messages(self) -> list[Mail]:
        """Every message so far (refused ones too), in arrival order."""
        return self._mails.items()

    @property
    def accepted(self) -> list[Mail]:
        return [m for m in self._mails.items() if not m.refused]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Mail]:
        """Every message once there are at least `count`; TimeoutError after `timeout` s."""
        return self._mails.wait_for(count, timeout, "messages")

    def airflow_conn_env(self, conn_id: str = "ct_smtp", *, from_email: str | None = None, timeout: int = 5,
                         retry_limit: int = 0) -> dict[str, str]:
        """A plain SMTP connection to this receiver (no STARTTLS, no SSL, no login).
        `retry_limit` 0: the hook sends each message once (by default it resends a refused one)."""
        extra: dict[str, Any] = {"disable_tls": True, "disable_ssl": True, "timeout": timeout, "retry_limit": retry_limit}
        if from_email:
            extra["from_email"] = from_email
        return _conn_env(conn_id, {"conn_type": "smtp", "host": HOST, "port": self.port, "extra": extra})


# --------------------------------------------------------------------------- CLI


def describe(received: Received) -> list[str]:
    """Readable lines for one POST: a line per notice (time, kind, title, key, crt.sh), the
    text of a Slack message, or the raw body."""
    at = received.at.strftime("%H:%M:%S")
    body = received.body
    if isinstance(body, dict) and ("title" in body or "items" in body):
        notices = body.get("items") or [body]
        kind = body.get("kind", "?")
        return [f"{at} {kind} {item.get('title', '')} key={str(item.get('key', ''))[:16]} {item.get('crtsh', '')}".rstrip()
                for item in notices]
    if isinstance(body, dict) and "text" in body:
        return [f"{at} slack {line}" for line in str(body["text"]).splitlines()]
    return [f"{at} {received.path} {str(body)[:200]}"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctlib.testing.receivers",
                                     description="A local notification receiver on 127.0.0.1 until SIGTERM.")
    parser.add_argument("kind", choices=["webhook"], help="what to receive")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--conn-id", default="ct_webhook", help="connection id of the printed AIRFLOW_CONN_ line")
    args = parser.parse_args(argv)

    show = lambda received: print("\n".join(describe(received)), flush=True)
    receiver = WebhookReceiver(args.port, on_receive=show)
    serve_until_stopped([receiver], [f"webhook receiver {receiver.url}"], [receiver.airflow_conn_env(args.conn_id)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
