"""HttpSession against a real scripted HTTP server on 127.0.0.1."""

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ctlib.http import HttpPolicy, HttpError, HttpSession, TokenBucket, retry_after_seconds, warn_if_anonymous
from ctlib.settings import Settings, SettingsError


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
        with HttpSession("log_a", FAST) as session:
            assert session.get_json(server.url) == {"ok": 1}
            assert session.retries_made == 2
        assert all(agent == "ct-test/1" for _, _, agent in server.seen)


def test_429_retry_after_is_honoured():
    with Scripted([(429, {"Retry-After": "1"}, b""), (200, {}, b"{}")]) as server:
        with HttpSession("log_a", FAST) as session:
            session.get_json(server.url)
        (first, _, _), (second, _, _) = server.seen
        assert second - first >= 0.95


def test_gives_up_with_a_clear_error_naming_the_log():
    with Scripted([(503, {}, b"down")]) as server:
        with HttpSession("log_b", FAST) as session, pytest.raises(HttpError, match=r"log_b: .*4 attempts.*HTTP 503"):
            session.get(server.url)
        assert len(server.seen) == 4


def test_client_errors_are_not_retried():
    with Scripted([(400, {}, b"bad start")]) as server:
        with HttpSession("log_c", FAST) as session, pytest.raises(HttpError, match="HTTP 400: bad start") as err:
            session.get(server.url)
        assert err.value.status == 400 and len(server.seen) == 1


def test_truncated_json_is_retried_then_reported():
    with Scripted([(200, {}, b'{"entries": [')]) as server:
        with HttpSession("log_d", FAST) as session, pytest.raises(HttpError, match="invalid JSON"):
            session.get_json(server.url)


def test_oversized_answer_is_refused():
    small = HttpPolicy(timeout=2, connect_timeout=1, attempts=2, backoff=0.01, max_body_bytes=1000)
    with Scripted([(200, {}, b"x" * 5000)]) as server:
        with HttpSession("log_e", small) as session, pytest.raises(HttpError, match="1000-byte limit"):
            session.get(server.url)


def test_retry_after_parsing():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 10) == pytest.approx(10)


class FakeClock:
    """A clock that moves only when slept on: token-bucket arithmetic without real waits."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_token_bucket_paces_evenly_after_its_burst():
    clock = FakeClock()
    bucket = TokenBucket(4.0, capacity=2, clock=clock, sleep=clock.sleep)
    waits = [bucket.acquire() for _ in range(10)]
    assert waits[:2] == [0.0, 0.0]  # the burst
    assert waits[2:] == pytest.approx([0.25] * 8)  # then one every 1/rate seconds
    assert clock.now - 100.0 == pytest.approx((10 - 2) / 4.0)
    clock.now += 10  # idle: the bucket refills, but never beyond its capacity
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0.0, 0.0, 0.25])


def test_token_bucket_without_rate_never_waits_but_defers():
    clock = FakeClock()
    bucket = TokenBucket(0.0, clock=clock, sleep=clock.sleep)
    assert all(bucket.acquire() == 0.0 for _ in range(1000))
    bucket.defer(3)
    assert bucket.acquire() == pytest.approx(3.0)
    assert bucket.acquire() == 0.0


def test_token_bucket_defer_holds_the_rate_back():
    clock = FakeClock()
    bucket = TokenBucket(2.0, clock=clock, sleep=clock.sleep)
    bucket.acquire()
    bucket.defer(5)  # a Retry-After: nothing for 5 s, and nothing saved up meanwhile
    assert bucket.acquire() == pytest.approx(5.0)
    assert bucket.acquire() == pytest.approx(0.5)


def test_token_bucket_try_acquire_refuses_over_the_rate_without_waiting():
    clock = FakeClock()
    bucket = TokenBucket(5.0, capacity=5, clock=clock, sleep=clock.sleep)
    assert [bucket.try_acquire() for _ in range(7)] == [True] * 5 + [False] * 2  # one second's worth
    assert clock.now == 100.0, "never sleeps"
    clock.now += 0.2  # one token back
    assert [bucket.try_acquire() for _ in range(2)] == [True, False]
    clock.now += 60  # refills to its capacity, no further
    assert sum(bucket.try_acquire() for _ in range(10)) == 5
    assert all(TokenBucket(0.0, clock=clock).try_acquire() for _ in range(100)), "rate 0: no limit"


def test_token_bucket_holds_its_rate_across_threads():
    """8 threads x 6 acquisitions at 40/s with a burst of 1: at least (48 - 1)/40 s in all,
    and in any stretch of time no more than the rate allows (a small allowance for timing)."""
    bucket = TokenBucket(40.0)
    stamps, lock = [], threading.Lock()

    def worker():
        for _ in range(6):
            bucket.acquire()
            with lock:
                stamps.append(time.monotonic())

    began = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    assert len(stamps) == 48
    assert took >= (48 - 1) / 40.0 - 0.01
    stamps.sort()
    for i, first in enumerate(stamps):  # no 0.5 s window holds more than 1 + 0.5 x rate (+1 for jitter)
        inside = sum(1 for t in stamps[i:] if t - first < 0.5)
        assert inside <= 1 + 20 + 1, f"{inside} acquisitions within 0.5 s"
    assert bucket.waited >= took * 0.5  # threads spent their time waiting on the bucket


def test_session_paces_its_requests_and_a_retry_after_pauses_it():
    script = [(200, {}, b"{}")] * 3 + [(429, {"Retry-After": "1"}, b""), (200, {}, b"{}")]
    with Scripted(script) as server:
        with HttpSession("log_f", FAST, requests_per_second=10) as session:
            for _ in range(4):
                session.get_json(server.url)
        times = [t for t, _, _ in server.seen]
        assert len(times) == 5
        assert times[2] - times[0] >= 0.19  # 10 req/s: 0.1 s apart
        assert times[4] - times[3] >= 0.95  # the 429's Retry-After


@pytest.mark.parametrize("env, expected", [
    ({}, "ct-airflow/0.1 (CT monitor)"),
    ({"CT_CONTACT": "ct-team@example.org"}, "ct-airflow/0.1 (CT monitor; contact: ct-team@example.org)"),
    ({"CT_CONTACT": "https://example.org/ct"}, "ct-airflow/0.1 (CT monitor; contact: https://example.org/ct)"),
    ({"CT_CONTACT": "a@example.org", "CT_USER_AGENT": "acme-monitor/2"}, "acme-monitor/2"),
])
def test_user_agent_carries_the_contact(env, expected):
    settings = Settings.from_env(env)
    assert settings.user_agent == expected
    assert HttpPolicy.from_settings(settings).user_agent == expected


@pytest.mark.parametrize("contact", ["nobody", "x@y.org (me)", "a@b.org\r\nX-Evil: 1", "ftp://example.org"])
def test_a_contact_that_is_neither_address_nor_url_is_refused(contact):
    with pytest.raises(SettingsError, match="CT_CONTACT"):
        Settings.from_env({"CT_CONTACT": contact})


def test_anonymous_reader_is_warned_once_per_call(caplog):
    with caplog.at_level(logging.WARNING, logger="ctlib.http"):
        warn_if_anonymous(Settings.from_env({}))
        warn_if_anonymous(Settings.from_env({"CT_CONTACT": "ct@example.org"}))
        warn_if_anonymous(Settings.from_env({"CT_USER_AGENT": "acme-monitor/2 (ops@example.org)"}))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "Sunlight" in warnings[0] and "Let's Encrypt" in warnings[0]
