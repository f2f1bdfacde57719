"""A hostile log list: descriptions that try to leave the lake, plain-http URLs to the
internet, duplicate slugs, oversized names. Checked through ctlib.ct.loglist and through the
DAG factory as the dag-processor runs it (DagBag): refused or neutralised with a message
naming the log, never a crash deep inside Airflow, and the lake stays under its root."""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctlib.ct.loglist import MAX_SLUG, LogListError, parse_log_list, slugify
from ctlib.lake.files import Lake
from ctlib.lake.layout import partition_dir
from ctlib.testing.ctlog import Faults, LogServer
from tests.paths import PROJECT_ROOT
from tests.support.airflow import configure, ingest_dag, run_until_caught_up
from tests.support.audit import assert_audit_clean
from tests.support.loglist import edited, two_local_logs

SLUG = re.compile(r"^[a-z0-9_]+$")
TRAVERSALS = ["../../etc x", "..\\..\\Windows System32", "/etc/passwd", "a/../../b", "log=x/date=y",
              "nul\x00byte log", "\u202eevil log", "名前 log ../", "~root/.ssh", "$(rm -rf /) log"]


@pytest.fixture(scope="module")
def template() -> dict:
    return two_local_logs()


def _under(root: str, path: str) -> bool:
    root, path = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([root, path]) == root


@pytest.mark.parametrize("description", TRAVERSALS)
def test_descriptions_cannot_leave_the_lake(description, template, tmp_path):
    (log, _) = parse_log_list(edited(template, {"description": description})).logs
    assert SLUG.match(log.slug), log.slug
    lake = Lake.open(str(tmp_path / "lake"))
    for table in ("certs", "errors", "incidents"):
        assert _under(lake.root, partition_dir(lake.root, table, log.slug, date(2026, 1, 1)))


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(max_size=80))
def test_any_description_gives_a_safe_slug_or_a_clear_refusal(description):
    slug = slugify(description)
    assert slug == "" or SLUG.match(slug)
    assert ".." not in slug and "/" not in slug and "\\" not in slug


def test_empty_slug_and_duplicate_slugs_refuse_the_list_clearly(template):
    with pytest.raises(LogListError, match=r"log '\.\./\.\.': description gives an empty slug"):
        parse_log_list(edited(template, {"description": "../.."}))
    with pytest.raises(LogListError, match=r"logs 'Hostile Good Log' and 'hostile-good log!' both give the slug 'hostile_good_log'"):
        parse_log_list(edited(template, extra={"description": "hostile-good log!"}))


@pytest.mark.parametrize("url", ["http://ct.example.com/log/", "http://127.0.0.1.evil.com/", "http://localhost.evil.com/",
                                 "http://0.0.0.0/", "http://[::ffff:8.8.8.8]/", "http://2130706433/"])
def test_plain_http_to_the_internet_is_neutralised_with_a_message(url, template, caplog):
    with caplog.at_level(logging.WARNING, logger="ctlib.ct.loglist"):
        loglist = parse_log_list(edited(template, {"url": url}))
    bad = loglist.logs[0]
    assert not bad.monitored and "refusing plain-http URL" in bad.problem and url in bad.problem
    assert [log.slug for log in loglist.monitored()] == ["hostile_other_log"]
    assert "log 'Hostile Good Log': refusing plain-http URL" in caplog.text and "will not be read" in caplog.text


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://[::1]/x/", "http://localhost:1/", "http://127.0.0.2/"])
def test_plain_http_to_loopback_is_allowed(url, template):
    assert parse_log_list(edited(template, {"url": url})).logs[0].monitored


@pytest.mark.parametrize("url, message", [("file:///etc/passwd", r"is not http\(s\)"), ("ftp://ct.example.com/", r"is not http\(s\)"),
                                          ("https://user:pw@ct.example.com/", "malformed URL"),
                                          ("https://ct.example.com/?x=1", "malformed URL"), ("", "missing URL")])
def test_other_urls_refuse_the_list_naming_the_log(url, message, template):
    with pytest.raises(LogListError, match=f"log 'Hostile Good Log': .*{message}"):
        parse_log_list(edited(template, {"url": url}))


def test_oversized_description_is_neutralised(template, caplog):
    with caplog.at_level(logging.WARNING, logger="ctlib.ct.loglist"):
        loglist = parse_log_list(edited(template, {"description": "L" * 300}))
    assert not loglist.logs[0].monitored and f"300-character slug (at most {MAX_SLUG})" in loglist.logs[0].problem
    assert "300-character slug" in caplog.text


# ----------------------------------------------------------------- through the DAG factory


def dagbag(tmp_path: Path, monkeypatch, data: dict, name: str):
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    monkeypatch.setenv("CT_LOG_LIST", str(path))
    return DagBag(str(PROJECT_ROOT / "dags" / "ct_ingest.py"))


@pytest.mark.integration
def test_dag_factory_builds_the_safe_logs_and_skips_the_neutralised_ones(airflow_db, template, tmp_path, monkeypatch, capfd,
                                                                        caplog):
    data = edited(template, {"description": "../../etc x"}, operator="O" * 150,
                  extra={"description": "Hostile Insecure Log", "url": "http://ct.example.com/"})
    data["operators"][0]["logs"].append({**copy.deepcopy(template["operators"][0]["logs"][1]),
                                         "description": "L" * 300})
    data["operators"][0]["logs"][1]["description"] = "Hostile Other Log"
    # the appended copies share a key with log 1; that is fine for parsing (slugs differ)
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="ctlib.ct.loglist"):
        bag = dagbag(tmp_path, monkeypatch, data, "mixed")
    # The parse's log reaches stdout or only the stdlib handlers, as earlier tests left logging.
    logged = "".join(capfd.readouterr()) + caplog.text
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == ["ct_ingest__etc_x", "ct_ingest__hostile_other_log"]
    assert "log 'Hostile Insecure Log': refusing plain-http URL" in logged and "will not be read" in logged
    assert "300-character slug" in logged
    assert len(bag.dags["ct_ingest__etc_x"].tags) == 4  # the 150-character operator name, cut to a valid tag


@pytest.mark.integration
@pytest.mark.parametrize("case, message", [
    ("duplicate", "both give the slug 'hostile_good_log'"),
    ("empty_slug", "description gives an empty slug"),
    ("file_url", "URL 'file:///etc/passwd' is not http(s)"),
])
def test_dag_factory_reports_an_unusable_list_as_one_clear_import_error(case, message, airflow_db, template, tmp_path, monkeypatch):
    data = {
        "duplicate": lambda: edited(template, extra={"description": "HOSTILE good LOG"}),
        "empty_slug": lambda: edited(template, {"description": "../.."}),
        "file_url": lambda: edited(template, {"url": "file:///etc/passwd"}),
    }[case]()
    bag = dagbag(tmp_path, monkeypatch, data, case)
    assert not [d for d in bag.dag_ids if d.startswith("ct_ingest__")]
    (error,) = bag.import_errors.values()
    last = error.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: cannot build ingest DAGs from ") and message in last, error


@pytest.mark.integration
def test_a_log_named_to_escape_writes_only_under_the_lake_root(airflow_db, tmp_path, monkeypatch, capfd):
    with LogServer() as server:
        log = server.add_log("../../etc x", initial_size=40, faults=Faults(cap=40))
        assert log.slug == "etc_x"
        lake = configure(monkeypatch, tmp_path, server, None, CT_KAFKA_CONN_ID="", CT_TASK_RETRIES="0")
        run_until_caught_up(ingest_dag(log.slug), capfd, log)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.name == "log_list.json" or _under(str(lake), str(p)) for p in written), written
    assert all("log=etc_x" in str(p) for p in lake.rglob("*.parquet"))
    assert_audit_clean(lake, log.slug)
