"""Local fakes of the enrichment APIs, for tests and `make demo`: RiskIQ PassiveTotal v2
and Anomali ThreatStream v2 on 127.0.0.1, speaking their wire formats (auth, paths,
JSON shapes, error bodies, paging) with answers built from the real sample responses in
the shared enrichment folder (`passivetotal_samples/v2/**`, `threatstream_samples/`).

- `FakePassiveTotal(users={login: secret}, mode=..., data={domain: {...}})`: HTTP Basic;
  `/v2/whois`, `/v2/dns/passive`, `/v2/enrichment`, `/v2/account`, `/v2/account/quota`.
  Modes: "ok"; "retired" (every path: 404 with an Azure Front Door HTML page, as the real
  host answers since 2025); "quota_exceeded" (`{"message": "quota_exceeded..."}`);
  "rate_limited_then_ok" (the first `rate_limited` requests answer 429 + Retry-After).
- `FakeThreatStream(users={login: key}, intel={domain: [objects]}, page_size=2, ...)`:
  `Authorization: apikey login:key`; `/api/v2/intelligence/` paged with relative
  `meta.next` URLs; every `rate_limit_every`-th request answers 429 + Retry-After, every
  `html_error_every`-th a proxy's HTML 502.

Both are context managers with `.url`, request counters and `airflow_conn_env(conn_id)`
(the `AIRFLOW_CONN_<ID>` JSON form). With `synthesize=True` any domain gets plausible
data derived from a hash of its name (for demos, where the names are random).

    python -m ctlib.testing.enrichment_servers --pt-port 8810 --ts-port 8811

runs both until SIGTERM and prints their URLs and the AIRFLOW_CONN_* lines.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import os
import secrets
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from ctlib.testing.local_http import HOST, LocalHttpServer, serve_until_stopped

PT_MODES = ("ok", "retired", "quota_exceeded", "rate_limited_then_ok")
SAMPLES_ENV = "CT_ENRICHMENT_SAMPLES"
# The real samples the servers need, bundled next to this module (copied from the shared
# enrichment data, which tests also read directly).
DEFAULT_SAMPLES = Path(__file__).resolve().parent / "enrichment_samples"
SAMPLE_DOMAIN = "passivetotal.org"  # the domain the PassiveTotal fixtures describe
TS_SAMPLE = "threatstream_samples/xsoar_AnomaliThreatStreamv3_mocked_ip_response.json"

# What Azure Front Door serves for a path it has no route for (the retired PassiveTotal host).
AZURE_FRONT_DOOR_404 = b"""<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
<meta content="text/html; charset=utf-8" http-equiv="Content-Type"/>
<title>Page not found</title>
</head>
<body>
<h2>Our services aren't available right now</h2>
<p>We're working to restore all services as soon as possible. Please check back soon.</p>
<p>Azure Front Door: the requested resource was not found.</p>
</body>
</html>
"""
PROXY_502 = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    b"</center><hr><center>nginx</center></body></html>\n"
)


def samples_dir(samples: Path | str | None = None) -> Path:
    """The enrichment samples folder: `samples`, else $CT_ENRICHMENT_SAMPLES, else the
    bundled copy. Raises FileNotFoundError when it is not there."""
    path = Path(samples or os.environ.get(SAMPLES_ENV) or DEFAULT_SAMPLES)
    if not (path / "passivetotal_samples" / "v2").is_dir():
        raise FileNotFoundError(f"no enrichment samples in {path} (set {SAMPLES_ENV})")
    return path


# --------------------------------------------------------------------------- plumbing


class Headers(Protocol):
    """Request headers as the fakes read them: the handler's `http.client.HTTPMessage`
    (case-insensitive `get`), or any Mapping[str, str]."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Seen:
    """One request a fake answered: when (time.monotonic()), the raw path with query, status."""

    at: float
    path: str
    status: int


def _json(status: int, payload: Any, *headers: tuple[str, str]) -> Answer:
    return Answer(status, json.dumps(payload).encode(), "application/json", headers)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    disable_nagle_algorithm = True  # else headers and body wait ~40 ms on delayed ACKs
    server: _HTTPServer

    def do_GET(self) -> None:
        # Bulk endpoints send a JSON body with GET: drain it so keep-alive stays in sync.
        length = self.headers.get("Content-Length", "")
        if length.isdigit():
            self.rfile.read(int(length))
        answer = self.server.fake._handle(self.path, self.headers)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: it would print the demo credentials' traffic to stderr


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: _FakeServer


class _FakeServer(LocalHttpServer):
    """A ThreadingHTTPServer on 127.0.0.1 (port 0: a free one) with request counters."""

    name = "fake"

    def __init__(self, port: int = 0) -> None:
        httpd = _HTTPServer((HOST, port), _Handler)
        httpd.fake = self
        super().__init__(httpd)
        self.thread_name = self.name
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.seen)

    def _handle(self, raw_path: str, headers: Headers) -> Answer:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self._lock:
            number = len(self.seen) + 1
        try:
            answer = self.answer(parts.path, query, headers, number)
        except Exception as err:  # a bug in a fake must show up as a 500, not a hang
            answer = _json(500, {"message": f"fake server error: {type(err).__name__}: {err}"})
        with self._lock:
            self.seen.append(Seen(time.monotonic(), raw_path, answer.status))
            self.by_path[parts.path] += 1
            self.by_status[answer.status] += 1
        return answer

    def answer(self, path: str, query: dict[str, str], headers: Headers, number: int) -> Answer:
        raise NotImplementedError

    def _conn_env(self, conn_id: str, login: str, password: str) -> dict[str, str]:
        conn = {"conn_type": "http", "host": self.url, "login": login, "password": password}
        return {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)}


def _digest(domain: str) -> int:
    return int.from_bytes(hashlib.sha256(domain.encode()).digest()[:8], "big")


# --------------------------------------------------------------------------- PassiveTotal


class FakePassiveTotal(_FakeServer):
    """PassiveTotal v2 on 127.0.0.1. See the module docstring for modes.

    `data` maps a domain to per-endpoint overrides merged over the sample answer adapted
    to that domain: `{"whois": {...}, "passive_dns": {...}, "enrichment": {...}}`; an
    endpoint mapped to None answers 404 for that domain. A domain not in `data` answers
    404 `{"message": ...}` everywhere (unless `synthesize`). `mode` may be changed while
    serving. `data_requests` counts authorized look-ups (the quota's `search_api`).
    """

    name = "fake-passivetotal"
    ENDPOINTS: ClassVar[dict[str, str]] = {"/v2/whois": "whois", "/v2/dns/passive": "passive_dns", "/v2/enrichment": "enrichment"}

    def __init__(
        self,
        users: Mapping[str, str],
        mode: str = "ok",
        data: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        port: int = 0,
        samples: Path | str | None = None,
        rate_limited: int = 1,
        retry_after: int | None = 1,
        quota_status: int = 403,
        synthesize: bool = False,
    ) -> None:
        if mode not in PT_MODES:
            raise ValueError(f"mode must be one of {PT_MODES}")
        root = samples_dir(samples) / "passivetotal_samples" / "v2"
        self._samples = {
            "whois": (root / "whois.json").read_text(),
            "passive_dns": (root / "dns" / "passive.json").read_text(),
            "enrichment": (root / "enrichment.json").read_text(),
            "account": json.loads((root / "account.json").read_text()),
            "quota": json.loads((root / "account" / "quota.json").read_text()),
        }
        super().__init__(port)
        self.users = dict(users)
        self.mode = mode
        self.data = {k.lower(): dict(v) for k, v in (data or {}).items()}
        self.rate_limited = rate_limited
        self.retry_after = retry_after
        self.quota_status = quota_status
        self.synthesize = synthesize
        self.data_requests = 0
        self._authorized = 0

    def airflow_conn_env(self, conn_id: str = "passivetotal_default") -> dict[str, str]:
        """`{"AIRFLOW_CONN_<ID>": <JSON connection>}` for the first user."""
        login, secret = next(iter(self.users.items()))
        return self._conn_env(conn_id, login, secret)

    def _user(self, headers: Headers) -> str | None:
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            login, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return login if login in self.users and secrets.compare_digest(self.users[login], secret) else None

    def answer(self, path: str, query: dict[str, str], headers: Headers, number: int) -> Answer:
        if self.mode == "retired":
            # Front Door answers before any auth, for every path.
            ref = f"20261126T000000Z-{number:016x}"
            headers_out = (("x-azure-ref", ref), ("X-Cache", "CONFIG_NOCACHE"))
            return Answer(404, AZURE_FRONT_DOOR_404, "text/html", headers_out)
        user = self._user(headers)
        if user is None:
            return _json(401, {"message": "Unauthenticated. Check the configured Username and API secret."})
        with self._lock:
            self._authorized += 1
            authorized = self._authorized
        if self.mode == "rate_limited_then_ok" and authorized <= self.rate_limited:
            extra = (("Retry-After", str(self.retry_after)),) if self.retry_after is not None else ()
            return _json(429, {"message": "Too many requests; slow down"}, *extra)
        if path == "/v2/account":
            return _json(200, {**self._samples["account"], "username": user})
        if path == "/v2/account/quota":
            return _json(200, self._quota(user))
        endpoint = self.ENDPOINTS.get(path.rstrip("/"))
        if endpoint is None:
            return _json(404, {"message": f"Unknown endpoint {path}"})
        if self.mode == "quota_exceeded":
            message = "quota_exceeded: the search_api quota of this account is used up"
            return _json(self.quota_status, {"message": message})
        domain = query.get("query", "").strip().lower()
        if not domain:
            return _json(400, {"message": "Missing required parameter: query"})
        with self._lock:
            self.data_requests += 1
        body = self._record(endpoint, domain)
        if body is None:
            return _json(404, {"message": f"No records found for {domain}"})
        return _json(200, body)

    def _record(self, endpoint: str, domain: str) -> dict[str, Any] | None:
        if domain in self.data:
            overrides = self.data[domain].get(endpoint, {})
        elif self.synthesize:
            overrides = self._synthetic(endpoint, domain)
        else:
            return None
        if overrides is None:
            return None
        # The fixtures describe passivetotal.org; every mention becomes the queried domain.
        record = json.loads(self._samples[endpoint].replace(SAMPLE_DOMAIN, domain))
        if endpoint == "enrichment":
            record["tld"] = "." + domain.rsplit(".", 1)[-1]
        record.update(copy.deepcopy(dict(overrides)))
        return record

    @staticmethod
    def _synthetic(endpoint: str, domain: str) -> dict[str, Any]:
        digest = _digest(domain)
        # A third of all domains are days old, the rest up to ten years.
        age = digest % 30 if digest % 3 == 0 else 30 + digest % 3650
        registered = (datetime.now(UTC).date() - timedelta(days=age)).isoformat()
        if endpoint == "whois":
            registrars = ("NameCheap, Inc.", "GoDaddy.com, LLC", "Tucows Domains Inc.", "Porkbun LLC")
            return {"registered": registered, "registrar": registrars[digest % len(registrars)]}
        if endpoint == "passive_dns":
            return {"totalRecords": digest % 40, "firstSeen": f"{registered} 00:00:00"}
        return {"everCompromised": digest % 17 == 0, "tags": []}

    def _quota(self, user: str) -> dict[str, Any]:
        quota = copy.deepcopy(self._samples["quota"])
        limit = quota["user"]["limits"]["search_api"]
        used = limit if self.mode == "quota_exceeded" else self.data_requests
        quota["user"].update(owner=user, username=user)
        quota["user"]["counts"]["search_api"] = used
        return quota


# --------------------------------------------------------------------------- ThreatStream


class FakeThreatStream(_FakeServer):
    """ThreatStream v2 intelligence on 127.0.0.1.

    `intel` maps a domain to a list of partial intelligence objects; each becomes a full
    object shaped like the XSOAR sample (`indicator_object`), with type "domain". Paging:
    at most `page_size` objects per page (fewer if the request's `limit` is smaller);
    `meta.next` is a relative URL or null. Counting authorized requests from 1, every
    `rate_limit_every`-th answers 429 (with `Retry-After: retry_after` unless None) and
    every `html_error_every`-th a proxy's HTML 502 (0: never). Logins in `forbidden`
    authenticate but get 403.
    """

    name = "fake-threatstream"
    PATH = "/api/v2/intelligence/"

    def __init__(
        self,
        users: Mapping[str, str],
        intel: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        *,
        page_size: int = 2,
        rate_limit_every: int = 0,
        retry_after: int | None = 1,
        html_error_every: int = 0,
        forbidden: Sequence[str] = (),
        port: int = 0,
        samples: Path | str | None = None,
        synthesize: bool = False,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be >= 1")
        sample = json.loads((samples_dir(samples) / TS_SAMPLE).read_text())
        self._template: dict[str, Any] = sample["objects"][0]
        super().__init__(port)
        self.users = dict(users)
        self.page_size = page_size
        self.rate_limit_every = rate_limit_every
        self.retry_after = retry_after
        self.html_error_every = html_error_every
        self.forbidden = frozenset(forbidden)
        self.synthesize = synthesize
        self.intel: dict[str, list[dict[str, Any]]] = {}
        self._authorized = 0
        for domain, objects in (intel or {}).items():
            self.add(domain, *objects)

    def add(self, domain: str, *objects: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Make full objects for `domain` from partial ones and serve them; returns them."""
        domain = domain.lower()
        with self._lock:
            made = self.intel.setdefault(domain, [])
            start = len(made)
            made.extend(indicator_object(self._template, domain, obj, start + i) for i, obj in enumerate(objects))
            return made[start:]

    def airflow_conn_env(self, conn_id: str = "threatstream_default") -> dict[str, str]:
        """`{"AIRFLOW_CONN_<ID>": <JSON connection>}` for the first user."""
        login, key = next(iter(self.users.items()))
        return self._conn_env(conn_id, login, key)

    def _user(self, headers: Headers) -> str | None:
        scheme, _, credentials = (headers.get("Authorization") or "").partition(" ")
        login, _, key = credentials.partition(":")
        if scheme.lower() != "apikey" or login not in self.users:
            return None
        return login if secrets.compare_digest(self.users[login], key) else None

    def answer(self, path: str, query: dict[str, str], headers: Headers, number: int) -> Answer:
        user = self._user(headers)
        if user is None:
            return _json(401, {"message": "Unauthorized: invalid or missing API key"})
        if user in self.forbidden:
            return _json(403, {"message": "Forbidden: insufficient permissions"})
        with self._lock:
            self._authorized += 1
            n = self._authorized
        if self.rate_limit_every and n % self.rate_limit_every == 0:
            extra = (("Retry-After", str(self.retry_after)),) if self.retry_after is not None else ()
            return _json(429, {"errors": [{"code": 429, "message": "Too many requests"}]}, *extra)
        if self.html_error_every and n % self.html_error_every == 0:
            return Answer(502, PROXY_502, "text/html")
        if path != self.PATH:
            return _json(404, {"message": f"Unknown endpoint {path}"})
        try:
            limit = int(query.get("limit", "20"))
            offset = int(query.get("offset", "0"))
        except ValueError:
            return _json(400, {"message": "limit and offset must be integers"})
        matches = self._matches(query)
        size = min(limit, self.page_size) if limit > 0 else self.page_size  # limit=0: "all"
        page = matches[offset : offset + size]
        following = None
        if offset + size < len(matches):
            following = f"{self.PATH}?{urlencode({**query, 'limit': size, 'offset': offset + size})}"
        meta = {"total_count": len(matches), "offset": offset, "limit": size, "took": 3, "next": following}
        return _json(200, {"objects": page, "meta": meta})

    def _matches(self, query: dict[str, str]) -> list[dict[str, Any]]:
        value = query.get("value", "").strip().lower()
        objects = self.intel.get(value)
        if objects is None and self.synthesize and value:
            objects = self._synthetic(value)
        objects = objects or []
        if query.get("type"):
            objects = [o for o in objects if o.get("type") == query["type"]]
        if query.get("status"):
            wanted = set(query["status"].split(","))
            objects = [o for o in objects if o.get("status") in wanted]
        return objects

    def _synthetic(self, domain: str) -> list[dict[str, Any]]:
        digest = _digest(domain)
        if digest % 3:
            return []  # two domains in three are unknown to threat intel
        kinds = (
            ("phish_domain", "phish"),
            ("c2_domain", "c2"),
            ("mal_domain", "malware"),
            ("suspicious_domain", "suspicious"),
        )
        severities = ("low", "medium", "high", "very-high")
        partial = []
        for i in range(1 + digest % 3):
            bits = digest >> (8 * i)
            itype, threat = kinds[bits % len(kinds)]
            partial.append(
                {
                    "itype": itype,
                    "threat_type": threat,
                    "status": "active" if bits % 4 else "inactive",
                    "confidence": bits % 101,
                    "meta": {"severity": severities[(bits >> 3) % 4]},
                }
            )
        with self._lock:
            return self.intel.setdefault(
                domain, [indicator_object(self._template, domain, obj, i) for i, obj in enumerate(partial)]
            )


def indicator_object(
    template: Mapping[str, Any], domain: str, overrides: Mapping[str, Any], n: int
) -> dict[str, Any]:
    """A full ThreatStream intelligence object for `domain`: the XSOAR sample's keys and
    values, switched to type "domain" (itype c2_domain), with fresh ids, then `overrides`
    (top-level keys replace; `meta` replaces the whole meta object)."""
    obj = copy.deepcopy(dict(template))
    ident = 300_000_000 + _digest(domain) % 1_000_000 * 100 + n
    modified = datetime(2021, 8, 22, 16, 50, 1, 32000, tzinfo=UTC) + timedelta(minutes=n)
    obj.update(
        id=ident,
        uuid=str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{n}.{domain}")),
        value=domain,
        type="domain",
        itype="c2_domain",
        ip=None,
        update_id=550_000_000 + ident % 1_000_000,
        modified_ts=modified.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        sort=[int(modified.timestamp() * 1000), str(ident)],
        resource_uri=f"/api/v2/intelligence/{ident}/",
    )
    obj.update(copy.deepcopy(dict(overrides)))
    return obj


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.testing.enrichment_servers",
        description="Fake PassiveTotal and ThreatStream APIs on 127.0.0.1 until SIGTERM.",
    )
    add = parser.add_argument
    add("--pt-port", type=int, default=0, help="PassiveTotal port (default: a free one)")
    add("--ts-port", type=int, default=0, help="ThreatStream port (default: a free one)")
    add("--pt-mode", choices=PT_MODES, default="ok", help="PassiveTotal behaviour (default ok)")
    add("--login", default="demo@example.org", help="the account login of both fakes")
    add("--secret", default=None, help="the API secret/key of both fakes (default: random)")
    add("--samples", type=Path, default=None,
        help=f"enrichment samples folder (default ${SAMPLES_ENV}, else the bundled copy)")
    add("--no-synthesize", action="store_true", help="answer only for configured domains (none)")
    args = parser.parse_args(argv)

    secret = args.secret or secrets.token_urlsafe(18)
    users = {args.login: secret}
    synthesize = not args.no_synthesize
    pt = FakePassiveTotal(users, args.pt_mode, port=args.pt_port, samples=args.samples, synthesize=synthesize)
    ts = FakeThreatStream(users, port=args.ts_port, samples=args.samples, synthesize=synthesize)
    serve_until_stopped([pt, ts], [f"PassiveTotal {pt.url}", f"ThreatStream {ts.url}"],
                        [pt.airflow_conn_env(), ts.airflow_conn_env()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
