"""Anomali ThreatStream v2 client: the intelligence (observables) known for one domain.

Wire format (API.md section 2): header `Authorization: apikey <login>:<key>` (never the
legacy `?username=&api_key=` query form, which leaks keys into access logs);
`GET /api/v2/intelligence/?value=&type=&limit=` answers `{"objects": [...], "meta":
{"next": <relative URL or null>, ...}}`, HTTP 200 with no objects for an unknown value.
`confidence` is -1..100 (-1 unknown), severity sits in `meta.severity` (XSOAR's default
"low" when missing). 429 may carry Retry-After; proxies may answer with HTML pages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from ctlib.downstream.enrich import normalize_domain
from ctlib.downstream.enrich.connections import (
    THREATSTREAM,
    HeaderAuth,
    ProviderClient,
    ProviderCredentials,
    api_session,
    redact,
)
from ctlib.http import Answer, HttpError

log = logging.getLogger(__name__)

SEVERITIES = ("low", "medium", "high", "very-high")  # ascending
DEFAULT_SEVERITY = "low"
UNKNOWN_CONFIDENCE = -1
MAX_PAGE_SIZE = 1000  # the API's per-page cap


class ThreatStreamError(RuntimeError):
    """A ThreatStream call failed; `kind` is the result status it maps to."""

    kind = "error"


class ThreatStreamAuthError(ThreatStreamError):
    kind = "auth_error"


class ThreatStreamRateLimited(ThreatStreamError):
    kind = "rate_limited"


class ThreatStreamUnavailable(ThreatStreamError):
    """Unreachable, 5xx after retries, or an answer that is not ThreatStream JSON."""

    kind = "unavailable"


@dataclass(frozen=True, slots=True)
class ThreatIndicator:
    """One ThreatStream intelligence object, reduced to what risk scoring and analysts need.

    `confidence` is -1 when unknown; `severity` is one of SEVERITIES; `threatscore` is
    None when absent; `tags` are tag names.
    """

    value: str
    type: str
    itype: str
    threat_type: str
    status: str
    confidence: int
    severity: str
    threatscore: int | None
    tags: tuple[str, ...]
    source: str
    modified_ts: datetime | None

    @property
    def severity_rank(self) -> int:
        """1 (low) .. 4 (very-high)."""
        return SEVERITIES.index(self.severity) + 1


@dataclass(frozen=True, slots=True)
class ThreatStreamResult:
    """ThreatStream's verdict material for one domain.

    `status` is "ok" (indicators found), "not_found" (none: ThreatStream knows nothing
    against the domain), "skipped" (provider not configured) or an error kind
    ("auth_error", "rate_limited", "unavailable", "error"). `max_confidence` is -1 and
    `max_severity` None without indicators.
    """

    domain: str
    indicators: tuple[ThreatIndicator, ...] = ()
    max_confidence: int = UNKNOWN_CONFIDENCE
    max_severity: str | None = None
    status: str = "ok"
    message: str = ""

    @classmethod
    def skipped(cls, domain: str, message: str = "ThreatStream not configured") -> ThreatStreamResult:
        return cls(domain=domain, status="skipped", message=message)

    @classmethod
    def of(cls, domain: str, indicators: list[ThreatIndicator] | tuple[ThreatIndicator, ...]) -> ThreatStreamResult:
        """The result for `indicators` found for `domain` (status from whether there are any)."""
        indicators = tuple(indicators)
        if not indicators:
            return cls(domain=domain, status="not_found", message="no ThreatStream intelligence")
        worst = max(indicators, key=lambda i: i.severity_rank)
        return cls(
            domain=domain,
            indicators=indicators,
            max_confidence=max(i.confidence for i in indicators),
            max_severity=worst.severity,
        )

    @property
    def threat_types(self) -> tuple[str, ...]:
        """Distinct non-empty threat types, sorted."""
        return tuple(sorted({i.threat_type for i in self.indicators if i.threat_type}))


# --------------------------------------------------------------------------- parsing


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def parse_confidence(value: Any) -> int:
    """-1..100; -1 for missing, null or out-of-range values."""
    number = _int(value)
    return number if number is not None and 0 <= number <= 100 else UNKNOWN_CONFIDENCE


def parse_severity(meta: Any) -> str:
    """`meta.severity` lower-cased if it is a known level, else "low" (as XSOAR does)."""
    severity = _text(meta.get("severity")).lower() if isinstance(meta, dict) else ""
    return severity if severity in SEVERITIES else DEFAULT_SEVERITY


def parse_timestamp(value: Any) -> datetime | None:
    """'2021-08-22T16:50:01.032Z' -> aware UTC datetime; None when absent or malformed."""
    text = _text(value)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_indicator(obj: dict[str, Any]) -> ThreatIndicator:
    """One raw intelligence object -> ThreatIndicator (tolerates missing/null fields)."""
    tags = obj.get("tags") or []
    names = tuple(
        tag["name"] for tag in tags if isinstance(tag, dict) and isinstance(tag.get("name"), str)
    ) if isinstance(tags, list) else ()
    score = _int(obj.get("threatscore"))
    return ThreatIndicator(
        value=_text(obj.get("value")),
        type=_text(obj.get("type")).lower(),
        itype=_text(obj.get("itype")).lower(),
        threat_type=_text(obj.get("threat_type")).lower(),
        status=_text(obj.get("status")).lower(),
        confidence=parse_confidence(obj.get("confidence")),
        severity=parse_severity(obj.get("meta")),
        threatscore=score if score is not None and 0 <= score <= 100 else None,
        tags=names,
        source=_text(obj.get("source")),
        modified_ts=parse_timestamp(obj.get("modified_ts")),
    )


def parse_page(payload: Any) -> tuple[list[ThreatIndicator], str | None]:
    """A page's indicators and its `meta.next` (None on the last page).

    Raises ThreatStreamUnavailable when `payload` is not an intelligence page.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("objects"), list):
        raise ThreatStreamUnavailable("ThreatStream answered JSON that is not an intelligence page")
    meta = payload.get("meta")
    following = meta.get("next") if isinstance(meta, dict) else None
    objects = [parse_indicator(obj) for obj in payload["objects"] if isinstance(obj, dict)]
    return objects, following if isinstance(following, str) and following else None


# --------------------------------------------------------------------------- client


class ThreatStreamClient(ProviderClient):
    """ThreatStream v2 intelligence look-ups with the API-key header.

    `intelligence` returns every indicator for a value, following `meta.next` for at most
    `max_pages` pages of `page_size` (a warning is logged when more remain), or raises a
    ThreatStreamError subclass; `lookup` reports problems in the result's status instead.
    429, 5xx and transport failures are retried by the session (`ctlib.http`; `attempts` in
    all, Retry-After honoured).
    Auth errors switch the client off for the rest of its life. Not thread-safe.
    """

    def __init__(
        self,
        creds: ProviderCredentials,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        page_size: int = MAX_PAGE_SIZE,
        max_pages: int = 10,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE or max_pages < 1:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE} and max_pages >= 1")
        self._creds = creds
        host = creds.host.rstrip("/")
        # Clients configure either the host or the host plus "/api" (Splunk SOAR's form).
        self._base = host[: -len("/api")] if host.endswith("/api") else host
        self._conn_id = creds.conn_id or THREATSTREAM.conn_id
        self._page_size = page_size
        self._max_pages = max_pages
        self._http = api_session(
            THREATSTREAM, HeaderAuth("Authorization", f"apikey {creds.login}:{creds.secret}"),
            timeout=timeout, attempts=attempts, backoff=backoff, max_backoff=max_backoff,
        )
        self._off: ThreatStreamError | None = None

    def intelligence(
        self, value: str, type: str = "domain", *, status: str | None = None
    ) -> list[ThreatIndicator]:
        """All intelligence objects whose value is exactly `value` (of `type`; `status`
        filters, e.g. "active" or "active,inactive"; None: the server's default)."""
        if self._off is not None:
            raise self._off.__class__(str(self._off))  # `type` is a parameter here
        first_page: dict[str, Any] = {"value": value, "type": type, "limit": self._page_size}
        if status:
            first_page["status"] = status
        params: dict[str, Any] | None = first_page
        url = f"{self._base}/api/v2/intelligence/"
        found: list[ThreatIndicator] = []
        for _ in range(self._max_pages):
            indicators, following = parse_page(self._get(url, params))
            found.extend(indicators)
            if following is None:
                return found
            url, params = self._next_url(following), None  # `next` carries every parameter
        log.warning(
            "ThreatStream: %s has more than %d pages of intelligence; kept the first %d objects",
            value, self._max_pages, len(found),
        )
        return found

    def lookup(self, domain: str) -> ThreatStreamResult:
        """Indicators of type domain for `domain`, summarized; never raises for a provider problem."""
        domain = normalize_domain(domain)
        try:
            return ThreatStreamResult.of(domain, self.intelligence(domain, "domain"))
        except ThreatStreamError as err:
            return ThreatStreamResult(domain=domain, status=err.kind, message=str(err))

    # ------------------------------------------------------------------ internals

    def _next_url(self, following: str) -> str:
        url = urljoin(self._base + "/", following)
        base, target = urlsplit(self._base), urlsplit(url)
        # Our API key goes with every request: never follow a link to another origin.
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            raise ThreatStreamError(f"ThreatStream meta.next points to another host ({target.netloc})")
        return url

    def _get(self, url: str, params: dict[str, Any] | None) -> Any:
        try:
            answer = self._http.fetch(url, params)
        except HttpError as err:
            raise ThreatStreamUnavailable(self._clean(str(err))) from None
        try:
            return self._interpret(urlsplit(url).path, answer)
        except ThreatStreamAuthError as err:
            if self._off is None:
                self._off = err
                log.warning("%s", err)
            raise

    def _interpret(self, path: str, answer: Answer) -> Any:
        status = answer.status
        if status in (401, 403):
            raise ThreatStreamAuthError(
                f"ThreatStream rejected the credentials of connection {self._conn_id} ({status})"
            )
        if status == 429:
            raise ThreatStreamRateLimited(
                f"ThreatStream kept answering 429 (rate limited) on {path} after {answer.attempts} attempts"
            )
        payload = answer.json()
        if payload is None:
            # Proxies and load balancers answer with HTML pages, whatever the status.
            raise ThreatStreamUnavailable(
                f"ThreatStream answered {path} with HTTP {status} and a non-JSON body "
                f"({answer.content_type or 'no content type'}): {self._clean(answer.snippet())}"
            )
        if status != 200:
            error = ThreatStreamUnavailable if status >= 500 else ThreatStreamError
            raise error(f"ThreatStream answered HTTP {status} on {path}: {self._clean(answer.snippet())}")
        return payload

    def _clean(self, text: str) -> str:
        return redact(text, self._creds.secret)
