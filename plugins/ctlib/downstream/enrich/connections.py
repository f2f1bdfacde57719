"""How the enrichment clients reach a provider: credentials and an authenticated HTTP session.

Credentials come only from an Airflow Connection (the metadata DB, a secrets backend or
the `AIRFLOW_CONN_<ID>` environment form), read through the Task SDK's
`BaseHook.get_connection`. A connection that does not exist yields None and one log line
"<provider>: connection <id> not configured; skipping"; the caller then skips that provider.

`ProviderSession` is the one retry loop of both clients: timeouts, retries of 429/5xx with
exponential back-off and full jitter, a server's Retry-After as the floor of the wait
(`ctlib.http.retry_after_seconds`). `ctlib.http.LogSession` is not reused because it has
no way to authenticate, keeps only 300 bytes of an error body (a provider's error *body*
decides quota vs. rate limit vs. retired service) and always retries connection errors
(a retired PassiveTotal host must not be retried).

Secrets: `ProviderCredentials.secret` is hidden from repr/str; sessions carry it only in
the request's auth; no log line or exception text made here includes it.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3.exceptions import ConnectTimeoutError

from ctlib.http import retry_after_seconds

log = logging.getLogger(__name__)

USER_AGENT = "ct-airflow-enrich"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # a provider answer is KBs; far more is hostile
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider's display name, default connection id and default API host."""

    name: str
    conn_id: str
    default_host: str


PASSIVETOTAL = Provider("PassiveTotal", "passivetotal_default", "https://api.passivetotal.org")
THREATSTREAM = Provider("ThreatStream", "threatstream_default", "https://api.threatstream.com")


@dataclass(frozen=True, slots=True)
class ProviderCredentials:
    """Where and as whom to call a provider. `host` is a base URL without credentials
    (scheme://host[:port][/prefix]); `secret` is the connection's password (API key).

    repr/str hide the secret. Build it inside the task that uses it: never return it from
    a task, or XCom would store the secret in the metadata database.
    """

    host: str
    login: str
    secret: str = field(repr=False)
    conn_id: str = ""  # the Airflow connection it came from, for messages

    def __repr__(self) -> str:
        return (
            f"ProviderCredentials(host={self.host!r}, login={self.login!r}, "
            f"secret='***', conn_id={self.conn_id!r})"
        )

    __str__ = __repr__


class ConnectionLike(Protocol):
    """The fields of an Airflow Connection used here."""

    host: str | None
    schema: str | None
    port: int | None
    login: str | None
    password: str | None


ConnectionGetter = Callable[[str], "ConnectionLike | None"]


def airflow_connection(conn_id: str) -> ConnectionLike | None:
    """The Airflow connection `conn_id` via the Task SDK, or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def base_url(host: str | None, schema: str | None, port: int | None, default_host: str) -> str:
    """The provider base URL from a connection's host/schema/port fields.

    `host` may be a bare name ("api.example.com", scheme from `schema`, default https) or a
    full URL ("http://127.0.0.1:8080/prefix"); `port` is added when the host has none.
    Empty `host` means `default_host`. Any user:password@ in the host is dropped.
    """
    host = (host or "").strip()
    if not host:
        return default_host.rstrip("/")
    if "://" not in host:
        host = f"{(schema or '').strip() or 'https'}://{host}"
    parts = urlsplit(host)
    hostname = parts.hostname or ""
    if ":" in hostname:  # IPv6 literal
        hostname = f"[{hostname}]"
    try:
        explicit_port = parts.port
    except ValueError:
        raise ValueError(f"connection host {hostname!r} has an invalid port") from None
    chosen = explicit_port or port
    netloc = f"{hostname}:{chosen}" if chosen else hostname
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def read_credentials(
    conn_id: str, default_host: str, *, get_connection: ConnectionGetter = airflow_connection
) -> ProviderCredentials | None:
    """Credentials from connection `conn_id`; None when it is missing or has no login/password."""
    conn = get_connection(conn_id)
    if conn is None or not conn.login or not conn.password:
        return None
    host = base_url(conn.host, conn.schema, conn.port, default_host)
    return ProviderCredentials(host=host, login=conn.login, secret=conn.password, conn_id=conn_id)


def credentials_for(
    provider: Provider,
    conn_id: str | None = None,
    *,
    get_connection: ConnectionGetter = airflow_connection,
    logger: logging.Logger = log,
) -> ProviderCredentials | None:
    """`read_credentials` for `provider` (its default connection id unless `conn_id`);
    when there are none, logs the one "not configured; skipping" line and returns None."""
    conn_id = conn_id or provider.conn_id
    creds = read_credentials(conn_id, provider.default_host, get_connection=get_connection)
    if creds is None:
        logger.info("%s: connection %s not configured; skipping", provider.name, conn_id)
    return creds


# --------------------------------------------------------------------------- HTTP


class HeaderAuth(AuthBase):
    """Sets one header (e.g. `Authorization: apikey user:key`) on every request.

    Passed as requests `auth=`, so a ~/.netrc entry cannot replace it; repr hides the value.
    """

    def __init__(self, name: str, value: str) -> None:
        self._name = name
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._name] = self._value
        return request

    def __repr__(self) -> str:
        return f"HeaderAuth({self._name!r}, '***')"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per request and the back-off between them (seconds)."""

    attempts: int = 4
    backoff: float = 1.0
    max_backoff: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("attempts must be >= 1 and back-offs >= 0")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Wait before retry number `attempt + 1`: full jitter, Retry-After as a floor."""
        delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """One HTTP answer of a provider: status, body and what retries need."""

    status: int
    body: bytes
    content_type: str
    retry_after: float | None = None
    attempts: int = 1  # requests made to get this answer

    def json(self) -> Any | None:
        """The body parsed as JSON, or None when it is not JSON (an HTML error page, ...)."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            return None

    def snippet(self, limit: int = 120) -> str:
        """The start of the body as one line of text, for messages."""
        text = self.body[: limit * 4].decode("utf-8", "replace")
        return " ".join(text.split())[:limit]


class BodyTooLarge(requests.RequestException):
    """An answer exceeded the session's body limit."""


def retry_transient(response: ApiResponse) -> bool:
    """Default retry rule: rate limits and server-side trouble."""
    return response.status in RETRYABLE_STATUSES


class ProviderSession:
    """A pooled, authenticated requests session to one provider, with retries.

    `get` returns the first answer that `should_retry` rejects, or the last answer once the
    attempts are spent; it never raises for an HTTP status. Transport failures (DNS, TCP,
    TLS, timeouts) are retried only with `retry_transport_errors`, then re-raised as the
    `requests` exception (their text names the URL, never a header).
    """

    def __init__(
        self,
        provider: str,
        *,
        auth: AuthBase | tuple[str, str] | None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy = RetryPolicy(),
        headers: Mapping[str, str] | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.retry = retry
        self._timeout = (min(connect_timeout, timeout), timeout)
        self._max_body = max_body_bytes
        self._sleep = sleep
        self._session = requests.Session()
        self._session.auth = auth
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._session.headers.update(headers or {})
        self.requests_made = 0
        self.retries_made = 0

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ProviderSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            raise BodyTooLarge(f"answer of {declared} bytes is over the {self._max_body}-byte limit")
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > self._max_body:
                raise BodyTooLarge(f"answer is over the {self._max_body}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def _once(self, url: str, params: Mapping[str, Any] | None) -> ApiResponse:
        self.requests_made += 1
        # No redirects: a provider API does not redirect, and a hop must not carry our auth.
        with self._session.get(
            url, params=params, timeout=self._timeout, stream=True, allow_redirects=False
        ) as response:
            return ApiResponse(
                status=response.status_code,
                body=self._read(response),
                content_type=response.headers.get("Content-Type", ""),
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        *,
        should_retry: Callable[[ApiResponse], bool] = retry_transient,
        retry_transport_errors: bool = True,
    ) -> ApiResponse:
        """GET `url` with `params`; see the class docstring for what is retried."""
        path = urlsplit(url).path
        attempts = self.retry.attempts
        for attempt in range(attempts):
            retry_after = None
            try:
                answer = self._once(url, params)
            except BodyTooLarge:
                raise
            except requests.RequestException as err:
                if not retry_transport_errors or attempt + 1 == attempts:
                    raise
                problem = type(err).__name__
            else:
                if attempt + 1 == attempts or not should_retry(answer):
                    return ApiResponse(
                        answer.status, answer.body, answer.content_type, answer.retry_after, attempt + 1
                    )
                problem, retry_after = f"HTTP {answer.status}", answer.retry_after
            delay = self.retry.delay(attempt, retry_after)
            self.retries_made += 1
            log.warning(
                "%s: GET %s failed (%s); retry %d/%d in %.1fs",
                self.provider, path, problem, attempt + 1, attempts - 1, delay,
            )
            self._sleep(delay)
        raise AssertionError("unreachable")


class ProviderClient:
    """What both provider clients share: a ProviderSession, the switch that turns a client
    off after a fatal error (retired, auth, quota), and closing."""

    _http: ProviderSession
    _base: str
    _off: Exception | None = None

    @property
    def host(self) -> str:
        return self._base

    @property
    def disabled(self) -> Exception | None:
        """The fatal error that switched this client off, if any."""
        return self._off

    @property
    def requests_made(self) -> int:
        return self._http.requests_made

    def close(self) -> None:
        self._http.close()

    def __enter__(self):  # noqa: ANN204 (returns the subclass)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unreachable(err: requests.RequestException) -> bool:
    """True when `err` means the host could not be reached at all: DNS failure, refused or
    timed-out connect, TLS failure. False for trouble after connecting (reset, read timeout)."""
    if isinstance(err, (requests.exceptions.SSLError, requests.ConnectTimeout)):
        return True
    if not isinstance(err, requests.ConnectionError) or not err.args:
        return False
    # requests wraps urllib3's MaxRetryError; its reason tells connect failures apart.
    # (NewConnectionError and NameResolutionError are ConnectTimeoutError subclasses.)
    return isinstance(getattr(err.args[0], "reason", None), ConnectTimeoutError)


def redact(text: str, *secrets: str) -> str:
    """`text` with every non-empty secret replaced by ***: for text a server sent back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
