import base64
import copy
import hashlib
import json

import pytest

from ctlib.ct.loglist import LogListError, load_log_list, parse_log_list, slugify
from tests.paths import CTDATA, PROJECT_ROOT
from tests.support.loglist import SIGNED_LIST, one_log_list

ALL_LOGS = CTDATA / "loglist" / "google_all_logs_list_v3_v53.34_2025-05-05.json"


def test_slug_rule():
    assert slugify("Google 'Argon2026h1' log") == "google_argon2026h1_log"
    assert slugify("Let's Encrypt 'Sycamore2025h2d'") == "let_s_encrypt_sycamore2025h2d"
    assert slugify("  --Weird__Name!! ") == "weird_name"


def test_real_signed_list_counts_and_states():
    loglist = parse_log_list(SIGNED_LIST.read_bytes())
    assert loglist.version == "80.14"
    assert len(loglist.logs) == 75
    tiled = [log for log in loglist.logs if log.kind == "static"]
    assert len(tiled) == 26
    monitored = loglist.monitored()
    # 33 usable + 9 readonly + 3 qualified classic logs, 24 usable + 2 qualified tiled logs.
    assert len([log for log in monitored if log.kind == "rfc6962"]) == 45
    assert len([log for log in monitored if log.kind == "static"]) == 26
    assert not any(log.state == "retired" for log in monitored)
    argon = loglist.by_slug("google_argon2025h2_log")
    assert argon.url == "https://ct.googleapis.com/logs/us1/argon2025h2/"
    assert hashlib.sha256(argon.key_der).digest() == argon.log_id_bytes
    sycamore = loglist.by_slug("let_s_encrypt_sycamore2025h2d")
    assert sycamore.kind == "static" and sycamore.url.startswith("https://mon.sycamore")


def test_all_logs_list_excludes_rejected_pending_retired():
    loglist = load_log_list(ALL_LOGS)
    assert len(loglist.logs) == 181
    states = {log.state for log in loglist.monitored()}
    assert states <= {"usable", "qualified", "readonly"}
    assert any(log.state == "retired" for log in loglist.logs)


def test_bundled_list_is_the_real_signed_one():
    assert (PROJECT_ROOT / "include" / "log_list.json").read_bytes() == SIGNED_LIST.read_bytes()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("operators"), "no 'operators'"),
        (lambda d: d["operators"][0]["logs"][0].update(log_id=base64.b64encode(b"x" * 32).decode()), "not the SHA-256"),
        (lambda d: d["operators"][0]["logs"][0].update(key="!!!"), "not valid base64"),
        (lambda d: d["operators"][0]["logs"][0].pop("description"), "missing description"),
        (lambda d: d["operators"][0]["logs"][0].update(state={"bogus": {}}), "unknown state"),
        (lambda d: d["operators"][0]["logs"][0].update(url="ftp://example.com/"), r"not http\(s\)"),
        (lambda d: d["operators"][0]["logs"].append(copy.deepcopy(d["operators"][0]["logs"][0])), "both give the slug"),
        (lambda d: d["operators"][0].update(logs={"a": 1}), "not an array"),
    ],
)
def test_malformed_lists_fail_clearly(mutate, message):
    data = one_log_list()
    mutate(data)
    with pytest.raises(LogListError, match=message):
        parse_log_list(data)


def test_broken_json_and_missing_file(tmp_path):
    with pytest.raises(LogListError, match="not valid JSON"):
        parse_log_list(b'{"operators": [')
    with pytest.raises(LogListError, match="cannot read log list"):
        load_log_list(tmp_path / "nope.json")


def test_plain_http_log_is_listed_but_never_read():
    data = one_log_list()
    data["operators"][0]["logs"][0]["url"] = "http://example.com/ct/"
    (log,) = parse_log_list(data).logs
    assert "plain-http" in log.problem and not log.monitored


def test_loopback_http_is_allowed_for_local_logs():
    data = one_log_list()
    data["operators"][0]["logs"][0]["url"] = "http://127.0.0.1:8123/log1"
    (log,) = parse_log_list(data).logs
    assert log.url == "http://127.0.0.1:8123/log1/"


def test_roundtrip_dict():
    log = parse_log_list(SIGNED_LIST.read_bytes()).logs[0]
    assert type(log).from_dict(json.loads(json.dumps(log.to_dict()))) == log
