"""RiskIQ PassiveTotal v2 client: WHOIS, passive DNS and enrichment of one domain.

The service was shut down in 2025 (API.md section 1.0): `api.passivetotal.org` now
answers HTTP 404 with an Azure Front Door HTML page for every path, behind a certificate
for another name, and the other hosts do not resolve. The client therefore treats a 404
whose body is not PassiveTotal JSON, and any DNS/TCP/TLS failure, as PassiveTotalRetired:
never retried, logged once, and every later call of the same client fails fast without
touching the network. Auth errors and an exhausted quota switch the client off the same
way (more calls cannot succeed within the run).

Wire format (API.md 1.1-1.4): HTTP Basic (account e-mail, API secret); `GET /v2/whois`,
`/v2/dns/passive`, `/v2/enrichment` and `/v2/account` with `query=<domain>`; errors are
`{"message": ...}` or `{"error": {"message": ...}}`; `quota_exceeded...` messages may come
with any status; 404 with a JSON body means "no record".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ctlib.downstream.enrich import normalize_domain
from ctlib.downstream.enrich.connections import PASSIVETOTAL, ProviderClient, ProviderCredentials, api_session, redact
from ctlib.http import Answer, HttpError, retryable

log = logging.getLogger(__name__)

MAX_RESOLVES = 25  # distinct passive-DNS answers kept per domain: enough to eyeball, bounded
RETIRED_NOTICE = (
    "PassiveTotal API at {host} answers as retired (RiskIQ PassiveTotal was shut down in "
    "2025; its successor is the Microsoft Defender Threat Intelligence / Graph API): "
    "enrichment from this provider is off"
)


class PassiveTotalError(RuntimeError):
    """A PassiveTotal call failed; `kind` is the result status it maps to."""

    kind = "error"


class PassiveTotalAuthError(PassiveTotalError):
    kind = "auth_error"


class PassiveTotalRateLimited(PassiveTotalError):
    kind = "rate_limited"


class PassiveTotalQuotaExceeded(PassiveTotalError):
    kind = "quota_exceeded"


class PassiveTotalRetired(PassiveTotalError):
    kind = "retired"


class PassiveTotalUnavailable(PassiveTotalError):
    """5xx after retries, a timeout, or an answer that is not PassiveTotal JSON."""

    kind = "unavailable"


class PassiveTotalNotFound(PassiveTotalError):
    """404 with a PassiveTotal JSON body: no record for the query (not a failure)."""

    kind = "not_found"


# Errors after which no call of this client can succeed in this run.
_FATAL = (PassiveTotalAuthError, PassiveTotalQuotaExceeded, PassiveTotalRetired)


@dataclass(frozen=True, slots=True)
class PassiveTotalResult:
    """What PassiveTotal knows about one registered domain.

    `status` is "ok", "not_found" (no WHOIS, passive DNS or enrichment record), "skipped"
    (provider not configured) or the `kind` of the error that stopped the look-up
    ("auth_error", "rate_limited", "quota_exceeded", "retired", "unavailable", "error");
    fields gathered before an error are kept. `message` explains a non-"ok" status.
    """

    domain: str
    registered: date | None = None
    registrar: str | None = None
    name_servers: tuple[str, ...] = ()
    pdns_records: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    resolves: tuple[str, ...] = ()
    ever_compromised: bool | None = None
    tags: tuple[str, ...] = ()
    status: str = "ok"
    message: str = ""

    @classmethod
    def skipped(cls, domain: str, message: str = "PassiveTotal not configured") -> PassiveTotalResult:
        return cls(domain=domain, status="skipped", message=message)


# --------------------------------------------------------------------------- parsing


def parse_date(value: Any) -> date | None:
    """'1968-04-03' or '1968-04-03 02:12:09' / ISO-8601 -> date; None for anything else."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def parse_time(value: Any) -> datetime | None:
    """'1968-04-03 02:12:09' (UTC, as PassiveTotal writes it) -> aware datetime; else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value if item is not None) if isinstance(value, list) else ()


def _dns_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def result_from(
    domain: str,
    whois: dict[str, Any] | None,
    pdns: dict[str, Any] | None,
    enrichment: dict[str, Any] | None,
    *,
    status: str = "ok",
    message: str = "",
) -> PassiveTotalResult:
    """Build a PassiveTotalResult from the raw answers (None: no such record)."""
    whois, pdns, enrichment = whois or {}, pdns or {}, enrichment or {}
    # Current answers list records under `results`; the 2016 format used `records`.
    records = pdns.get("results", pdns.get("records")) or []
    records = [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
    resolves: list[str] = []
    for record in records:
        value = record.get("resolve")
        if isinstance(value, str) and value not in resolves and len(resolves) < MAX_RESOLVES:
            resolves.append(value)
    total = pdns.get("totalRecords")
    compromised = enrichment.get("everCompromised")
    registrar = whois.get("registrar")
    return PassiveTotalResult(
        domain=domain,
        registered=parse_date(whois.get("registered")),
        registrar=registrar if isinstance(registrar, str) and registrar else None,
        name_servers=tuple(_dns_name(ns) for ns in _strings(whois.get("nameServers"))),
        pdns_records=total if isinstance(total, int) and total >= 0 else len(records),
        first_seen=parse_time(pdns.get("firstSeen")),
        last_seen=parse_time(pdns.get("lastSeen")),
        resolves=tuple(resolves),
        ever_compromised=compromised if isinstance(compromised, bool) else None,
        tags=_strings(enrichment.get("tags")),
        status=status,
        message=message,
    )


def error_message(payload: Any) -> str | None:
    """The message of a PassiveTotal error body (either documented shape), if any."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    message = payload.get("message")
    return message if isinstance(message, str) else None


# --------------------------------------------------------------------------- client


class PassiveTotalClient(ProviderClient):
    """PassiveTotal v2 over HTTP Basic auth (login = account e-mail, secret = API secret).

    Raw calls (`whois`, `passive_dns`, `enrichment`, `account`) return the JSON object or
    raise a PassiveTotalError subclass; `lookup` never raises for a provider problem and
    reports it in the result's status instead. 429, 5xx and the other statuses of
    `ctlib.http.retryable` are retried by the session (`attempts` in all, exponential
    back-off from `backoff` seconds, Retry-After honoured); nothing else is.
    Not for concurrent use from several threads.
    """

    def __init__(
        self,
        creds: ProviderCredentials,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
    ) -> None:
        self._creds = creds
        host = creds.host.rstrip("/")
        self._base = host[: -len("/v2")] if host.endswith("/v2") else host
        self._conn_id = creds.conn_id or PASSIVETOTAL.conn_id
        # No retry of transport failures: a DNS, connect or TLS failure means the service is gone.
        self._http = api_session(
            PASSIVETOTAL, (creds.login, creds.secret), timeout=timeout, attempts=attempts,
            backoff=backoff, max_backoff=max_backoff, retry_transport_errors=False,
        )
        self._off: PassiveTotalError | None = None  # set once a fatal error is seen

    # ------------------------------------------------------------------ raw endpoints

    def whois(self, domain: str) -> dict[str, Any]:
        """GET /v2/whois?query=domain."""
        return self._get("/v2/whois", {"query": normalize_domain(domain)})

    def passive_dns(self, domain: str) -> dict[str, Any]:
        """GET /v2/dns/passive?query=domain."""
        return self._get("/v2/dns/passive", {"query": normalize_domain(domain)})

    def enrichment(self, domain: str) -> dict[str, Any]:
        """GET /v2/enrichment?query=domain."""
        return self._get("/v2/enrichment", {"query": normalize_domain(domain)})

    def account(self) -> dict[str, Any]:
        """GET /v2/account: the connectivity test (raises PassiveTotalRetired on a dead host)."""
        return self._get("/v2/account", None)

    # ------------------------------------------------------------------ look-up

    def lookup(self, domain: str) -> PassiveTotalResult:
        """WHOIS, passive DNS and enrichment of `domain`, folded into one result."""
        domain = normalize_domain(domain)
        answers: dict[str, dict[str, Any] | None] = {"whois": None, "pdns": None, "enrichment": None}
        calls = (("whois", self.whois), ("pdns", self.passive_dns), ("enrichment", self.enrichment))
        try:
            for key, call in calls:
                try:
                    answers[key] = call(domain)
                except PassiveTotalNotFound:
                    answers[key] = None
        except PassiveTotalError as err:
            return result_from(domain, *answers.values(), status=err.kind, message=str(err))
        if all(answer is None for answer in answers.values()):
            return result_from(domain, None, None, None, status="not_found", message="no PassiveTotal record")
        return result_from(domain, *answers.values())

    # ------------------------------------------------------------------ internals

    def _get(self, path: str, params: dict[str, str] | None) -> dict[str, Any]:
        if self._off is not None:
            raise type(self._off)(str(self._off))
        try:
            return self._request(path, params)
        except _FATAL as err:
            if self._off is None:
                self._off = err
                log.warning("%s", err)
            raise

    def _request(self, path: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            answer = self._http.fetch(self._base + path, params, check=_retry_rule)
        except HttpError as err:
            # DNS failure, refused connect, TLS failure (the retired host serves another
            # name's certificate): the documented ways the service is gone.
            if err.unreachable:
                raise PassiveTotalRetired(RETIRED_NOTICE.format(host=self._base)) from None
            raise PassiveTotalUnavailable(self._clean(str(err))) from None
        return self._interpret(path, answer)

    def _interpret(self, path: str, answer: Answer) -> dict[str, Any]:
        payload = answer.json()
        message = error_message(payload)
        if message is not None and message.startswith("quota_exceeded"):
            raise PassiveTotalQuotaExceeded(
                f"PassiveTotal quota exceeded for connection {self._conn_id} "
                f"(HTTP {answer.status}: {self._clean(message)})"
            )
        status = answer.status
        if status in (401, 403):
            raise PassiveTotalAuthError(
                f"PassiveTotal rejected the credentials of connection {self._conn_id} ({status})"
            )
        if status == 404:
            if isinstance(payload, dict):
                raise PassiveTotalNotFound(self._clean(message or f"no record for {path}"))
            # PassiveTotal's 404s are JSON; an HTML 404 for an API path is Azure Front Door.
            raise PassiveTotalRetired(RETIRED_NOTICE.format(host=self._base))
        if status == 429:
            raise PassiveTotalRateLimited(
                f"PassiveTotal kept answering 429 (rate limited) on {path} after "
                f"{answer.attempts} attempts"
            )
        if status == 204:
            raise PassiveTotalNotFound(f"no content for {path}")
        if status != 200:
            detail = message if message is not None else answer.snippet()
            error = PassiveTotalUnavailable if status >= 500 else PassiveTotalError
            raise error(f"PassiveTotal answered HTTP {status} on {path}: {self._clean(detail)}")
        if not isinstance(payload, dict):
            raise PassiveTotalUnavailable(
                f"PassiveTotal answered {path} with a non-JSON body "
                f"({answer.content_type or 'no content type'}): {self._clean(answer.snippet())}"
            )
        if message is not None and ("error" in payload or set(payload) <= {"message", "success"}):
            raise PassiveTotalError(f"PassiveTotal reported an error on {path}: {self._clean(message)}")
        return payload

    def _clean(self, text: str) -> str:
        return redact(text, self._creds.secret)


def _retry_rule(answer: Answer) -> str | None:
    """`retryable` (429, 5xx, ...), unless the body says the quota is gone (retrying cannot help)."""
    problem = retryable(answer)
    if problem and (error_message(answer.json()) or "").startswith("quota_exceeded"):
        return None
    return problem
