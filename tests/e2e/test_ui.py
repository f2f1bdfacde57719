"""The Airflow UI as an operator sees it: a real browser against a real `airflow standalone`.

The test starts its own `airflow standalone` (its own AIRFLOW_HOME under tmp_path, a fresh
database on the machine's PostgreSQL at 127.0.0.1:5432, a free UI port, the admin password
written into the simple auth manager's passwords file by `ctlib.localsvc.run`, the project's
DAGs built from a log list of two local CT logs, one of them tiled, Kafka off, DAGs paused),
waits until the UI answers and the DAGs are parsed, then:

- REST API (a JWT from /auth/token): every DAG has doc_md, tags and owner `ct-airflow`, and
  no DAG file has an import error;
- headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; `make test` installs
  it): logs in as admin, searches the DAG list for `ct_ingest__`, sees both per-log DAGs and
  nothing else, opens one, sees its owner, tags and docs, opens the trigger form, sees the
  backfill Params `start_index` and `end_index` with their descriptions (screenshot in
  tmp_path), fills them in and triggers (without unpausing): the run carries them as its conf.

Everything started here is stopped on exit, also on failure.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from ctlib.testing.ctlog import LogServer
from tests.support.standalone import Standalone, chromium, log_in, metadata_database, start_standalone

pytestmark = pytest.mark.e2e

CLASSIC_LOG = "E2E Classic Log"
TILED_LOG = "E2E Tiled Log"
INGEST_DAGS = ("ct_ingest__e2e_classic_log", "ct_ingest__e2e_tiled_log")
OTHER_DAGS = ("ct_score", "ct_enrich", "ct_loglist_refresh")
OWNER = "ct-airflow"


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    with metadata_database("ct_e2e_ui") as database, LogServer() as ct_server:
        ct_server.add_log(CLASSIC_LOG, initial_size=16)
        ct_server.add_log(TILED_LOG, tiled=True, initial_size=16)
        log_list = ct_server.write_log_list(tmp_path / "log_list.json")
        settings = {
            "CT_LOG_LIST": str(log_list),
            "CT_KAFKA_CONN_ID": "",
            "CT_LAKE": str(tmp_path / "lake"),
            "CT_LOG_LIST_SNAPSHOT": str(tmp_path / "log_list_snapshot.json"),
        }
        with start_standalone(tmp_path, database, settings, {*INGEST_DAGS, *OTHER_DAGS}) as airflow:
            yield airflow


def test_every_dag_documented_tagged_owned_and_trigger_form_shows_backfill_params(
    standalone: Standalone, tmp_path: Path
) -> None:
    # -- REST API: doc_md, tags and owner of every DAG; no import errors ------------------
    token = standalone.token()
    errors = standalone.api("importErrors", token)
    assert errors["total_entries"] == 0, json.dumps(errors["import_errors"], indent=1)
    dags = standalone.api("dags", token, limit=100)["dags"]
    descriptions: dict[str, str] = {}  # of the backfill Params
    assert {dag["dag_id"] for dag in dags} >= {*INGEST_DAGS, *OTHER_DAGS}
    for dag in dags:  # every DAG the project has, whatever its id
        details = standalone.api(f"dags/{dag['dag_id']}/details", token)
        assert (details["doc_md"] or "").strip(), f"{dag['dag_id']} has no doc_md"
        assert details["tags"], f"{dag['dag_id']} has no tags"
        assert details["owners"] == [OWNER], f"{dag['dag_id']} owners: {details['owners']}"
        if dag["dag_id"] in INGEST_DAGS:
            params = details["params"]
            assert {"start_index", "end_index"} <= set(params), params
            for name in ("start_index", "end_index"):
                assert params[name]["description"], params[name]
                descriptions[name] = params[name]["description"]
    assert set(descriptions) == {"start_index", "end_index"}

    # -- the browser ------------------------------------------------------------------------
    dag_id = INGEST_DAGS[1]  # the tiled log's
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        log_in(page, standalone)

        # The DAG list, searched for the per-log DAGs: both, and only those.
        page.get_by_test_id("nav-dags-link").click()
        expect(page).to_have_url(re.compile(r"/dags$"))
        page.get_by_test_id("search-dags").fill("ct_ingest__")
        for ingest in INGEST_DAGS:
            expect(page.get_by_role("link", name=ingest, exact=True)).to_be_visible()
        for other in OTHER_DAGS:
            expect(page.get_by_role("link", name=other, exact=True)).to_have_count(0)
        expect(page.locator('a[href*="/dags/"]').filter(has_text="ct_")).to_have_count(len(INGEST_DAGS))
        page.screenshot(path=tmp_path / "dag_list.png")

        # One DAG's page: owner and tags in its header, its doc_md behind "Dag Docs".
        page.get_by_role("link", name=dag_id, exact=True).click()
        expect(page).to_have_url(re.compile(rf"/dags/{dag_id}$"))
        expect(page.get_by_role("link", name=OWNER, exact=True)).to_be_visible()
        header = page.get_by_test_id("header-card")
        expect(header.get_by_role("link", name="ingest", exact=True)).to_be_visible()  # the tag
        expect(page.get_by_test_id("ingest")).to_be_visible()  # the ingest task, in the grid
        page.get_by_test_id("markdown-button").click()
        docs = page.get_by_role("dialog")
        expect(docs).to_contain_text(f"Ingest {TILED_LOG}")
        expect(docs).to_contain_text("Backfill")
        docs.get_by_role("button", name="Close").click()
        expect(page.get_by_role("dialog")).to_have_count(0)

        # The trigger form: the backfill Params with their descriptions.
        page.get_by_test_id("trigger-dag-button").first.click()
        form = page.get_by_role("dialog")
        expect(form).to_contain_text(f"Trigger Dag - {dag_id}")
        config = form.get_by_test_id("config-form")
        start = config.locator('[id="number-input:element_start_index"] input')
        end = config.locator('[id="number-input:element_end_index"] input')
        expect(start).to_be_visible()
        expect(end).to_be_visible()
        for name, description in descriptions.items():  # as the DAG's Params say
            expect(config.get_by_text(name, exact=True)).to_be_visible()
            expect(config.get_by_text(description, exact=True)).to_be_visible()
        page.screenshot(path=tmp_path / "trigger_form.png")

        # Fill them in and trigger, leaving the DAG paused: the run carries them.
        start.fill("0")
        end.fill("8192")
        unpause = form.get_by_text(f"Unpause {dag_id} on trigger")
        if form.get_by_role("checkbox").is_checked():
            unpause.click()
        expect(form.get_by_role("checkbox")).not_to_be_checked()
        page.screenshot(path=tmp_path / "trigger_form_filled.png")
        form.get_by_test_id("trigger-dag-submit").click()
        expect(page.get_by_role("dialog")).to_have_count(0)

    deadline = time.monotonic() + 30
    while True:
        runs = standalone.api(f"dags/{dag_id}/dagRuns", token)["dag_runs"]
        if runs or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    # The form sends every Param: the backfill by time's, left empty, as null.
    expected = {"start_index": 0, "end_index": 8192, "start_time": None, "end_time": None}
    assert [run["conf"] for run in runs] == [expected], runs
    assert [run["run_type"] for run in runs] == ["manual"]
    assert standalone.api(f"dags/{dag_id}", token)["is_paused"] is True
