"""How the enrichment clients reach a provider: credentials and an authenticated HTTP session.

Credentials come only from an Airflow Connection (the metadata DB, a secrets backend or
the `AIRFLOW_CONN_<ID>` environment form), read through the Task SDK's
`BaseHook.get_connection`. A connection that does not exist yields None and one log line
"<provider>: connection <id> not configured; skipping"; the caller then skips that provider.

HTTP: `api_session` builds a client's `ctlib.http.HttpSession` (timeouts, retries, Retry-After
all live there) with the provider's auth and the enrichment's policy: its own User-Agent,
a 16 MiB body limit, JSON wanted, no redirects (the session is authenticated). The clients
read each answer whole, status and body, since a provider's error *body* decides quota vs.
rate limit vs. retired service.

Secrets: `ProviderCredentials.secret` is hidden from repr/str; sessions carry it only in
the request's auth; no log line or exception text made here includes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.auth import AuthBase

from ctlib.http import HttpPolicy, HttpSession

log = logging.getLogger(__name__)

USER_AGENT = "ct-airflow-enrich"
MAX_BODY_BYTES = 16 * 1024 * 1024  # a provider answer is KBs; far more is hostile


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
    A value with a line break is refused here, before http.client would quote it in an error.
    """

    def __init__(self, name: str, value: str) -> None:
        if "\r" in value or "\n" in value:
            raise ValueError(f"the {name} header value (a credential) holds a line break")
        self._name = name
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._name] = self._value
        return request

    def __repr__(self) -> str:
        return f"HeaderAuth({self._name!r}, '***')"


def api_session(provider: Provider, auth: AuthBase | tuple[str, str], *, timeout: float = 30.0,
                attempts: int = 4, backoff: float = 1.0, max_backoff: float = 60.0,
                retry_transport_errors: bool = True) -> HttpSession:
    """The `ctlib.http` session of a provider client: its auth, JSON, the enrichment's
    User-Agent and body limit, and the client's timeout and retries."""
    policy = HttpPolicy(
        timeout=timeout, connect_timeout=min(10.0, timeout), attempts=attempts, backoff=backoff,
        max_backoff=max_backoff, user_agent=USER_AGENT, max_body_bytes=MAX_BODY_BYTES,
        retry_transport_errors=retry_transport_errors,
    )
    return HttpSession(provider.name, policy, auth=auth, headers={"Accept": "application/json"})


class ProviderClient:
    """What both provider clients share: an HttpSession, the switch that turns a client
    off after a fatal error (retired, auth, quota), and closing."""

    _http: HttpSession
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

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redact(text: str, *secrets: str) -> str:
    """`text` with every non-empty secret replaced by ***: for text a server sent back."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
