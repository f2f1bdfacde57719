"""LogSession against a real scripted HTTP server on 127.0.0.1."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ctlib.http import HttpPolicy, LogHTTPError, LogSession, retry_after_seconds


class Scripted:
    """Answers requests from a list of (status, headers, body), then repeats the last one."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []

    def __enter__(self):
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                script.seen.append((time.monotonic(), self.path, self.headers.get("User-Agent")))
                status, headers, body = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ct/v1/get-sth"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


FAST = HttpPolicy(timeout=2, connect_timeout=1, attempts=4, backoff=0.01, max_backoff=5, user_agent="ct-test/1")


def test_retries_5xx_then_succeeds_and_sends_user_agent():
    with Scripted([(503, {}, b"busy"), (500, {}, b"oops"), (200, {}, b'{"ok": 1}')]) as server:
        with LogSession("log_a", FAST) as session:
            assert session.get_json(server.url) == {"ok": 1}
            assert session.retries_made == 2
        assert all(agent == "ct-test/1" for _, _, agent in server.seen)


def test_429_retry_after_is_honoured():
    with Scripted([(429, {"Retry-After": "1"}, b""), (200, {}, b"{}")]) as server:
        with LogSession("log_a", FAST) as session:
            session.get_json(server.url)
        (first, _, _), (second, _, _) = server.seen
        assert second - first >= 0.95


def test_gives_up_with_a_clear_error_naming_the_log():
    with Scripted([(503, {}, b"down")]) as server:
        with LogSession("log_b", FAST) as session, pytest.raises(LogHTTPError, match=r"log_b: .*4 attempts.*HTTP 503"):
            session.get(server.url)
        assert len(server.seen) == 4


def test_client_errors_are_not_retried():
    with Scripted([(400, {}, b"bad start")]) as server:
        with LogSession("log_c", FAST) as session, pytest.raises(LogHTTPError, match="HTTP 400: bad start") as err:
            session.get(server.url)
        assert err.value.status == 400 and len(server.seen) == 1


def test_truncated_json_is_retried_then_reported():
    with Scripted([(200, {}, b'{"entries": [')]) as server:
        with LogSession("log_d", FAST) as session, pytest.raises(LogHTTPError, match="invalid JSON"):
            session.get_json(server.url)


def test_oversized_answer_is_refused():
    small = HttpPolicy(timeout=2, connect_timeout=1, attempts=2, backoff=0.01, max_body_bytes=1000)
    with Scripted([(200, {}, b"x" * 5000)]) as server:
        with LogSession("log_e", small) as session, pytest.raises(LogHTTPError, match="1000-byte limit"):
            session.get(server.url)


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 10) == pytest.approx(10)
