"""Hostile input to the pipeline's user-facing surfaces, fuzzed with hypothesis: watchlist
lines (and CT_WATCHLIST at DAG import), backfill Params, user-given times, metrics labels and
the monitor's JSON, notification payloads, and hostile log lists at DAG import (what
tests/faults/test_hostile_log_list.py does not cover). Each surface gives a valid result or a
clear error of its documented type naming the line or the Param, never another exception.

Every property is derandomized and writes no example database, so runs are repeatable.
"""

from __future__ import annotations

import copy
import email
import json
import re
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import tests.support.airflow  # noqa: F401  (before anything imports airflow: the throw-away AIRFLOW_HOME)
from ctlib.airflow.monitor.metrics import exposition
from ctlib.airflow.monitor.page import STATIC_DIR, snapshot_json
from ctlib.airflow.monitor.snapshot import STATUSES, build_snapshots
from ctlib.ct.loglist import CTLog, LogListError, parse_log_list, storable
from ctlib.downstream import notify
from ctlib.downstream.watchlist import WatchlistError, load_watchlist, parse_item, parse_watchlist
from ctlib.ingest.state import LogState
from ctlib.settings import Settings, SettingsError, parse_utc
from tests.paths import PROJECT_ROOT
from tests.support.airflow import load_dag_module
from tests.support.loglist import edited, two_local_logs

FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=12, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Text a person or a certificate may hand us: anything, with the nasty characters likely.
NASTY = ["\x00", "\r", "\n", "\r\n", "\x0b", "\x1c", "\x85", "\u2028", "\u2029", "\u202e", "\ufeff", "\ud800",
         '"', "'", "\\", "}", "{", "#", "<", ">", "&", "<script>", "</td>", "<!channel>", "&amp;", "*", "_", "`",
         "/", "..", "bücher", "ＥＸＡＭＰＬＥ", "xn--", "%", "$", "=", ",", " "]
hostile = st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=8).map("".join)
listed = hostile.map(storable)
"""Hostile text as the log list parser hands it on (NUL and lone surrogates neutralised)."""
stored = hostile.map(lambda text: re.sub("[\ud800-\udfff]", "\ufffd", text))
"""Hostile text as the lake holds it (a Parquet string is UTF-8: no lone surrogate)."""


# --------------------------------------------------------------------------- 1. watchlist

LDH_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
CIDRISH = ["10.0.0/24", "198.51.100.0/33", "192.0.2.300", "2001:db8::/129", "1.2.3.4/8/8", "::ffff:1.2.3.4/-1",
           "0x7f.1", "fe80::1%", "10.0.0.0/8 x", "256.256.256.256"]
watch_line = st.one_of(
    hostile,
    st.sampled_from(CIDRISH + [".example.com", "www.example.org", "192.0.2.10", "2001:db8::/32", "bücher.example",
                               ".ＥＸＡＭＰＬＥ.org", "a" * 64 + ".com", ("a." * 130) + "com", "x" * 100_000]),
    st.builds(lambda a, b: f"{a}.{b}", st.text(min_size=1, max_size=10), st.sampled_from(["com", "de", "xn--p1ai"])),
)


def _entries(text: str) -> list[tuple[int, str]]:
    """(line number, entry) of each non-blank line, as the format counts them: "\\n" only."""
    return [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.split("\n"), 1)
            if line.split("#", 1)[0].strip()]


def _bad(entry: str) -> bool:
    try:
        parse_item(entry)
    except ValueError:
        return True
    return False


@FUZZ
@given(st.lists(st.tuples(watch_line, st.sampled_from(["", " # note", "\r", "\t#x"])), max_size=6))
def test_any_watchlist_text_gives_valid_items_or_an_error_naming_the_first_bad_line(lines):
    text = "\n".join(line + tail for line, tail in lines)
    entries = _entries(text)
    first_bad = next((n for n, entry in entries if _bad(entry)), None)
    try:
        watchlist = parse_watchlist(text, "hostile.txt")
    except WatchlistError as err:
        assert first_bad is not None and str(err).startswith(f"hostile.txt:{first_bad}: "), (str(err)[:200], first_bad)
        assert len(str(err)) < 300, "a huge line is cut short in the message"
        return
    assert first_bad is None
    for item in watchlist.items:
        if item.kind == "ip":
            assert item.network is not None
        else:
            assert item.kind in {"domain", "name"} and len(item.name) <= 253
            assert all(LDH_LABEL.fullmatch(label) for label in item.name.split(".")), item
            assert not item.name.split(".")[-1].isdigit()
    # Every item matches what it names (a name item its own name, a domain item a child).
    for item in watchlist.items:
        probe = item.name if item.kind == "name" else f"x.{item.name}" if item.kind == "domain" else None
        if probe:
            assert item in [i for i, _ in watchlist.match([probe])]


@pytest.mark.parametrize("line", CIDRISH + ["a\x00b.com", "-\u202eexample.com", "a" * 64 + ".com", "*.example.com",
                                            "exa mple.com", "example.com/path", "user@example.com"])
def test_mistyped_networks_and_impossible_names_are_refused_not_kept_as_names(line):
    with pytest.raises(WatchlistError, match=r"^w:2: .* (is not a DNS name|not a valid IP address)"):
        parse_watchlist(f"ok.example\n{line}\n", "w")


def test_line_numbers_are_the_editors_and_non_utf8_files_name_file_and_line(tmp_path):
    # U+2028 and \x0b are no line breaks of the file: the entry holding them is line 2 and bad.
    with pytest.raises(WatchlistError, match=r"^w:2: "):
        parse_watchlist("ok.example\nx\u2028y.example\nz.example", "w")
    watchlist = parse_watchlist("a.example\r\n.b.example\r\n", "w")  # CRLF files are fine
    assert [(i.kind, i.name) for i in watchlist.items] == [("name", "a.example"), ("domain", "b.example")]
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"ok.example\n# caf\xe9\n")
    with pytest.raises(WatchlistError, match=rf"^{re.escape(str(path))}:2: not UTF-8 text \(byte 0xe9\)"):
        load_watchlist(path)


@settings(max_examples=60, deadline=None, database=None, derandomize=True)
@given(st.binary(max_size=200))
def test_any_watchlist_file_loads_or_fails_with_a_watchlist_error(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.txt"
        path.write_bytes(data)
        try:
            load_watchlist(path)
        except WatchlistError as err:
            assert str(err).startswith(f"{path}:")


def test_the_watch_dag_imports_whatever_ct_watchlist_holds(tmp_path, monkeypatch):
    """The DAG file never reads the watchlist (each run does, and fails naming the line)."""
    for name, data in {"garbage": b"\x00\xff\xfe<script>\n198.51.100.0/33\n" + b"x" * 200_000, "missing": None}.items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        monkeypatch.setenv("CT_WATCHLIST", str(path))
        module = load_dag_module("ct_watch")
        assert module.ct_watch.dag_id == "ct_watch" and module.SETTINGS.watchlist == path
        with pytest.raises(WatchlistError, match=rf"{re.escape(str(path))}"):
            load_watchlist(module.SETTINGS.watchlist)


# --------------------------------------------------------------------------- 2. backfill Params

index_value = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True), st.booleans(), st.none(),
    st.text(max_size=12), st.sampled_from(["12", " 7 ", "-1", "1e3", "0x10", "١٢", "9" * 5000, "3.0"]),
    st.just(-(10**5000)), st.lists(st.integers(), max_size=2),
)


def _index_ok(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 30:
        return int(value)
    return None


@FUZZ
@given(start=index_value, end=index_value)
@example(start=5, end=5).via("empty range")
@example(start=10, end=2).via("reversed")
@example(start=0, end=10**30).via("huge")
def test_backfill_index_params_give_a_range_or_an_error_naming_the_param(start, end):
    from airflow.sdk.exceptions import AirflowFailException

    from ctlib.airflow.ingest_tasks import _index_range

    first, last = _index_ok(start), _index_ok(end)
    try:
        got = _index_range({"start_index": start, "end_index": end})
    except AirflowFailException as err:
        message = str(err)
        assert len(message) < 300
        if start is None or end is None:
            assert (start is None) != (end is None) and "needs both start_index and end_index" in message
        elif first is None:
            assert message.startswith("start_index=") and "not a log index" in message
        elif last is None:
            assert message.startswith("end_index=") and "not a log index" in message
        else:
            assert first >= last and f"start_index={first}, end_index={last}" in message
        return
    if start is None and end is None:
        assert got is None
    else:
        assert first is not None and last is not None and got == (first, last) and first < last


@FUZZ
@given(start=st.one_of(hostile, st.datetimes().map(datetime.isoformat)),
       end=st.one_of(hostile, st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)))
def test_backfill_time_params_give_a_window_or_an_error_naming_the_param(start, end):
    from airflow.sdk.exceptions import AirflowFailException

    from ctlib.airflow.ingest_tasks import _time_window

    try:
        window = _time_window(None, None, {"start_time": start, "end_time": end}, None)  # type: ignore[arg-type]
    except AirflowFailException as err:
        message = str(err)
        assert message.startswith(("start_time=", "end_time=", "empty time window: ")), message
        return
    assert window is not None
    assert window[0] < window[1] and window[0].tzinfo is UTC and window[1].tzinfo is UTC


class _States:
    """A state store over a dict (the StateStore protocol's load), for a manual plan."""

    def __init__(self, states: dict[str, LogState]) -> None:
        self.states = states

    def load(self, slug: str) -> LogState | None:
        return self.states.get(slug)


@FUZZ
@given(log=st.one_of(st.just("argon"), hostile, st.text(max_size=300)), start=index_value, end=index_value)
@example(log="argon", start=8192, end=0)
@example(log="../ct_state__x", start=0, end=1)
def test_manual_downstream_runs_refuse_hostile_log_names_and_indexes_clearly(log, start, end):
    from ctlib.airflow.downstream_tasks import WATCH, _manual_plan

    store = _States({"argon": LogState(next_index=100_000, tree_size=100_000, first_index=50_000)})
    params = {"log": log, "start_index": start, "end_index": end}
    try:
        planned = _manual_plan(WATCH, params, store, None, {"argon": 86400})  # type: ignore[arg-type]
    except ValueError as err:
        message = str(err)
        assert len(message) < 400
        if not re.fullmatch(r"[a-z0-9_]{1,100}", log):
            assert message.startswith("log="), message
        elif log != "argon" and start is not None and end is not None and _index_ok(start) is not None \
                and _index_ok(end) is not None:
            assert "no ingest state" in message
        else:
            assert re.search(r"start_index|end_index|needs start_index", message) or "reaches" in message, message
        return
    first, last = _index_ok(start), _index_ok(end)
    assert log == "argon" and first is not None and last is not None and 0 <= first < last <= 100_000
    assert planned[0].work.start <= first and planned[-1].work.end >= min(last, 100_000)


# --------------------------------------------------------------------------- 3. time strings

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))


@FUZZ
@given(st.one_of(hostile, st.text(max_size=40),
                 st.sampled_from(["2016-12-31T23:59:60Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                  "2026-01-01T00:00:00\x00", "2026-02-30T00:00:00Z", "2026-01-01T25:00:00Z",
                                  "2026-01-01T00:00:00+24:00", "２０２６-01-01", "2026-01-01T00:00:00ZZ", "latest"])))
def test_any_time_string_parses_to_utc_or_fails_naming_the_setting(text):
    try:
        moment = parse_utc(text, "CT_START_AT")
    except SettingsError as err:
        assert str(err).startswith("CT_START_AT=") and "not an ISO-8601 time" in str(err)
        assert len(str(err)) < 300
        return
    assert moment.tzinfo is UTC and text.strip().isprintable()


@FUZZ
@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), zone=offsets,
       zulu=st.booleans(), spec=st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]))
def test_valid_times_round_trip_in_any_zone(moment, zone, zulu, spec):
    aware = moment.replace(tzinfo=UTC if zulu else zone)
    text = aware.isoformat(timespec=spec)
    if zulu:
        text = text.replace("+00:00", "Z")
    expected = aware.astimezone(UTC)
    if spec == "seconds":
        expected = expected.replace(microsecond=0)
    elif spec == "milliseconds":
        expected = expected.replace(microsecond=expected.microsecond // 1000 * 1000)
    assert parse_utc(text, "start_time") == expected
    # The same through CT_START_AT (read by Settings, kept as its UTC ISO form).
    assert Settings.from_env({"CT_START_AT": text}).start_at_time == expected
    naive = moment.isoformat()  # no zone: UTC
    assert parse_utc(naive, "start_time") == moment.replace(tzinfo=UTC)


def test_leap_seconds_and_zone_overflow_are_clear_errors():
    for text in ["2016-12-31T23:59:60Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]:
        with pytest.raises(SettingsError, match=r"^CT_START_AT=.*not an ISO-8601 time"):
            Settings.from_env({"CT_START_AT": text})


# --------------------------------------------------------------------------- 4. metrics and the page

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings.from_env({})


def _ctlog(description: str, operator: str, n: int) -> CTLog:
    return CTLog(description=description, slug=f"log_{n}", operator=operator, log_id="aWQ=", key="a2V5",
                 kind="rfc6962", url="https://log.example/", state="usable", mmd=86400)


@FUZZ
@given(st.lists(st.tuples(listed, listed), min_size=1, max_size=4),
       st.sampled_from([None, "application/openmetrics-text; version=1.0.0"]))
def test_metrics_labels_parse_back_to_exactly_the_operator_names(logs, accept):
    ctlogs = [_ctlog(description, operator, n) for n, (description, operator) in enumerate(logs)]
    states = {c.slug: LogState(next_index=5, tree_size=9, first_index=0, updated_at=NOW.isoformat()) for c in ctlogs}
    snapshots = build_snapshots(ctlogs, states, {}, SETTINGS, NOW)
    body, content_type = exposition(snapshots, {}, accept)
    text = body.decode("utf-8")
    if accept:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
        assert content_type.startswith("application/openmetrics-text")
    else:
        parse = text_string_to_metric_families
    families = {f.name: f for f in parse(text)}
    per_log = {"ct_log_tree_size", "ct_log_next_index", "ct_log_backlog_entries", "ct_log_freshness_lag_seconds",
               "ct_log_last_success_timestamp_seconds", "ct_log_entries", "ct_log_errors", "ct_log_incidents"}
    assert set(families) == per_log | {"ct_log_status", "ct_alerts", "ct_watch_matches", "ct_enrichment_calls",
                                       "ct_enrichment_failures"}
    expected = [{"log": c.slug, "kind": "rfc6962", "operator": c.operator} for c in ctlogs]
    for name in per_log:
        samples = [s for s in families[name].samples if not s.name.endswith("_created")]
        assert [s.labels for s in samples] == expected, name
    status = families["ct_log_status"].samples
    assert len(status) == len(ctlogs) * len(STATUSES)
    assert [{k: v for k, v in s.labels.items() if k != "status"} for s in status[::len(STATUSES)]] == expected
    # Nothing injected: every line ("\n" ends one; a raw "\r" in a label value is legal) is a
    # comment or a sample of a family above.
    names = {s.name for f in families.values() for s in f.samples}
    for line in text.rstrip("\n").split("\n"):
        assert line.startswith("#") or line.split("{", 1)[0].split(" ", 1)[0] in names, line


def test_a_lone_surrogate_or_nul_from_a_json_log_list_is_neutralised(template):
    """JSON's "\\ud800" decodes to a lone surrogate, which UTF-8 cannot encode: the metrics and
    the page's JSON raised on it (a 500 for every scrape)."""
    raw = json.dumps(edited(template, {"description": "Bad\ud800 Log\x00"}, operator="Op\ud800<script>"))
    assert "\\ud800" in raw
    (log, _) = parse_log_list(raw).logs
    assert (log.description, log.operator, log.slug) == ("Bad\ufffd Log\ufffd", "Op\ufffd<script>", "bad_log")
    [snap] = build_snapshots([log], {}, {}, SETTINGS, NOW)
    exposition([snap], {})[0].decode("utf-8")
    from fastapi.responses import JSONResponse

    assert json.loads(JSONResponse(snapshot_json(snap)).body)["operator"] == "Op\ufffd<script>"


@FUZZ
@given(description=listed, operator=listed)
def test_the_page_serves_descriptions_as_json_data_never_as_markup(description, operator):
    from fastapi.responses import JSONResponse

    [snap] = build_snapshots([_ctlog(description, operator, 0)], {}, {}, SETTINGS, NOW)
    response = JSONResponse({"logs": [snapshot_json(snap)]})
    assert response.media_type == "application/json"
    (back,) = json.loads(response.body)["logs"]
    assert (back["description"], back["operator"]) == (description, operator)


def test_the_page_script_inserts_text_never_html():
    script = (STATIC_DIR / "monitor.js").read_text(encoding="utf-8")
    assert "textContent" in script
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert "{{" not in (STATIC_DIR / "index.html").read_text(encoding="utf-8")  # a static file, no template


# --------------------------------------------------------------------------- 5. notifications


def _watch_rows(key: str, items: list[str], names: list[str], issuer: str, slug: str) -> list[dict]:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return [{"tbs_sha256": key, "watch_item": item, "names": names, "issuer": issuer, "not_before": at,
             "not_after": at + timedelta(days=90), "log_slug": slug, "index": 7, "timestamp": at,
             "entry_type": "precert", "cert_sha256": "ab" * 32, "precert_sha256": "cd" * 32, "updated_at": at,
             "crtsh": notify.CRTSH + "ab" * 32} for item in items]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)

    def handle_data(self, data):
        self.text.append(data)


def _unslack(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


@FUZZ
@given(items=st.lists(hostile, min_size=1, max_size=3, unique=True), names=st.lists(hostile, min_size=1, max_size=3),
       issuer=hostile, slug=hostile, batched=st.booleans())
def test_notifications_carry_hostile_text_exactly_escaped_and_on_one_line(items, names, issuer, slug, batched):
    (notice,) = notify.watch_notices(_watch_rows("k" * 64, items, names, issuer, slug))
    # Webhook: the JSON parses back to exactly the input values, and only the expected keys.
    body = json.loads(json.dumps(notify.webhook_body([notice], batched=batched, run_id="r")))
    one = body["items"][0] if batched else body
    assert set(one) == {"key", "title", *notice.payload} | ({"kind"} if not batched else set())
    assert one["watch_items"] == items and one["names"] == sorted(set(names)) and one["issuer"] == issuer
    assert one["log_slug"] == slug and [m["watch_item"] for m in one["matches"]] == items
    # Slack: no raw <, > or & but its three escapes; no line but the message's own.
    slack = notify.slack_text([notice], batched=batched)
    assert "<" not in slack and ">" not in slack
    assert not re.search(r"&(?!amp;|lt;|gt;)", slack)
    lines = slack.split("\n")
    assert len(lines) == (2 if batched else 1 + len(notify.facts(notice.payload)))
    assert not any(c in slack for c in "\r\x00\x0b\x85\u2028\u2029")
    if not batched:
        issuer_line = next((line for line in lines if line.startswith("issuer: ")), None)
        assert issuer_line is None or _unslack(issuer_line) == "issuer: " + notify.one_line(issuer)
    # E-mail: a subject of one line, an HTML body with only the module's own tags.
    subject, html_body = notify.email_content([notice], batched=batched)
    assert not any(c in subject for c in "\r\n\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    parser = _Tags()
    parser.feed(html_body)
    assert parser.tags <= {"html", "body", "p", "b", "h3", "table", "tr", "th", "td", "a"}
    assert notify.one_line(issuer) in "".join(parser.text)


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(name=stored, brand=stored, issuer=stored)
def test_the_email_message_keeps_its_headers_whatever_the_subject(name, brand, issuer):
    """Through the SMTP provider's own MIME builder: no header but the ones it sets."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    row = {"tbs_sha256": "k", "name": name, "score": 90.0, "brand": brand, "registered_domain": None, "rules": ["r"],
           "issuer_org": issuer, "log_slug": "argon", "index": 1, "timestamp": NOW, "entry_type": "x509",
           "cert_sha256": "ab" * 32}
    notices = notify.phishing_notices([row], 50)
    subject, html_body = notify.email_content(notices, batched=True)
    msg, _ = SmtpHook(smtp_conn_id="unused")._build_mime_message(
        mail_from="ct@example.test", to=["sec@example.test"], subject=subject, html_content=html_body)
    parsed = email.message_from_string(msg.as_string())
    assert sorted(k.lower() for k in parsed) == sorted(k.lower() for k in msg)
    assert str(make_header(decode_header(parsed["Subject"]))) == subject


# --------------------------------------------------------------------------- 6. DAG import


@pytest.fixture(scope="module")
def template() -> dict:
    return two_local_logs()


MISSING = object()
log_fields = st.fixed_dictionaries({}, optional={
    "description": st.one_of(hostile, st.text(max_size=120), st.none(), st.integers(), st.just(MISSING)),
    "mmd": st.one_of(st.integers(min_value=-5, max_value=10**20), st.booleans(), st.floats(), st.text(max_size=4),
                     st.just(MISSING)),
    "temporal_interval": st.one_of(st.none(), st.just(MISSING), st.fixed_dictionaries({
        "start_inclusive": st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "x"]),
        "end_exclusive": st.sampled_from(["2027-01-01T00:00:00Z", "9999-12-31T23:00:00Z",
                                          "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00"])})),
    "url": st.one_of(st.sampled_from(["https://ct.example/log/", "https://ct.example/\x00/", "https://ct.example/\ud800",
                                      "http://ct.example/", "https://", "javascript:alert(1)"]), st.just(MISSING)),
    "state": st.one_of(st.just({"usable": {}}), st.just({"readonly": {}}), st.just("usable"), st.just({}),
                       st.just(MISSING)),
})


def _apply(log: dict, changes: dict) -> dict:
    out = dict(log)
    for name, value in changes.items():
        if value is MISSING:
            out.pop(name, None)
        else:
            out[name] = value
    return out


@FUZZ
@given(first=log_fields, second=log_fields, operator=st.one_of(hostile, st.text(min_size=101, max_size=300)))
def test_a_fuzzed_log_list_gives_distinct_valid_dag_ids_or_one_clear_refusal(template, first, second, operator):
    data = copy.deepcopy(template)
    logs = data["operators"][0]["logs"]
    logs[0], logs[1] = _apply(logs[0], first), _apply(logs[1], second)
    data["operators"][0]["name"] = operator
    try:
        loglist = parse_log_list(json.dumps(data))
    except LogListError as err:
        assert str(err).startswith(("operator ", "logs ")), err
        return
    slugs = [log.slug for log in loglist.logs]
    assert len(set(slugs)) == len(slugs)
    for log in loglist.monitored():
        assert re.fullmatch(r"[a-z0-9_]{1,100}", log.slug) and 0 <= log.mmd <= 7 * 86400
        assert "\x00" not in log.description + log.operator and log.description.encode() and log.operator.encode()
        from ctlib.ingest.schedule import schedule_for

        schedule_for(log, NOW, SETTINGS)  # what the DAG file computes at import: never overflows


@SLOW
@given(first=log_fields, operator=hostile)
@example(first={"mmd": 10**20}, operator="Op").via("refused: an mmd that overflowed the schedule")
@example(first={"description": "Ünï\x00 <b>Log</b>\ud800", "temporal_interval": {
    "start_inclusive": "2026-01-01T00:00:00Z", "end_exclusive": "9999-12-31T23:00:00Z"}}, operator="<i>\n").via("kept")
def test_the_ingest_dag_file_imports_a_fuzzed_list_or_names_why_not(template, first, operator):
    from airflow.dag_processing.dagbag import DagBag

    data = copy.deepcopy(template)
    data["operators"][0]["logs"][0] = _apply(data["operators"][0]["logs"][0], first)
    data["operators"][0]["name"] = operator
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as env:
        path = Path(folder) / "list.json"
        path.write_text(json.dumps(data))
        env.setenv("CT_LOG_LIST", str(path))
        try:
            expected = [f"ct_ingest__{log.slug}" for log in parse_log_list(json.dumps(data)).monitored()]
        except LogListError as err:
            expected = None
            reason = str(err)
        bag = DagBag(str(PROJECT_ROOT / "dags" / "ct_ingest.py"))
    if expected is None:
        (error,) = bag.import_errors.values()
        last = error.strip().splitlines()[-1]
        assert last.startswith("RuntimeError: cannot build ingest DAGs from ") and reason[:60] in last, (last, reason)
        assert not bag.dag_ids
    else:
        assert bag.import_errors == {}, bag.import_errors
        assert sorted(bag.dag_ids) == sorted(expected) and expected
        for dag in bag.dags.values():
            assert "\x00" not in (dag.description or "") + (dag.doc_md or "")
