"""Backfill by time through Airflow itself: its Backfill dialog in a real browser, `airflow
backfill create` and POST /api/v2/backfills, against one real `airflow standalone`.

One `airflow standalone` for the module (tests/support/standalone.py: its own home, a fresh
database on the machine's PostgreSQL, a free port, Kafka off), one local RFC 6962 log with
3 hours of backdated history (1 entry/s, timestamps out of order by up to 2 s) that keeps
growing (2 entries/s), CT_START_AT=latest, CT_BACKFILL_DISORDER=4, the pools of `make run`
(ensure_pool: ct_backfill among them), and only that log's ingest DAG unpaused: live
ingestion begins at the tip (first_index), leaving the history to the backfills.

- In headless Chromium: the DAG's Backfills tab, Trigger -> Backfill, a 10-minute range in
  the dialog (From/To in its UTC date-time pickers; "10 runs will be triggered."), Run
  Backfill, then the Backfills tab until the backfill shows its "Completed at".
- `airflow backfill create` (with the standalone's environment) for the next 10 minutes,
  adjacent to the browser's, given as tick times (Airflow's range is inclusive at both ends),
  and POST /api/v2/backfills for 5 minutes further on, given off the ticks.

After each backfill: Airflow made one run per tick of the DAG's schedule (each minute at the
log's offset) in [from, to], all succeeded, every task instance of them in the pool
ct_backfill (a scheduled run's in default_pool). The lake (read with DuckDB) holds, below
first_index, exactly the entries whose log timestamp falls in the union of the windows
[first tick, last tick + 1 minute) backfilled so far, compared with the log's own entries
(index and timestamp), and no index twice; the audit (states from the REST API) is clean;
first_index is unchanged and next_index moved only forward (live ingestion). The adjacent
windows meet at an edge across which the log is out of order: each entry is stored by the
window its own timestamp is in.

Screenshots in the browser test's tmp_path: backfill_dialog.png (the filled-in dialog) and
backfills_tab_finished.png (the Backfills tab with the completed backfill). Everything
started here is stopped on exit, also on failure. About 2.5 minutes on 2 cores.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import requests
from playwright.sync_api import expect

from ctlib.ingest.schedule import offset_for
from ctlib.localsvc.run import ensure_pool
from ctlib.settings import Settings
from ctlib.testing.ctlog import LocalCTLog, LogServer
from tests.support.audit import assert_audit_clean
from tests.support.standalone import Standalone, chromium, log_in, metadata_database, start_standalone

pytestmark = pytest.mark.e2e

LOG_NAME = "E2E Backfill Log"
HISTORY = (3.0, 1.0)  # hours of backdated history, entries per second
HISTORY_DISORDER = 2.0  # seconds each history timestamp is moved by, at most
LIVE_RATE = 2.0  # entries per second the log grows by while the test runs
BACKFILL_DISORDER = 4  # CT_BACKFILL_DISORDER (seconds): twice the history's disorder
BACKFILL_POOL = "ct_backfill"
MINUTE = timedelta(minutes=1)
LIVE_TIMEOUT = 240.0  # seconds until live ingestion has committed its first run
BACKFILL_TIMEOUT = 480.0  # seconds for one backfill (10 runs took ~1 minute on 2 cores)


@dataclass
class Bench:
    """What the module's tests share: the standalone, the log and what was backfilled so far."""

    airflow: Standalone
    log: LocalCTLog
    dag_id: str
    lake: Path
    work: Path
    offset: timedelta  # of the DAG's runs after each minute
    base: datetime  # a whole minute inside the history: the browser's window starts here
    first_index: int  # where live ingestion began
    stamps: list[int]  # log timestamps (ms) of the entries below first_index
    next_index: int = 0  # the watermark's last seen next_index
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)  # backfilled so far

    @property
    def slug(self) -> str:
        return self.log.slug

    def token(self) -> str:
        return self.airflow.token()


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _stamp(log: LocalCTLog, index: int) -> int:
    """The log timestamp (ms) of an entry: the MerkleTreeLeaf's, after version and leaf type."""
    return struct.unpack_from(">Q", log.entry(index)[0], 2)[0]


def _crosses(stamps: list[int], edge_ms: int) -> bool:
    """Whether the log is out of order across `edge_ms`: an entry logged at or after it sits
    just before one logged before it."""
    return any(stamps[i] >= edge_ms > stamps[i + 1] for i in range(len(stamps) - 1))


def _state(airflow: Standalone, slug: str, token: str) -> dict | None:
    """The log's watermark (Variable ct_state__<slug>), None before the first commit."""
    try:
        variable = airflow.api(f"variables/ct_state__{slug}", token)
    except requests.HTTPError as err:
        if err.response is not None and err.response.status_code == 404:
            return None
        raise
    return json.loads(variable["value"])


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    work = tmp_path_factory.mktemp("backfill_ui")
    with metadata_database("ct_e2e_backfill") as database, LogServer() as server:
        log = server.add_log(LOG_NAME, replay=True, history=HISTORY, history_disorder=HISTORY_DISORDER,
                             rate=LIVE_RATE)  # fmt: skip
        history_size = round(HISTORY[0] * 3600 * HISTORY[1])
        settings = {
            "CT_LOG_LIST": str(server.write_log_list(work / "log_list.json")),
            "CT_KAFKA_CONN_ID": "",  # Kafka off
            "CT_LAKE": str(work / "lake"),
            "CT_LOG_LIST_SNAPSHOT": str(work / "log_list_snapshot.json"),
            "CT_START_AT": "latest",
            "CT_BACKFILL_DISORDER": str(BACKFILL_DISORDER),
        }
        dag_id = f"ct_ingest__{log.slug}"
        with start_standalone(work, database, settings, {dag_id}) as airflow:
            try:
                ensure_pool(airflow.env)  # ct_enrichment and ct_backfill, as `make run` does
            except SystemExit as err:
                pytest.fail(f"creating the pools failed: {err}")
            token = airflow.token()
            pool = airflow.api(f"pools/{BACKFILL_POOL}", token)
            assert pool["slots"] >= 1, pool

            # The DAG's runs: each minute at the log's offset, as ctlib.ingest.schedule says.
            offset = offset_for(log.slug, Settings.from_env(airflow.env).schedule)
            airflow.send("PATCH", f"dags/{dag_id}", token, {"is_paused": False})
            dag = airflow.api(f"dags/{dag_id}", token)
            upcoming = _parse(dag["next_dagrun_logical_date"])
            assert upcoming.second == offset.seconds and upcoming.microsecond == 0, (upcoming, offset)

            # Live ingestion from the tip: its first commit sets first_index.
            deadline = time.monotonic() + LIVE_TIMEOUT
            while (state := _state(airflow, log.slug, airflow.token())) is None:
                if airflow.proc.poll() is not None or time.monotonic() > deadline:
                    runs = airflow.api(f"dags/{dag_id}/dagRuns", airflow.token())["dag_runs"]
                    pytest.fail(f"no watermark of {log.slug} within {LIVE_TIMEOUT:.0f}s; runs: "
                                f"{[(r['dag_run_id'], r['state']) for r in runs]}\n{airflow.tail()}")  # fmt: skip
                time.sleep(3.0)
            first_index = state["first_index"]
            assert first_index >= history_size, f"live ingestion began inside the history: {state}"
            stamps = [_stamp(log, i) for i in range(first_index)]

            # The browser's window starts on a whole minute an hour into the history, chosen so
            # that the log is out of order across the edge it shares with the CLI's window.
            start = _at(stamps[0]).replace(second=0, microsecond=0) + 61 * MINUTE
            base = next((start + k * MINUTE for k in range(40)
                         if _crosses(stamps, _ms(start + (k + 10) * MINUTE + offset))), start)  # fmt: skip
            yield Bench(airflow, log, dag_id, work / "lake", work, offset, base, first_index, stamps,
                        next_index=state["next_index"])  # fmt: skip


# --------------------------------------------------------------------------- checks


def _ticks(bench: Bench, start: datetime, end: datetime) -> list[datetime]:
    """The DAG's run times in [start, end], both included (as Airflow's backfill counts them)."""
    tick = start.replace(second=0, microsecond=0) + bench.offset
    if tick < start:
        tick += MINUTE
    ticks = []
    while tick <= end:
        ticks.append(tick)
        tick += MINUTE
    return ticks


def _task_log(bench: Bench, token: str, run_id: str, ti: dict) -> str:
    """The end of a task instance's log, for a failure message (best effort)."""
    try:
        path = (f"dags/{bench.dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/"
                f"{max(ti.get('try_number') or 1, 1)}")  # fmt: skip
        content = bench.airflow.api(path, token, map_index=ti.get("map_index", -1)).get("content")
        return json.dumps(content)[-3000:]
    except Exception as err:
        return f"(no log: {err})"


def _wait_backfill(bench: Bench, backfill_id: int) -> dict:
    deadline = time.monotonic() + BACKFILL_TIMEOUT
    while True:
        token = bench.token()
        backfill = bench.airflow.api(f"backfills/{backfill_id}", token)
        if backfill["completed_at"]:
            return backfill
        if bench.airflow.proc.poll() is not None or time.monotonic() > deadline:
            runs = bench.airflow.api(f"dags/{bench.dag_id}/dagRuns", token, run_type="backfill", limit=100)
            pytest.fail(f"backfill {backfill} not completed within {BACKFILL_TIMEOUT:.0f}s; its runs: "
                        f"{[(r['dag_run_id'], r['state']) for r in runs['dag_runs']]}\n"
                        f"{bench.airflow.tail()}")  # fmt: skip
        time.sleep(3.0)


def _backfill_of(bench: Bench, start: datetime, end: datetime) -> dict:
    """The backfill of the DAG from `start` to `end` (exactly one)."""
    backfills = bench.airflow.api("backfills", bench.token(), dag_id=bench.dag_id, limit=100)["backfills"]
    found = [b for b in backfills if _parse(b["from_date"]) == start and _parse(b["to_date"]) == end]
    assert len(found) == 1, f"backfills of {bench.dag_id} from {start} to {end}: {backfills}"
    return found[0]


def _check_backfill(bench: Bench, backfill: dict) -> tuple[datetime, datetime]:
    """A completed backfill made one run per tick of [from, to], every run succeeded and every
    task instance of them ran in the backfill pool. Returns its window, [first tick, last
    tick + 1 minute), which it adds to the bench's windows."""
    start, end = _parse(backfill["from_date"]), _parse(backfill["to_date"])
    ticks = _ticks(bench, start, end)
    assert ticks, f"no tick in [{start}, {end}]"
    token = bench.token()
    runs = bench.airflow.api(
        f"dags/{bench.dag_id}/dagRuns", token, limit=100, order_by="logical_date",
        logical_date_gte=start.isoformat(), logical_date_lte=end.isoformat(),
    )["dag_runs"]  # fmt: skip
    assert [_parse(r["logical_date"]) for r in runs] == ticks, (
        f"runs of the backfill {start} .. {end}: {[(r['dag_run_id'], r['logical_date']) for r in runs]}"
    )
    for run in runs:
        tis = bench.airflow.api(f"dags/{bench.dag_id}/dagRuns/{run['dag_run_id']}/taskInstances", token)["task_instances"]
        assert run["run_type"] == "backfill", run
        if run["state"] != "success":
            logs = "\n".join(f"{ti['task_id']}[{ti['map_index']}] {ti['state']}: {_task_log(bench, token, run['dag_run_id'], ti)}"
                             for ti in tis if ti["state"] not in ("success", "skipped"))  # fmt: skip
            pytest.fail(f"backfill run {run['dag_run_id']} is {run['state']}:\n{logs}")
        pools = {(ti["task_id"], ti["map_index"]): ti["pool"] for ti in tis}
        assert pools and set(pools.values()) == {BACKFILL_POOL}, f"{run['dag_run_id']}: pools {pools}"
    window = (ticks[0], ticks[-1] + MINUTE)
    bench.windows.append(window)
    return window


def _stored(bench: Bench) -> list[tuple[int, int | None]]:
    """(index, log timestamp in ms) of every row of the log's certs and errors in the lake."""
    rows: list[tuple[int, int | None]] = []
    for table in ("certs", "errors"):
        files = sorted(str(p) for p in (bench.lake / table / f"log={bench.slug}").rglob("*.parquet")
                       if not p.name.startswith("."))  # fmt: skip
        if files:
            rows += duckdb.sql(f"select index, epoch_ms(timestamp) from read_parquet({files}, union_by_name = true)").fetchall()
    return rows


def _check_lake_and_watermark(bench: Bench) -> None:
    """Below first_index the lake holds exactly the entries logged in the windows backfilled
    so far, each once; no index is stored twice; the audit is clean; the watermark moved
    forward only (live ingestion), first_index unchanged."""
    token = bench.token()
    state = _state(bench.airflow, bench.slug, token)
    assert state is not None
    assert state["first_index"] == bench.first_index, f"a backfill moved first_index: {state}"
    assert state["next_index"] >= bench.next_index, f"the watermark went back: {bench.next_index} -> {state}"
    bench.next_index = state["next_index"]

    windows = [(_ms(a), _ms(b)) for a, b in bench.windows]
    expected = sorted((i, ts) for i, ts in enumerate(bench.stamps) if any(a <= ts < b for a, b in windows))
    assert expected, f"no entry logged in {bench.windows}"
    rows = _stored(bench)
    twice = {i: n for i, n in Counter(i for i, _ in rows).items() if n > 1}
    assert not twice, f"indexes stored more than once (index: times): {dict(list(twice.items())[:20])}"
    below = sorted(r for r in rows if r[0] < bench.first_index)
    missing = sorted(set(expected) - set(below))
    extra = sorted(set(below) - set(expected))
    assert below == expected, (
        f"below first_index {bench.first_index} the lake should hold the {len(expected)} entries logged in "
        f"{[(a.isoformat(), b.isoformat()) for a, b in bench.windows]}: {len(missing)} missing "
        f"{[(i, _at(ts).isoformat()) for i, ts in missing[:10]]}, {len(extra)} others "
        f"{[(i, _at(ts).isoformat() if ts else None) for i, ts in extra[:10]]}"
    )

    states = bench.work / "states.json"
    variable = bench.airflow.api(f"variables/ct_state__{bench.slug}", token)
    states.write_text(json.dumps({variable["key"]: variable["value"]}))
    assert_audit_clean(bench.lake, bench.slug, "--state-json", str(states))


# --------------------------------------------------------------------------- tests


def _pick(page: Any, dialog: Any, label: str, moment: datetime) -> None:
    """Set the dialog's date-time field `label` (From, To) in its pop-over picker (UTC)."""
    dialog.get_by_role("group").filter(has=page.get_by_text(label, exact=True)).get_by_test_id("datetime-input").click()
    picker = page.get_by_role("dialog").filter(has_text="UTC").last
    picker.get_by_placeholder("YYYY/MM/DD").fill(f"{moment:%Y/%m/%d}")
    picker.get_by_placeholder("HH:mm").fill(f"{moment:%H:%M}")
    page.keyboard.press("Escape")  # closes the picker, not the dialog
    expect(page.get_by_role("dialog")).to_have_count(1)


def test_backfill_from_the_dialog_stores_exactly_the_entries_logged_in_its_window(bench: Bench, tmp_path: Path) -> None:
    start, end = bench.base, bench.base + 10 * MINUTE  # whole minutes: the dialog's pickers take HH:mm
    runs = len(_ticks(bench, start, end))
    assert runs == 10
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
        page = context.new_page()
        page.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)
        log_in(page, bench.airflow)

        # The DAG's Backfills tab, then Trigger -> Backfill.
        page.goto(f"{bench.airflow.url}/dags/{bench.dag_id}")
        page.get_by_role("link", name="Backfills", exact=True).click()
        expect(page).to_have_url(re.compile(rf"/dags/{bench.dag_id}/backfills$"))
        page.get_by_test_id("trigger-dag-button").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Backfill", exact=True).click()
        expect(dialog.get_by_role("heading", name=re.compile(rf"Run Backfill - +{bench.dag_id}"))).to_be_visible()

        # From and To; the reprocess behaviour and max active runs left as they are.
        _pick(page, dialog, "From", start)
        _pick(page, dialog, "To", end)
        fields = dialog.get_by_test_id("datetime-input")
        expect(fields.nth(0)).to_contain_text(f"{start:%H:%M}")
        expect(fields.nth(1)).to_contain_text(f"{end:%H:%M}")
        expect(dialog.get_by_role("radio", name="Missing Runs")).to_be_checked()
        expect(dialog.get_by_text(f"{runs} runs will be triggered.")).to_be_visible()
        page.screenshot(path=tmp_path / "backfill_dialog.png")
        dialog.get_by_role("button", name="Run Backfill").click()
        expect(page.get_by_role("dialog")).to_have_count(0)

        # The Backfills tab lists it; it does not refresh by itself: reload until it is done.
        cell = f'[data-testid="table-cell-date_from"] time[datetime="{start:%Y-%m-%dT%H:%M:%S}Z"]'
        row = page.get_by_role("row").filter(has=page.locator(cell))
        completed = row.get_by_test_id("table-cell-completed_at").locator("time")
        deadline = time.monotonic() + BACKFILL_TIMEOUT
        while True:
            expect(row).to_have_count(1)
            if completed.count():
                break
            if time.monotonic() > deadline:
                page.screenshot(path=tmp_path / "backfills_tab_unfinished.png")
                pytest.fail(f"the Backfills tab shows no completion within {BACKFILL_TIMEOUT:.0f}s: "
                            f"{row.inner_text()!r}\n{bench.airflow.tail()}")  # fmt: skip
            page.wait_for_timeout(5_000)
            page.reload()
        expect(row.get_by_test_id("table-cell-date_to").locator("time")).to_have_attribute(
            "datetime", f"{end:%Y-%m-%dT%H:%M:%S}Z")  # fmt: skip
        expect(row.get_by_test_id("table-cell-reprocess_behavior")).to_have_text("Missing Runs")
        page.screenshot(path=tmp_path / "backfills_tab_finished.png")
    print(f"screenshots in {tmp_path}")

    window = _check_backfill(bench, _wait_backfill(bench, _backfill_of(bench, start, end)["id"]))
    assert window == (start + bench.offset, end + bench.offset), "10 ticks: [from + offset, to + offset)"
    _check_lake_and_watermark(bench)


def test_backfills_by_cli_and_rest_api_store_each_entry_of_their_windows_once(bench: Bench) -> None:
    # A scheduled run's task instances stay in default_pool: only backfill runs are routed.
    token = bench.token()
    recent = bench.airflow.api(f"dags/{bench.dag_id}/dagRuns", token, order_by="-logical_date", limit=10)["dag_runs"]
    scheduled = [r for r in recent if r["run_type"] == "scheduled"]
    assert scheduled, f"live ingestion has no scheduled run: {recent}"
    tis = bench.airflow.api(f"dags/{bench.dag_id}/dagRuns/{scheduled[0]['dag_run_id']}/taskInstances",
                            token)["task_instances"]  # fmt: skip
    assert {ti["pool"] for ti in tis} == {"default_pool"}, tis

    # The CLI: the 10 minutes after the browser's window, given as tick times (both included).
    start = bench.base + 10 * MINUTE + bench.offset
    end = start + 9 * MINUTE
    done = bench.airflow.cli("backfill", "create", "--dag-id", bench.dag_id,
                                 "--from-date", start.isoformat(), "--to-date", end.isoformat())  # fmt: skip
    assert done.returncode == 0, f"airflow backfill create failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    cli = _check_backfill(bench, _wait_backfill(bench, _backfill_of(bench, start, end)["id"]))
    assert cli == (start, end + MINUTE)

    # REST: 5 minutes further on, given off the ticks, with up to 3 runs at once.
    start = bench.base + 40 * MINUTE + bench.offset - timedelta(seconds=30)
    end = bench.base + 45 * MINUTE
    created = bench.airflow.send("POST", "backfills", bench.token(), {
        "dag_id": bench.dag_id, "from_date": start.isoformat(), "to_date": end.isoformat(),
        "max_active_runs": 3, "reprocess_behavior": "none",
    })  # fmt: skip
    rest = _check_backfill(bench, _wait_backfill(bench, created["id"]))
    assert rest == (bench.base + 40 * MINUTE + bench.offset, bench.base + 45 * MINUTE + bench.offset)

    # Every window backfilled in this module (the browser's too, when it ran) at once.
    _check_lake_and_watermark(bench)
    if bench.windows[0][1] == cli[0]:  # the browser's window and the CLI's meet here
        edge = _ms(cli[0])
        assert _crosses(bench.stamps, edge), "the chosen edge should have out-of-order entries across it"
