"""ctlib.downstream.enrich: sample parsing, both clients against the local fakes (every error path),
combined risk, the enrichment table and caches, and that API keys never leak."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from ctlib.downstream.enrich import normalize_domain
from ctlib.downstream.enrich.cache import (
    ENRICHMENT_SCHEMA,
    EnrichmentRecord,
    RunCache,
    recently_enriched,
    records_table,
    write_enrichment,
)
from ctlib.downstream.enrich.connections import (
    PASSIVETOTAL,
    THREATSTREAM,
    ProviderCredentials,
    base_url,
    credentials_for,
    read_credentials,
)
from ctlib.downstream.enrich.passivetotal import (
    RETIRED_NOTICE,
    PassiveTotalAuthError,
    PassiveTotalClient,
    PassiveTotalNotFound,
    PassiveTotalQuotaExceeded,
    PassiveTotalRateLimited,
    PassiveTotalResult,
    PassiveTotalRetired,
    PassiveTotalUnavailable,
    error_message,
    result_from,
)
from ctlib.downstream.enrich.risk import combined_risk
from ctlib.downstream.enrich.threatstream import (
    SEVERITIES,
    ThreatIndicator,
    ThreatStreamAuthError,
    ThreatStreamClient,
    ThreatStreamError,
    ThreatStreamRateLimited,
    ThreatStreamResult,
    ThreatStreamUnavailable,
    parse_indicator,
    parse_page,
)
from ctlib.lake.files import Lake
from ctlib.testing.enrichment_servers import FakePassiveTotal, FakeThreatStream
from tests.paths import ENRICHMENT

PT_SAMPLES = ENRICHMENT / "passivetotal_samples" / "v2"
TS_SAMPLES = ENRICHMENT / "threatstream_samples"
LOGIN = "analyst@example.org"
PT_SECRET = "pt-SeCr3t-5b1f0c9e7d"
TS_KEY = "ts-K3y-0a9b8c7d6e5f"
FAST = {"timeout": 5, "attempts": 4, "backoff": 0.01}
EVIL = "paypal-login-check.com"


def sample(path: str):
    return json.loads((ENRICHMENT / path).read_text())


def pt_fake(**kwargs) -> FakePassiveTotal:
    kwargs.setdefault("data", {EVIL: {"whois": {"registered": "2026-11-20", "registrar": "NameCheap, Inc."}}})
    return FakePassiveTotal({LOGIN: PT_SECRET}, samples=ENRICHMENT, **kwargs)


def ts_fake(**kwargs) -> FakeThreatStream:
    return FakeThreatStream({LOGIN: TS_KEY}, samples=ENRICHMENT, **kwargs)


def pt_client(url: str, secret: str = PT_SECRET, **kwargs) -> PassiveTotalClient:
    return PassiveTotalClient(ProviderCredentials(url, LOGIN, secret, "passivetotal_default"), **{**FAST, **kwargs})


def ts_client(url: str, key: str = TS_KEY, **kwargs) -> ThreatStreamClient:
    return ThreatStreamClient(ProviderCredentials(url, LOGIN, key, "threatstream_default"), **{**FAST, **kwargs})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scripted:
    """Answers every GET with one fixed (status, content type, body)."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        answer = (status, body, content_type)
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                paths.append(self.path)
                self.send_response(answer[0])
                self.send_header("Content-Type", answer[2])
                self.send_header("Content-Length", str(len(answer[1])))
                self.end_headers()
                self.wfile.write(answer[1])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- real samples


def test_whois_sample_parses():
    result = result_from("passivetotal.org", sample("passivetotal_samples/v2/whois.json"), None, None)
    assert result.registered == date(1968, 4, 3)
    assert result.registrar == "1 & 1 Internet AG (R73-LROR)"
    assert result.name_servers == ("ns1.digitalocean.com", "ns2.digitalocean.com", "ns3.digitalocean.com")
    assert result.status == "ok"


def test_whois_search_sample_holds_the_same_record():
    record = sample("passivetotal_samples/v2/whois/search.json")["results"][0]
    assert result_from("passivetotal.org", record, None, None) == result_from(
        "passivetotal.org", sample("passivetotal_samples/v2/whois.json"), None, None
    )


def test_passive_dns_sample_parses():
    result = result_from("passivetotal.org", None, sample("passivetotal_samples/v2/dns/passive.json"), None)
    assert result.pdns_records == 9  # totalRecords, not the two records of the (abridged) page
    assert result.resolves == ("54.153.123.93", "52.8.228.23")
    assert result.first_seen == datetime(1968, 4, 3, 2, 12, 9, tzinfo=UTC)
    assert result.last_seen == datetime(1968, 4, 3, 18, 0, 1, tzinfo=UTC)


def test_passive_dns_2016_records_key_and_resolve_cap():
    records = [{"resolve": f"192.0.2.{i % 40}"} for i in range(100)]
    result = result_from("x.com", None, {"records": records, "pager": None}, None)
    assert result.pdns_records == 100 and len(result.resolves) == 25 and len(set(result.resolves)) == 25


def test_enrichment_sample_parses():
    result = result_from("passivetotal.org", None, None, sample("passivetotal_samples/v2/enrichment.json"))
    assert result.tags == ("security",) and result.ever_compromised is False


def test_error_bodies_of_both_documented_shapes():
    assert error_message({"message": "quota_exceeded"}) == "quota_exceeded"
    assert error_message({"error": {"message": "bad", "developer_message": "x"}}) == "bad"
    assert error_message(sample("passivetotal_samples/v2/whois.json")) is None
    assert error_message("<html>") is None


def test_threatstream_sample_parses():
    payload = sample("threatstream_samples/xsoar_AnomaliThreatStreamv3_mocked_ip_response.json")
    indicators, following = parse_page(payload)
    assert following is None
    assert indicators == [
        ThreatIndicator(
            value="78.78.78.67",
            type="ip",
            itype="c2_ip",
            threat_type="c2",
            status="inactive",
            confidence=100,
            severity="medium",
            threatscore=70,
            tags=("test",),
            source="Analyst",
            modified_ts=datetime(2021, 8, 22, 16, 50, 1, 32000, tzinfo=UTC),
        )
    ]


def test_synthetic_polarity_mock_objects_parse():
    # A hand-written mock, not a real answer, but objects of the same schema.
    objects = sample("threatstream_samples/polarity_mock_details_SYNTHETIC.json")["intelligence"]
    indicators = [parse_indicator(obj) for obj in objects]
    phish = next(i for i in indicators if i.type == "domain")
    assert (phish.itype, phish.confidence, phish.severity) == ("phish_domain", 88, "very-high")
    assert phish.status == "active"
    assert phish.tags == ("Phishing", "Credential Theft")


def test_openapi_schema_agrees_with_the_client():
    spec = sample("threatstream_samples/crowdstrike_foundry_Anomali_openapi.json")
    intelligence = spec["components"]["schemas"]["Intelligence"]["properties"]
    used = ("value", "type", "itype", "threat_type", "status", "confidence", "threatscore", "tags", "source")
    for name in (*used, "modified_ts", "meta"):
        assert name in intelligence, name
    assert {"phish_domain", "c2_domain"} <= set(intelligence["itype"]["enum"])
    assert intelligence["confidence"]["minimum"] == -1
    parameters = {p["name"]: p for p in spec["paths"]["/api/v2/intelligence/"]["get"]["parameters"]}
    assert tuple(parameters["meta.severity"]["schema"]["enum"]) == SEVERITIES
    assert parameters["limit"]["schema"]["maximum"] == 1000
    assert {"type", "limit", "offset", "status"} <= set(parameters)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(100, 100), (0, 0), (-1, -1), (None, -1), ("75", 75), (150, -1), (True, -1), ("high", -1)],
)
def test_confidence_mapping(raw, expected):
    obj = {"value": "a.com", "confidence": raw} if raw is not None else {"value": "a.com"}
    assert parse_indicator(obj).confidence == expected


@pytest.mark.parametrize(
    ("meta", "expected"),
    [({"severity": "high"}, "high"), ({"severity": "VERY-HIGH"}, "very-high"), ({}, "low"), (None, "low"),
     ({"severity": "critical"}, "low"), ({"severity": "medium", "detail2": "x"}, "medium")],
)
def test_severity_mapping_defaults_to_low(meta, expected):
    assert parse_indicator({"value": "a.com", "meta": meta}).severity == expected


def test_result_summary_takes_the_worst_indicator():
    def ind(confidence, severity, threat_type):
        meta = {"severity": severity}
        return parse_indicator({"value": "a.com", "confidence": confidence, "meta": meta, "threat_type": threat_type})

    indicators = [ind(30, "very-high", "phish"), ind(90, "low", "c2"), ind(-1, "medium", "phish")]
    result = ThreatStreamResult.of("a.com", indicators)
    assert (result.max_confidence, result.max_severity, result.status) == (90, "very-high", "ok")
    assert result.threat_types == ("c2", "phish")
    empty = ThreatStreamResult.of("a.com", [])
    assert (empty.status, empty.max_confidence, empty.max_severity) == ("not_found", -1, None)


# --------------------------------------------------------------------------- fakes' fidelity


def test_fake_passivetotal_answers_the_samples_shapes():
    with pt_fake() as fake:
        client = pt_client(fake.url)
        whois, pdns, enrichment = client.whois(EVIL), client.passive_dns(EVIL), client.enrichment(EVIL)
        account = client.account()
    assert set(whois) == set(sample("passivetotal_samples/v2/whois.json"))
    assert set(pdns) == set(sample("passivetotal_samples/v2/dns/passive.json"))
    assert set(enrichment) == set(sample("passivetotal_samples/v2/enrichment.json"))
    assert set(account) == set(sample("passivetotal_samples/v2/account.json")) and account["username"] == LOGIN
    assert whois["domain"] == EVIL and whois["registered"] == "2026-11-20"
    assert pdns["queryValue"] == EVIL and all(r["value"] == EVIL for r in pdns["results"])
    assert (enrichment["primaryDomain"], enrichment["tld"]) == (EVIL, ".com")


def test_fake_threatstream_objects_are_shaped_like_the_sample():
    template = sample("threatstream_samples/xsoar_AnomaliThreatStreamv3_mocked_ip_response.json")
    with ts_fake(intel={EVIL: [{"confidence": 90}]}) as fake:
        client = ts_client(fake.url)
        client.intelligence(EVIL)
    (obj,) = fake.intel[EVIL]
    assert set(obj) == set(template["objects"][0])
    assert (obj["value"], obj["type"], obj["confidence"]) == (EVIL, "domain", 90)


# --------------------------------------------------------------------------- PassiveTotal client


def test_passivetotal_lookup_ok():
    with pt_fake() as fake, pt_client(fake.url) as client:
        result = client.lookup(EVIL.upper() + ".")
    assert result.status == "ok" and result.domain == EVIL
    assert (result.registered, result.registrar, result.pdns_records) == (date(2026, 11, 20), "NameCheap, Inc.", 9)
    assert fake.by_path == {"/v2/whois": 1, "/v2/dns/passive": 1, "/v2/enrichment": 1}


def test_passivetotal_404_is_not_found_not_an_error():
    with pt_fake(data={"half.com": {"whois": None}}) as fake, pt_client(fake.url) as client:
        assert client.lookup("unknown.com").status == "not_found"
        with pytest.raises(PassiveTotalNotFound):
            client.whois("unknown.com")
        partial = client.lookup("half.com")
        assert partial.status == "ok" and partial.registered is None and partial.pdns_records == 9
        assert client.disabled is None


def test_passivetotal_401_is_a_clear_auth_error_and_switches_the_client_off():
    with pt_fake() as fake, pt_client(fake.url, secret="wrong-secret") as client:
        with pytest.raises(PassiveTotalAuthError) as err:
            client.whois(EVIL)
        assert str(err.value) == "PassiveTotal rejected the credentials of connection passivetotal_default (401)"
        result = client.lookup(EVIL)
        assert result.status == "auth_error" and result.message == str(err.value)
    assert fake.requests == 1  # once known bad, the credentials are not tried again


def test_passivetotal_429_honours_retry_after_then_succeeds():
    with pt_fake(mode="rate_limited_then_ok", rate_limited=1, retry_after=1) as fake, pt_client(fake.url) as client:
        result = client.lookup(EVIL)
    assert result.status == "ok"
    first, second = fake.seen[0], fake.seen[1]
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.95  # back-off alone would be ~0.01 s


def test_passivetotal_429_without_end_becomes_a_rate_limit_error():
    with pt_fake(mode="rate_limited_then_ok", rate_limited=100, retry_after=None) as fake:
        with pt_client(fake.url, attempts=3) as client:
            with pytest.raises(PassiveTotalRateLimited, match="after 3 attempts"):
                client.whois(EVIL)
        assert fake.by_status == {429: 3}
        assert pt_client(fake.url, attempts=2).lookup(EVIL).status == "rate_limited"


@pytest.mark.parametrize("status", [200, 403, 429])
def test_passivetotal_quota_exceeded_is_not_retried(status):
    with pt_fake(mode="quota_exceeded", quota_status=status) as fake, pt_client(fake.url) as client:
        with pytest.raises(PassiveTotalQuotaExceeded, match="quota exceeded for connection passivetotal_default"):
            client.whois(EVIL)
        assert client.lookup(EVIL).status == "quota_exceeded"
        assert fake.requests == 1


def test_passivetotal_retired_host_answers_html_404_everywhere(caplog):
    caplog.set_level(logging.WARNING)
    with pt_fake(mode="retired") as fake, pt_client(fake.url) as client:
        with pytest.raises(PassiveTotalRetired) as err:
            client.account()
        expected = RETIRED_NOTICE.format(host=fake.url)
        assert str(err.value) == expected
        assert "Microsoft Defender Threat Intelligence / Graph API" in expected
        for _ in range(3):
            result = client.lookup(EVIL)
            assert (result.status, result.message) == ("retired", expected)
        assert isinstance(client.disabled, PassiveTotalRetired)
    assert fake.requests == 1 and fake.by_status == {404: 1}  # not retried, never asked again
    assert [r.getMessage() for r in caplog.records if "retired" in r.getMessage()] == [expected]


def test_passivetotal_retired_is_detected_on_a_data_call_too():
    with pt_fake(mode="retired") as fake, pt_client(fake.url) as client:
        assert client.lookup(EVIL).status == "retired"
    assert fake.requests == 1


def test_passivetotal_tls_failure_means_retired():
    # A TLS client talking to a plain-HTTP port fails the handshake, like the real host's
    # certificate for another name does.
    with pt_fake() as fake, pt_client(fake.url.replace("http://", "https://")) as client:
        with pytest.raises(PassiveTotalRetired, match=r"answers as retired"):
            client.whois(EVIL)
    assert fake.requests == 0


def test_passivetotal_refused_connection_means_retired():
    client = pt_client(f"http://127.0.0.1:{free_port()}")
    assert client.lookup(EVIL).status == "retired"
    assert client.requests_made == 1


def test_passivetotal_dns_failure_means_retired(monkeypatch):
    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "api.passivetotal.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(PassiveTotalRetired, match="api.passivetotal.test"):
        pt_client("https://api.passivetotal.test").whois(EVIL)


def test_passivetotal_html_5xx_is_retried_then_unavailable():
    with Scripted(502, b"<html><body>Bad Gateway</body></html>", "text/html") as server:
        with pt_client(server.url, attempts=2) as client, pytest.raises(PassiveTotalUnavailable, match="HTTP 502"):
            client.whois(EVIL)
        assert len(server.paths) == 2


def test_passivetotal_html_200_is_unavailable_not_data():
    with Scripted(200, b"<html>captive portal</html>", "text/html") as server:
        result = pt_client(server.url).lookup(EVIL)
    assert result.status == "unavailable" and "non-JSON" in result.message


def test_passivetotal_host_with_v2_suffix():
    with pt_fake() as fake:
        assert pt_client(fake.url + "/v2/").lookup(EVIL).status == "ok"


# --------------------------------------------------------------------------- ThreatStream client


def five_indicators():
    phish = {"itype": "phish_domain", "threat_type": "phish", "status": "active"}
    return [{**phish, "confidence": c} for c in (10, 20, 30, 40, 50)]


def test_threatstream_follows_meta_next_across_three_pages():
    with ts_fake(intel={EVIL: five_indicators()}, page_size=2) as fake, ts_client(fake.url) as client:
        indicators = client.intelligence(EVIL)
    assert [i.confidence for i in indicators] == [10, 20, 30, 40, 50]
    paths = [seen.path for seen in fake.seen]
    assert len(paths) == 3
    assert paths[0] == f"/api/v2/intelligence/?value={EVIL}&type=domain&limit=1000"
    assert "offset=2" in paths[1] and "offset=4" in paths[2]
    assert all("api_key" not in p and TS_KEY not in p for p in paths)  # header auth only


def test_threatstream_page_count_is_bounded(caplog):
    caplog.set_level(logging.WARNING)
    with ts_fake(intel={EVIL: five_indicators()}, page_size=2) as fake:
        indicators = ts_client(fake.url, max_pages=2).intelligence(EVIL)
    assert len(indicators) == 4 and fake.requests == 2
    assert any("more than 2 pages" in r.getMessage() for r in caplog.records)


def test_threatstream_lookup_summarizes():
    intel = {EVIL: [
        {"confidence": 90, "itype": "phish_domain", "threat_type": "phish", "status": "active",
         "meta": {"severity": "high"}},
        {"confidence": -1, "meta": {"detail2": "no severity here"}},
    ]}
    with ts_fake(intel=intel) as fake, ts_client(fake.url) as client:
        result = client.lookup(EVIL)
        unknown = client.lookup("clean.example.com")
    assert (result.status, result.max_confidence, result.max_severity) == ("ok", 90, "high")
    assert [i.severity for i in result.indicators] == ["high", "low"]
    assert result.threat_types == ("c2", "phish")
    assert (unknown.status, unknown.indicators, unknown.max_confidence) == ("not_found", (), -1)


def test_threatstream_401_and_403_are_clear_auth_errors():
    with ts_fake(intel={EVIL: [{}]}, forbidden=["reader@example.org"]) as fake:
        fake.users["reader@example.org"] = "reader-key"
        with ts_client(fake.url, key="bad-key") as client:
            with pytest.raises(ThreatStreamAuthError) as err:
                client.intelligence(EVIL)
            assert str(err.value) == "ThreatStream rejected the credentials of connection threatstream_default (401)"
            assert client.lookup(EVIL).status == "auth_error"
        assert fake.requests == 1
        creds = ProviderCredentials(fake.url, "reader@example.org", "reader-key")
        result = ThreatStreamClient(creds, **FAST).lookup(EVIL)
        assert result.status == "auth_error" and result.message.endswith("(403)")


def test_threatstream_429_retry_after_is_honoured_mid_paging():
    with ts_fake(intel={EVIL: five_indicators()}, rate_limit_every=3, retry_after=1) as fake:
        result = ts_client(fake.url).lookup(EVIL)
    assert result.status == "ok" and len(result.indicators) == 5
    assert [s.status for s in fake.seen] == [200, 200, 429, 200]
    assert "offset=4" in fake.seen[2].path and fake.seen[3].path == fake.seen[2].path
    assert fake.seen[3].at - fake.seen[2].at >= 0.95  # back-off alone would be ~0.01 s


def test_threatstream_429_exhausted():
    with ts_fake(intel={EVIL: [{}]}, rate_limit_every=1, retry_after=None) as fake:
        with pytest.raises(ThreatStreamRateLimited, match="after 3 attempts"):
            ts_client(fake.url, attempts=3).intelligence(EVIL)
        assert fake.by_status == {429: 3}


def test_threatstream_html_error_page_is_handled():
    with ts_fake(intel={EVIL: [{}]}, html_error_every=1) as fake:
        result = ts_client(fake.url, attempts=2).lookup(EVIL)
        assert result.status == "unavailable"
        assert "HTTP 502 and a non-JSON body (text/html)" in result.message and "502 Bad Gateway" in result.message
        assert fake.requests == 2
    with ts_fake(intel={EVIL: [{}]}, html_error_every=2) as fake:  # a passing hiccup
        assert ts_client(fake.url).lookup(EVIL).status == "ok"


def test_threatstream_unreachable_is_unavailable():
    result = ts_client(f"http://127.0.0.1:{free_port()}", attempts=2).lookup(EVIL)
    assert result.status == "unavailable" and "unreachable" in result.message


def test_threatstream_never_follows_next_to_another_host():
    page = {"objects": [], "meta": {"next": "https://elsewhere.example/api/v2/intelligence/?offset=2"}}
    with Scripted(200, json.dumps(page).encode()) as server:
        with pytest.raises(ThreatStreamError, match="another host"):
            ts_client(server.url).intelligence(EVIL)
        assert len(server.paths) == 1


def test_threatstream_json_that_is_not_a_page():
    with Scripted(200, b'{"detail": "odd"}') as server, pytest.raises(ThreatStreamUnavailable):
        ts_client(server.url).intelligence(EVIL)


# --------------------------------------------------------------------------- secrets


def test_credentials_repr_hides_the_secret():
    creds = ProviderCredentials("https://api.example", LOGIN, PT_SECRET, "passivetotal_default")
    assert PT_SECRET not in repr(creds) and PT_SECRET not in str(creds) and "***" in repr(creds)
    assert PT_SECRET not in f"{creds!r} {creds!s} {[creds]}"


def test_a_key_with_a_line_break_is_refused_without_quoting_it():
    with pytest.raises(ValueError, match="line break") as err:
        ts_client("http://127.0.0.1:9", key=TS_KEY + "\n")
    assert TS_KEY not in "".join(traceback.format_exception(err.value))


def test_no_secret_in_logs_exceptions_or_results(caplog):
    """Drive every error path with distinctive keys; neither appears in any log record
    (DEBUG, all loggers including urllib3), exception text/traceback or result message."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def capture(call):
        try:
            value = call()
            texts.append(repr(value))
        except Exception as err:  # noqa: BLE001
            texts.append("".join(traceback.format_exception(err)))

    wrong_pt, wrong_ts = PT_SECRET + "-wrong", TS_KEY + "-wrong"
    with pt_fake() as pt, ts_fake(intel={EVIL: five_indicators()}, rate_limit_every=2, retry_after=0) as ts:
        for secret in (PT_SECRET, wrong_pt):
            capture(lambda s=secret: pt_client(pt.url, s).lookup(EVIL))
            capture(lambda s=secret: pt_client(pt.url, s).whois(EVIL))
        for mode in ("retired", "quota_exceeded", "rate_limited_then_ok"):
            pt.mode = mode
            capture(lambda: pt_client(pt.url, attempts=2).whois(EVIL))
        capture(lambda: pt_client(pt.url.replace("http:", "https:")).whois(EVIL))
        for key in (TS_KEY, wrong_ts):
            capture(lambda k=key: ts_client(ts.url, k).lookup(EVIL))
            capture(lambda k=key: ts_client(ts.url, k, attempts=1).intelligence(EVIL))
        capture(lambda: ts_client(f"http://127.0.0.1:{free_port()}", attempts=2).intelligence(EVIL))
    # Even a server echoing the client's key back does not get it into our messages.
    with Scripted(500, f"<html>echo {PT_SECRET}</html>".encode(), "text/html") as echo:
        capture(lambda: pt_client(echo.url, attempts=1).whois(EVIL))
    with Scripted(500, f"<html>echo {TS_KEY}</html>".encode(), "text/html") as echo:
        capture(lambda: ts_client(echo.url, attempts=1).intelligence(EVIL))
    logged = [record.getMessage() for record in caplog.records] + [caplog.text]
    assert len(texts) == 15 and caplog.records
    for secret in (PT_SECRET, TS_KEY, wrong_pt, wrong_ts):
        for text in texts + logged:
            assert secret not in text


def test_no_secret_or_secret_column_in_the_lake(tmp_path):
    with pt_fake() as pt, ts_fake(intel={EVIL: [{}]}) as ts:
        pt_result, ts_result = pt_client(pt.url).lookup(EVIL), ts_client(ts.url).lookup(EVIL)
    risk, reasons = combined_risk(0.9, 0.8, pt_result, ts_result, date(2026, 11, 26))
    record = EnrichmentRecord.build(
        EVIL, enriched_at=datetime.now(UTC), score=0.9, risk=risk, risk_reasons=reasons, pt=pt_result, ts=ts_result
    )
    (path,) = write_enrichment(str(tmp_path), [record], "run-1")
    data = open(path, "rb").read()
    assert PT_SECRET.encode() not in data and TS_KEY.encode() not in data and LOGIN.encode() not in data
    assert not [n for n in ENRICHMENT_SCHEMA.names if any(w in n for w in ("secret", "password", "key", "login"))]


# --------------------------------------------------------------------------- connections


def conn(host=None, schema=None, port=None, login=LOGIN, password=PT_SECRET):
    return SimpleNamespace(host=host, schema=schema, port=port, login=login, password=password)


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        (None, None, None, "https://api.passivetotal.org"),
        ("", "http", 8080, "https://api.passivetotal.org"),
        ("pt.internal", None, None, "https://pt.internal"),
        ("127.0.0.1", "http", 8810, "http://127.0.0.1:8810"),
        ("http://127.0.0.1:8810/", None, None, "http://127.0.0.1:8810"),
        ("http://127.0.0.1", None, 8810, "http://127.0.0.1:8810"),
        ("https://user:pw@proxy.example/pt/", None, None, "https://proxy.example/pt"),
    ],
)
def test_host_is_overridable_through_host_schema_port(host, schema, port, expected):
    assert base_url(host, schema, port, PASSIVETOTAL.default_host) == expected


def test_read_credentials_from_a_connection():
    creds = read_credentials("passivetotal_default", PASSIVETOTAL.default_host, get_connection=lambda _: conn())
    assert creds == ProviderCredentials("https://api.passivetotal.org", LOGIN, PT_SECRET, "passivetotal_default")
    assert read_credentials("x", "https://h", get_connection=lambda _: conn(password="")) is None


def test_missing_connection_skips_with_one_log_line(caplog):
    caplog.set_level(logging.DEBUG, logger="ctlib.downstream.enrich")
    assert credentials_for(PASSIVETOTAL, get_connection=lambda _: None) is None
    assert credentials_for(THREATSTREAM, "ts_other", get_connection=lambda _: None) is None
    assert [r.getMessage() for r in caplog.records] == [
        "PassiveTotal: connection passivetotal_default not configured; skipping",
        "ThreatStream: connection ts_other not configured; skipping",
    ]


def test_fakes_publish_airflow_json_connections():
    with pt_fake() as pt, ts_fake() as ts:
        (name, value), = pt.airflow_conn_env().items()
        assert name == "AIRFLOW_CONN_PASSIVETOTAL_DEFAULT"
        assert json.loads(value) == {"conn_type": "http", "host": pt.url, "login": LOGIN, "password": PT_SECRET}
        (name, value), = ts.airflow_conn_env("ts_demo").items()
        assert name == "AIRFLOW_CONN_TS_DEMO" and json.loads(value)["password"] == TS_KEY
        # What a connection with those fields resolves to reaches the fake.
        fields = json.loads(pt.airflow_conn_env()["AIRFLOW_CONN_PASSIVETOTAL_DEFAULT"])
        airflow_conn = SimpleNamespace(schema=None, port=None, **{k: fields[k] for k in ("host", "login", "password")})
        creds = read_credentials("passivetotal_default", PASSIVETOTAL.default_host, get_connection=lambda _: airflow_conn)
        assert PassiveTotalClient(creds, **FAST).lookup(EVIL).status == "ok"


# --------------------------------------------------------------------------- risk

TODAY = date(2026, 11, 26)


def pt_registered(days_ago: int | None) -> PassiveTotalResult:
    registered = None if days_ago is None else TODAY - timedelta(days=days_ago)
    return PassiveTotalResult(domain=EVIL, registered=registered)


def ts_with(confidence: int, severity: str = "high", status: str = "active", threat_type: str = "phish"):
    raw = {"value": EVIL, "type": "domain", "confidence": confidence, "status": status, "threat_type": threat_type}
    return ThreatStreamResult.of(EVIL, [parse_indicator({**raw, "meta": {"severity": severity}})])


def test_risk_formula_values():
    assert combined_risk(0.8, 0.8, None, None, TODAY)[0] == 40.0
    assert combined_risk(5.0, 0.8, None, None, TODAY)[0] == 60.0  # capped at 1.5x threshold
    assert combined_risk(-1, 0.8, None, None, TODAY)[0] == 0.0
    assert combined_risk(0.8, 0.8, pt_registered(0), None, TODAY)[0] == 60.0
    assert combined_risk(0.8, 0.8, pt_registered(15), None, TODAY)[0] == 55.0
    assert combined_risk(0.8, 0.8, pt_registered(100), None, TODAY)[0] == 40.0
    assert combined_risk(0.8, 0.8, pt_registered(3653), None, TODAY)[0] == 25.0
    assert combined_risk(0.8, 0.8, None, ts_with(100, "very-high"), TODAY)[0] == 80.0
    # 40 + 40 x (0.5 confidence x 0.85 high x 0.4 inactive x 0.75 not phish/c2)
    assert combined_risk(0.8, 0.8, None, ts_with(50, "high", "inactive", "malware"), TODAY)[0] == 45.1
    assert combined_risk(1.2, 0.8, pt_registered(1), ts_with(100, "very-high"), TODAY)[0] == 100.0
    with pytest.raises(ValueError):
        combined_risk(0.5, 0, None, None, TODAY)


def test_risk_is_monotonic_in_score():
    for pt, ts in [(None, None), (pt_registered(5), ts_with(60)), (pt_registered(4000), None)]:
        risks = [combined_risk(s / 100, 0.7, pt, ts, TODAY)[0] for s in range(0, 151)]
        assert risks == sorted(risks)
        assert risks[0] < risks[70] < risks[100]


def test_risk_is_monotonic_in_threat_intel_confidence():
    for severity in SEVERITIES:
        risks = [combined_risk(0.5, 0.7, None, ts_with(c, severity), TODAY)[0] for c in range(0, 101)]
        assert risks == sorted(risks) and risks[0] < risks[50] < risks[100]
        # Unknown confidence (-1) counts as 50.
        assert combined_risk(0.5, 0.7, None, ts_with(-1, severity), TODAY)[0] == risks[50]
    assert combined_risk(0.5, 0.7, None, ts_with(90), TODAY)[0] > combined_risk(0.5, 0.7, None, None, TODAY)[0]


def test_falsepos_indicators_add_nothing():
    clean = combined_risk(0.5, 0.7, None, None, TODAY)[0]
    assert combined_risk(0.5, 0.7, None, ts_with(100, "very-high", "falsepos"), TODAY)[0] == clean


def test_young_domains_are_riskier_than_old_ones():
    risks = [combined_risk(0.6, 0.7, pt_registered(days), None, TODAY)[0] for days in range(0, 5000, 7)]
    assert risks == sorted(risks, reverse=True)
    young, unknown, old = (combined_risk(0.6, 0.7, pt_registered(d), None, TODAY)[0] for d in (3, None, 3000))
    assert young > unknown > old


def test_risk_reasons_explain_each_component():
    pt = PassiveTotalResult(domain=EVIL, registered=TODAY - timedelta(days=4), ever_compromised=True)
    _, reasons = combined_risk(0.9, 0.8, pt, ts_with(85), TODAY)
    assert len(reasons) == 4
    assert reasons[0].startswith("phishing score 0.9 is 1.12x the alert threshold 0.8")
    assert "confidence 85" in reasons[1] and "phish" in reasons[1]
    assert reasons[2].startswith("registered 4 days ago") and "compromised" in reasons[3]


# --------------------------------------------------------------------------- cache


def record(domain: str, at: datetime, **kwargs) -> EnrichmentRecord:
    return EnrichmentRecord.build(
        domain, enriched_at=at, score=0.9, risk=50.0, risk_reasons=("r",), pt=None, ts=None, **kwargs
    )


def test_enrichment_schema_columns():
    expected = {
        "domain": pa.string(), "enriched_at": pa.timestamp("ms", tz="UTC"), "score": pa.float64(),
        "risk": pa.float64(), "risk_reasons": pa.list_(pa.string()), "pt_status": pa.string(),
        "pt_registered": pa.date32(), "pt_registrar": pa.string(), "pt_pdns_records": pa.int64(),
        "ts_status": pa.string(), "ts_max_confidence": pa.int32(), "ts_max_severity": pa.string(),
        "ts_indicators": pa.int64(), "ts_threat_types": pa.list_(pa.string()), "cert_sha256": pa.string(),
        "log_slug": pa.string(), "names": pa.list_(pa.string()),
    }
    assert {f.name: f.type for f in ENRICHMENT_SCHEMA} == expected


def test_record_from_results():
    pt = PassiveTotalResult(domain=EVIL, registered=date(2026, 11, 20), registrar="R", pdns_records=3)
    ts = ts_with(70)
    row = EnrichmentRecord.build(
        EVIL, enriched_at=datetime(2026, 11, 26, 12, tzinfo=UTC), score=0.9, risk=77.0, risk_reasons=["a"],
        pt=pt, ts=ts, cert_sha256="ab" * 32, log_slug="local_1", names=[EVIL, "www." + EVIL],
    ).row()
    assert (row["pt_status"], row["pt_registered"], row["pt_pdns_records"]) == ("ok", date(2026, 11, 20), 3)
    ts_columns = (row["ts_status"], row["ts_max_confidence"], row["ts_max_severity"], row["ts_indicators"])
    assert ts_columns == ("ok", 70, "high", 1)
    assert row["ts_threat_types"] == ["phish"] and row["names"] == [EVIL, "www." + EVIL]
    skipped = record(EVIL, datetime.now(UTC)).row()
    assert (skipped["pt_status"], skipped["ts_status"], skipped["ts_indicators"]) == ("skipped", "skipped", None)
    assert records_table([record(EVIL, datetime.now(UTC))]).schema == ENRICHMENT_SCHEMA


def test_recently_enriched_ttl(tmp_path):
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    lake = Lake.open(str(tmp_path))
    fresh, stale = record("fresh.com", now - timedelta(hours=1)), record("stale.com", now - timedelta(days=3))
    write_enrichment(lake, [fresh, stale], "a")
    write_enrichment(lake, [record("other-day.com", now - timedelta(hours=20))], "b")
    asked = ["Fresh.com.", "stale.com", "other-day.com", "never.com"]
    assert recently_enriched(str(tmp_path), asked, 86400, now=now) == {"Fresh.com.", "other-day.com"}
    assert recently_enriched(lake, asked, 3600 * 2, now=now) == {"Fresh.com."}
    assert recently_enriched(tmp_path, asked, 5 * 86400, now=now) == {"Fresh.com.", "stale.com", "other-day.com"}
    rooted = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    assert recently_enriched(rooted, asked, 86400, now=now) == {"Fresh.com.", "other-day.com"}
    assert recently_enriched(tmp_path, asked, 0, now=now) == set()
    assert recently_enriched(tmp_path / "empty", asked, 86400, now=now) == set()
    days = sorted(p.parent.name for p in tmp_path.glob("enrichment/*/*.parquet"))
    assert days == ["date=2026-11-23", "date=2026-11-25", "date=2026-11-26"]


def test_enrichment_writes_are_idempotent_and_duckdb_readable(tmp_path):
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    for _ in range(2):
        write_enrichment(str(tmp_path), [record("a.com", now), record("b.com", now)], "run-7")
    rows = duckdb.sql(
        f"select domain, date from read_parquet('{tmp_path}/enrichment/**/*.parquet', hive_partitioning = true)"
        " order by domain"
    ).fetchall()
    assert [(d, str(day)) for d, day in rows] == [("a.com", "2026-11-26"), ("b.com", "2026-11-26")]
    assert write_enrichment(str(tmp_path), [], "none") == []


def test_run_cache_is_an_lru():
    cache: RunCache[str] = RunCache(maxsize=2)
    cache.put("A.com", "a")
    cache.put("b.com", "b")
    assert cache.get("a.com.") == "a"  # a is now the most recent
    cache.put("c.com", "c")
    assert "b.com" not in cache and "a.com" in cache and "c.com" in cache and len(cache) == 2
    assert cache.get("b.com") is None
    assert (cache.hits, cache.misses) == (1, 1)
    assert "" not in cache


def test_normalize_domain():
    assert normalize_domain(" WWW.Example.COM. ") == "www.example.com"
    with pytest.raises(ValueError):
        normalize_domain(" . ")
