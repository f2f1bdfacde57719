"""HTTP for the whole pipeline, CT logs and threat-intel APIs alike: the one place that
retries. A session per log or API (`name`, for messages) with timeouts, retries with
back-off and full jitter, Retry-After, a body-size limit and a request-rate limit.

`HttpSession.fetch` returns the first answer its `check` accepts (default `retryable`: any
status but 408, 425, 429 and 5xx), or the last one once the policy's attempts are spent
(`answer.problem` then says why it was unwanted); it never raises for a status. `get`
returns the body of a 200 answer, `get_json` its JSON (malformed JSON is retried like a
5xx); both raise HttpError for anything else. Transport failures (DNS, TCP, TLS, timeouts,
a broken body) are retried unless the policy says not to; when they persist, for a
request that cannot be made and for an answer over the body limit, HttpError names the
session, the URL and what failed, and tells whether the host could not be reached at all.
Safe to call from several threads at once.

Credentials go only into `auth=`; an authenticated session follows no redirects (a hop
must not carry them), and no log line or HttpError made here quotes a header.

Rate limit: every attempt of every request of a session (tree heads, get-entries, proofs,
tiles, issuers; retries too) first takes a token from the session's `TokenBucket`, so the
session never sends more than its `requests_per_second` on average, paced evenly. The rate
given to a session is its share of the log's budget (ctlib.ct.limits: a mapped fetch task
gets the log's rate / CT_FETCH_PARALLELISM; the ingest and commit tasks, which run alone, all of it).
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.exceptions import ConnectTimeoutError

from ctlib.settings import Settings, user_agent

log = logging.getLogger(__name__)

T = TypeVar("T")

# Statuses worth another try: rate limits and server-side trouble. Other 4xx mean our
# request is wrong (or the range is not there yet) and retrying will not help.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A CT answer is at most a few MB (1,000 entries with chains); anything far larger is hostile.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# Failures on the way, worth another try. requests' other errors (a malformed URL or header,
# too many redirects) are not, and their text may quote a header: messages name only the type.
TRANSPORT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError)


def warn_if_anonymous(settings: Settings) -> None:
    """Once per task: warn when no CT_CONTACT goes into the User-Agent (and CT_USER_AGENT does
    not replace it), as Sunlight logs (Let's Encrypt's among them) throttle anonymous readers."""
    if not settings.contact and settings.user_agent == user_agent(""):
        log.warning(
            "CT_CONTACT is not set: logs see an anonymous reader (User-Agent %r). Sunlight logs, "
            "Let's Encrypt's among them, ask monitors for a contact and throttle anonymous "
            "readers; set CT_CONTACT to an e-mail address or URL", settings.user_agent,
        )


class HttpError(RuntimeError):
    """A request failed for good; `status` is the last HTTP status, if any; `unreachable`
    says the host could not be reached at all (DNS failure, refused or timed-out connect, TLS)."""

    def __init__(self, message: str, status: int | None = None, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


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
    retry_transport_errors: bool = True

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


@dataclass(slots=True)
class Answer:
    """One HTTP answer: status, whole body (within the body limit) and what retries need.
    `fetch` sets `attempts` (requests made to get it) and `problem` (why `check` wanted
    another attempt when none was left; None once accepted); a `check` may set `value`."""

    status: int
    body: bytes
    content_type: str = ""
    retry_after: float | None = None
    attempts: int = 1
    problem: str | None = None
    value: Any = None

    def json(self) -> Any | None:
        """The body parsed as JSON, or None when it is not JSON (an HTML error page, ...)."""
        try:
            return json.loads(self.body) if self.body.strip() else None
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            return None

    def snippet(self, limit: int = 120) -> str:
        """The start of the body as one line of text, for messages."""
        return " ".join(self.body[: limit * 4].decode("utf-8", "replace").split())[:limit]


def retryable(answer: Answer) -> str | None:
    """The default `check`: why `answer` is worth another attempt (a retryable status), or None."""
    return f"HTTP {answer.status}" if answer.status in RETRYABLE_STATUSES else None


def parsed(parse: Callable[[bytes], Any], unusable: str) -> Callable[[Answer], str | None]:
    """A `check`: `retryable`, and a 200 answer whose body `parse` refuses (ValueError: a
    truncated or garbled answer) is retried too, as `answered <unusable> (why)`; sets `value`."""
    def check(answer: Answer) -> str | None:
        if answer.status != 200:
            return retryable(answer)
        try:
            answer.value = parse(answer.body)
        except ValueError as err:
            return f"answered {unusable} ({err})"
        return None

    return check


def _unreachable(err: requests.RequestException) -> bool:
    """DNS failure, refused or timed-out connect, TLS failure; not trouble after connecting."""
    if isinstance(err, (requests.exceptions.SSLError, requests.ConnectTimeout)):
        return True
    if not isinstance(err, requests.ConnectionError) or not err.args:
        return False
    # requests wraps urllib3's MaxRetryError; its reason tells connect failures apart
    # (NewConnectionError and NameResolutionError are ConnectTimeoutError subclasses).
    return isinstance(getattr(err.args[0], "reason", None), ConnectTimeoutError)


class HttpSession:
    """A pooled HTTP session to one log or API, sending at most `requests_per_second` (0: no
    limit); `auth` and `headers` go with every request."""

    def __init__(self, name: str, policy: HttpPolicy, *, requests_per_second: float = 0.0,
                 auth: AuthBase | tuple[str, str] | None = None, headers: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.policy = policy
        self.bucket = TokenBucket(requests_per_second)
        self._session = requests.Session()
        self._session.auth = auth
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, policy.pool_size))
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"User-Agent": policy.user_agent, **(headers or {})})
        self.requests_made = 0
        self.retries_made = 0

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> HttpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _what(self, url: str, params: Mapping[str, Any] | None) -> str:
        return f"{self.name}: {url} {params}" if params else f"{self.name}: {url}"

    def _read(self, response: requests.Response, url: str) -> bytes:
        limit = self.policy.max_body_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HttpError(f"{self.name}: {url} answered {declared} bytes, over the {limit}-byte limit")
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=256 * 1024):
            size += len(chunk)
            if size > limit:
                raise HttpError(f"{self.name}: {url} answer exceeds the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def _once(self, url: str, params: Mapping[str, Any] | None) -> Answer:
        with self._session.get(
            url, params=params, timeout=(self.policy.connect_timeout, self.policy.timeout),
            stream=True, allow_redirects=self._session.auth is None,
        ) as response:
            return Answer(response.status_code, self._read(response, url), response.headers.get("Content-Type", ""),
                          retry_after_seconds(response.headers.get("Retry-After")))

    def fetch(self, url: str, params: Mapping[str, Any] | None = None, *,
              check: Callable[[Answer], str | None] = retryable) -> Answer:
        """GET `url` with `params`; see the module docstring for what is retried."""
        what, attempts = self._what(url, params), max(1, self.policy.attempts)
        for attempt in range(1, attempts + 1):
            self.bucket.acquire()
            self.requests_made += 1
            retry_after = None
            try:
                answer = self._once(url, params)
            except TRANSPORT_ERRORS as err:
                problem, gone = f"{type(err).__name__}: {err}", _unreachable(err)
                if attempt == attempts or not self.policy.retry_transport_errors:
                    raise HttpError(f"{what} failed after {attempt} attempts{' (unreachable)' if gone else ''}; "
                                    f"last: {problem}", unreachable=gone) from err
            except requests.RequestException as err:
                raise HttpError(f"{what} failed ({type(err).__name__})") from None
            else:
                answer.attempts, answer.problem = attempt, check(answer)
                if answer.problem is None or attempt == attempts:
                    return answer
                problem, retry_after = answer.problem, answer.retry_after
                if retry_after is not None:  # the whole session waits, not only this thread
                    self.bucket.defer(min(retry_after, self.policy.max_backoff))
            # Full jitter on an exponential back-off; a server's Retry-After is a floor.
            delay = random.uniform(0, min(self.policy.max_backoff, self.policy.backoff * 2 ** (attempt - 1)))
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.policy.max_backoff))
            self.retries_made += 1
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what, problem, attempt, attempts - 1, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _ok(self, url: str, params: Mapping[str, Any] | None, check: Callable[[Answer], str | None]) -> Answer:
        answer = self.fetch(url, params, check=check)
        if answer.problem is not None:
            raise HttpError(f"{self._what(url, params)} failed after {answer.attempts} attempts; "
                            f"last: {answer.problem}", answer.status)
        if answer.status != 200:
            raise HttpError(f"{self._what(url, params)} answered HTTP {answer.status}: {answer.snippet(300)}",
                            answer.status)
        return answer

    def get(self, url: str, params: Mapping[str, Any] | None = None) -> bytes:
        """GET `url`; the body of the first 200 answer. Raises HttpError otherwise."""
        return self._ok(url, params, retryable).body

    def get_parsed(self, url: str, parse: Callable[[bytes], T], unusable: str = "an unusable body") -> T:
        """GET `url`; `parse` of the body of the first 200 answer it accepts. A body it refuses
        (ValueError) is retried like a 5xx; when every attempt was refused, HttpError with
        status 200 says why the last one was."""
        return self._ok(url, None, parsed(parse, unusable)).value

    def get_json(self, url: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET and parse JSON. Malformed JSON (a truncated answer) is retried like a 5xx."""
        return self._ok(url, params, parsed(json.loads, "invalid JSON")).value

