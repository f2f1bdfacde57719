"""HTTP to CT logs: one session per log, timeouts, retries with back-off and jitter,
Retry-After, and a request-rate limit per log.

`LogSession.get` returns the body of a 200 answer or raises LogHTTPError naming the log and
URL once its attempts are spent. Safe to call from several threads at once.

Rate limit: every attempt of every request of a session (tree heads, get-entries, proofs,
tiles, issuers; retries too) first takes a token from the session's `TokenBucket`, so the
session never sends more than its `requests_per_second` on average, paced evenly. The rate
given to a session is its share of the log's budget (ctlib.ct.limits: a mapped fetch task
gets the log's rate / CT_FETCH_PARALLELISM; plan and commit, which run alone, all of it).
A 429 or 503 with Retry-After is honoured on top: the asking request waits at least that
long, and the bucket gives no token to the session's other threads before then either.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ctlib.settings import Settings, user_agent

log = logging.getLogger(__name__)

# Statuses worth another try: rate limits and server-side trouble. Other 4xx mean our
# request is wrong (or the range is not there yet) and retrying will not help.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A CT answer is at most a few MB (1,000 entries with chains); anything far larger is hostile.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


def warn_if_anonymous(settings: Settings) -> None:
    """Once per task: warn when no CT_CONTACT goes into the User-Agent (and CT_USER_AGENT does
    not replace it), as Sunlight logs (Let's Encrypt's among them) throttle anonymous readers."""
    if not settings.contact and settings.user_agent == user_agent(""):
        log.warning(
            "CT_CONTACT is not set: logs see an anonymous reader (User-Agent %r). Sunlight logs, "
            "Let's Encrypt's among them, ask monitors for a contact and throttle anonymous "
            "readers; set CT_CONTACT to an e-mail address or URL", settings.user_agent,
        )


class LogHTTPError(RuntimeError):
    """A request to a log failed for good; `status` is the last HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    timeout: float = 30.0
    connect_timeout: float = 10.0
    attempts: int = 8
    backoff: float = 0.5
    max_backoff: float = 60.0
    user_agent: str = "ct-airflow"
    pool_size: int = 4
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPolicy:
        return cls(
            timeout=settings.http_timeout,
            connect_timeout=settings.http_connect_timeout,
            attempts=settings.http_retries,
            backoff=settings.http_backoff,
            max_backoff=settings.http_max_backoff,
            user_agent=settings.user_agent,
            pool_size=settings.http_in_flight,
            max_body_bytes=settings.http_max_body_mb * 1024 * 1024,
        )


class TokenBucket:
    """At most `rate` acquisitions per second on average, `capacity` of them at once after an
    idle spell; `rate` 0 means no limit. Safe to call from several threads at once: each
    `acquire` reserves its own slot under a lock, then sleeps outside it, so waiting
    threads go in the order they asked and the rate holds over any stretch of time.
    """

    def __init__(self, rate: float, capacity: float = 1.0, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate < 0 or capacity < 1:
            raise ValueError(f"a token bucket needs rate >= 0 and capacity >= 1, got {rate}, {capacity}")
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = capacity  # as of the time self._at; negative: slots reserved ahead
        self._at = clock()  # may lie in the future (after `defer`)
        self.waited = 0.0  # seconds slept in acquire, all threads together

    def _refill(self, now: float) -> None:
        """Bring the count up to `now`. Call with the lock held."""
        if now > self._at:
            if self.rate:
                self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
            self._at = now

    def acquire(self) -> float:
        """Wait for a token; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if self.rate:
                self._tokens -= 1
                ready = self._at + max(0.0, -self._tokens) / self.rate
            else:
                ready = self._at
            wait = max(0.0, ready - now)
            self.waited += wait
        if wait > 0:
            self._sleep(wait)
        return wait

    def try_acquire(self) -> bool:
        """Take a token if one is there now; never waits, never reserves ahead (a server
        refusing a request over its rate)."""
        if not self.rate:
            return True
        with self._lock:
            self._refill(self._clock())
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def defer(self, seconds: float) -> None:
        """Give no token for `seconds` from now (a log's Retry-After), then resume the rate;
        slots already reserved are kept, new ones come after them."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            # When the rate would give the next token anyway (after any reserved slots).
            earliest = self._at + (1 - self._tokens) / self.rate if self.rate and self._tokens < 1 else self._at
            start = max(now + max(0.0, seconds), earliest)
            if start > self._at:
                self._at, self._tokens = start, 1.0  # one token then: nothing saved up meanwhile


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class LogSession:
    """A pooled HTTP session to one log, sending at most `requests_per_second` (0: no limit)."""

    def __init__(self, log_name: str, policy: HttpPolicy, *, requests_per_second: float = 0.0) -> None:
        self.log_name = log_name
        self.policy = policy
        self.bucket = TokenBucket(requests_per_second)
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, policy.pool_size))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = policy.user_agent
        self.requests_made = 0
        self.retries_made = 0

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> LogSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wait(self, attempt: int, retry_after: float | None) -> float:
        # Full jitter on an exponential back-off; a server's Retry-After is a floor.
        delay = random.uniform(0, min(self.policy.max_backoff, self.policy.backoff * 2**attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.policy.max_backoff))
        return delay

    def _read_body(self, response: requests.Response, url: str) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.policy.max_body_bytes:
            raise LogHTTPError(
                f"{self.log_name}: {url} answered {declared} bytes, over the "
                f"{self.policy.max_body_bytes}-byte limit"
            )
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=256 * 1024):
            size += len(chunk)
            if size > self.policy.max_body_bytes:
                raise LogHTTPError(
                    f"{self.log_name}: {url} answer exceeds the "
                    f"{self.policy.max_body_bytes}-byte limit"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def get(self, url: str, params: dict[str, Any] | None = None) -> bytes:
        """GET `url`; the body of the first 200 answer. Raises LogHTTPError when attempts run out."""
        last_problem, last_status = "no attempt made", None
        for attempt in range(self.policy.attempts):
            retry_after = None
            self.bucket.acquire()
            try:
                self.requests_made += 1
                with self._session.get(
                    url,
                    params=params,
                    timeout=(self.policy.connect_timeout, self.policy.timeout),
                    stream=True,
                ) as response:
                    last_status = response.status_code
                    if response.status_code == 200:
                        return self._read_body(response, url)
                    last_problem = f"HTTP {response.status_code}"
                    if response.status_code not in RETRYABLE_STATUSES:
                        detail = response.raw.read(300, decode_content=True) or b""
                        raise LogHTTPError(
                            f"{self.log_name}: {url} {params or ''} answered HTTP "
                            f"{response.status_code}: {detail.decode('utf-8', 'replace').strip()}",
                            response.status_code,
                        )
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    if retry_after is not None:
                        # The whole session waits, not only this request's thread.
                        self.bucket.defer(min(retry_after, self.policy.max_backoff))
            except requests.RequestException as err:
                last_problem, last_status = f"{type(err).__name__}: {err}", None
            if attempt + 1 < self.policy.attempts:
                delay = self._wait(attempt, retry_after)
                self.retries_made += 1
                log.warning(
                    "%s: %s %s failed (%s); retry %d/%d in %.1fs",
                    self.log_name, url, params or "", last_problem,
                    attempt + 1, self.policy.attempts - 1, delay,
                )
                time.sleep(delay)
        raise LogHTTPError(
            f"{self.log_name}: {url} {params or ''} failed after {self.policy.attempts} "
            f"attempts; last: {last_problem}",
            last_status,
        )

    def get_json(self, url: str, params: dict[str, Any] | None = None) -> Any:
        """GET and parse JSON. Malformed JSON (a truncated answer) is retried like a 5xx."""
        for attempt in range(self.policy.attempts):
            body = self.get(url, params)
            try:
                return json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                problem = f"{self.log_name}: {url} {params or ''} answered invalid JSON ({err})"
                if attempt + 1 == self.policy.attempts:
                    raise LogHTTPError(problem, 200) from None
                log.warning("%s; retrying", problem)
                time.sleep(self._wait(attempt, None))
        raise AssertionError("unreachable")
