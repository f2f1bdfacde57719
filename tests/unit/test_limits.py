"""Per-log read limits: the bundled file, an operator's file laid over it, and where the
figures reach (the first get-entries, the session's request rate)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ctlib.ct.limits import LimitsError, LogLimits, limits_for, load_limits
from ctlib.ct.loglist import CTLog, load_log_list
from ctlib.settings import DEFAULT_LOG_LIST, Settings


def a_log(operator: str, slug: str = "some_log", kind: str = "rfc6962") -> CTLog:
    key = base64.b64encode(b"key").decode()
    return CTLog(description=slug, slug=slug, operator=operator,
                 log_id=base64.b64encode(hashlib.sha256(b"key").digest()).decode(), key=key,
                 kind=kind, url="https://ct.example/", state="usable", mmd=86400)


def test_bundled_figures_per_operator():
    table = load_limits()
    assert table.for_log(a_log("Google")).entries_per_request == 32
    assert table.for_log(a_log("Cloudflare")).entries_per_request == 256
    assert table.for_log(a_log("Sectigo")).entries_per_request == 192
    assert table.for_log(a_log("DigiCert")).requests_per_second == 10
    assert table.for_log(a_log("google")).entries_per_request == 32  # case-insensitive
    assert table.for_log(a_log("GOOGLE ")).entries_per_request == 32


def test_unknown_operator_gets_the_default():
    limits = load_limits().for_log(a_log("Some New Operator"))
    assert limits.requests_per_second == 50 and limits.entries_per_request == 0
    assert limits.source == "default of log_limits.yaml"
    # a field the operator's entry leaves out comes from the default
    assert load_limits().for_log(a_log("Google")).requests_per_second == 50


def test_every_operator_of_the_bundled_log_list_resolves():
    table = load_limits()
    for log in load_log_list(DEFAULT_LOG_LIST).monitored():
        limits = table.for_log(log)
        assert limits.requests_per_second > 0, log.slug


def test_operator_file_overrides_default_operator_and_slug(tmp_path):
    own = tmp_path / "limits.yaml"
    own.write_text(
        "default: {requests_per_second: 4}\n"
        "operators:\n  google: {requests_per_second: 8}\n  New Op: {entries_per_request: 64}\n"
        "logs:\n  busy_log: {requests_per_second: 2.5, entries_per_request: 16}\n"
    )
    settings = Settings.from_env({"CT_LOG_LIMITS": str(own)})
    google = limits_for(a_log("Google"), settings)
    assert (google.requests_per_second, google.entries_per_request) == (8, 32)  # bundled cap kept
    assert limits_for(a_log("Unknown"), settings).requests_per_second == 4
    new_op = limits_for(a_log("new op"), settings)
    assert (new_op.requests_per_second, new_op.entries_per_request) == (4, 64)
    busy = limits_for(a_log("Google", slug="busy_log"), settings)
    assert (busy.requests_per_second, busy.entries_per_request) == (2.5, 16)
    assert "busy_log" in busy.source and str(own) in busy.source
    assert limits_for(a_log("DigiCert"), settings).requests_per_second == 10  # untouched
    # a change to the file is seen without restarting the process
    own.write_text("logs:\n  busy_log: {requests_per_second: 0}\n")
    assert limits_for(a_log("Google", slug="busy_log"), settings).requests_per_second == 0


@pytest.mark.parametrize("text, message", [
    ("operators:\n  Google: {requests_per_second: -1}\n", "non-negative"),
    ("operators:\n  Google: {rps: 3}\n", "unknown field"),
    ("logs:\n  a: {entries_per_request: 2.5}\n", "whole number"),
    ("default: {requests_per_second: fast}\n", "must be a number"),
    ("limits: {}\n", "unknown section"),
    ("operators: [Google]\n", "operators must be a mapping"),
    ("default: [\n", "not valid YAML"),
])
def test_bad_operator_file_is_refused_naming_the_file(tmp_path, text, message):
    own = tmp_path / "limits.yaml"
    own.write_text(text)
    with pytest.raises(LimitsError, match=message) as err:
        load_limits(own)
    assert str(own) in str(err.value)


def test_missing_operator_file_is_refused(tmp_path):
    with pytest.raises(LimitsError, match="cannot read limits file"):
        limits_for(a_log("Google"), Settings.from_env({"CT_LOG_LIMITS": str(tmp_path / "nope.yaml")}))


def test_batch_rate_share_and_description():
    limits = LogLimits(10, 32, "operator 'Google' in log_limits.yaml")
    assert limits.batch(1024) == 32 and limits.batch(20) == 20
    assert LogLimits(10, 0).batch(1024) == 1024
    assert limits.rate(2) == 5 and limits.rate(1) == 10
    settings = Settings.from_env({"CT_FETCH_PARALLELISM": "2"})
    assert limits.describe("rfc6962", settings).startswith("32 entries/request, 10 req/s (5 per fetch task")
    assert limits.describe("static", settings).startswith("256 entries/tile, 10 req/s")
    assert "no request-rate limit" in LogLimits(0, 0).describe("rfc6962", settings)


def test_client_gets_the_cap_and_its_share_of_the_rate():
    from ctlib.ct.client import open_client

    settings = Settings.from_env({"CT_FETCH_PARALLELISM": "4"})
    client = open_client(a_log("Google"), settings, share=4)
    try:
        assert client.max_batch == 32
        assert client.session.bucket.rate == pytest.approx(50 / 4)
    finally:
        client.close()
    client = open_client(a_log("DigiCert", kind="static"), settings)
    try:
        assert client.session.bucket.rate == 10
    finally:
        client.close()


def test_first_get_entries_asks_within_the_cap():
    """A log capped at 32 is asked 32, not CT_GET_ENTRIES_BATCH, and a smaller answer still
    teaches the client a smaller cap."""
    from ctlib.ct.types import RawEntry
    from ctlib.ct.rfc6962 import RFC6962Client

    asked = []

    class Capped(RFC6962Client):
        def get_entries(self, start, end):
            asked.append(end - start)
            return [RawEntry(i, b"", b"") for i in range(start, min(end, start + 20))]

    client = Capped(a_log("Google"), session=None, max_batch=32)
    got = [e.index for batch in client.fetch_range(0, 100, batch=1024, in_flight=1) for e in batch]
    assert got == list(range(100))
    assert asked[0] == 32 and client.learned_cap == 20
    assert max(asked[1:]) <= 20
