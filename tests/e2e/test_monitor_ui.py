"""The CT monitor page (`/ct/`) as an operator sees it: the stack of `make demo`
(ctlib.localsvc.run.Orchestrator: three local CT logs, one of them tiled, the tansu broker,
`airflow standalone` with the project's plugins), isolated in tmp_path with its own database,
lake and free ports, the logs ingested from index 0 (no history), then headless Chromium
(Debian's, through Playwright):

- without a credential, the page's API answers 401 (the app authenticates every route);
- once every demo log has committed entries (`/ct/api/logs` with a JWT from /auth/token),
  the browser logs in, opens "CT monitor" from the UI's navigation, sees the three demo logs
  in the table with non-zero tree size, watermark and entries, and the entries-per-minute
  chart drawn (its canvas has coloured pixels on many rows: a line that rises, not a flat
  zero line), over 24 hours and over the last hour;
- a screenshot goes to tmp_path/ct_monitor.png, and also to docs/ct_monitor.png when
  CT_SCREENSHOT_DOCS=1 (the README's picture; then the test first waits, up to
  DOCS_DEADLINE, for alerts, watch matches and two health checks, so every part of the
  page has something to show).

About 2.5 minutes (4 at most); everything started here is stopped on exit, also on failure.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from ctlib.localsvc import free_port
from ctlib.localsvc.run import Orchestrator
from ctlib.testing.airflow_api import AirflowApi
from tests.paths import PROJECT_ROOT
from tests.support.standalone import chromium, demo_environment, log_in, metadata_database

pytestmark = pytest.mark.e2e

NAV = "CT monitor"  # the plugin's external view, as the UI's navigation names it
LOGS = 3
WATCHED_EVERY = 60
DEADLINE = 180.0  # seconds from the UI answering until every demo log has committed entries (~50 on a quiet machine)
DOCS_DEADLINE = 720.0  # with CT_SCREENSHOT_DOCS=1: until alerts, watch matches and 2 health checks
DOCS_SCREENSHOT = PROJECT_ROOT / "docs" / "ct_monitor.png"
VIEWPORT = {"width": 1400, "height": 1700}  # tall enough for the whole page in the UI's frame

# Pixels of a canvas that are clearly coloured (a series), not grey (axes, grid, text): the
# number of canvas rows holding one. A line flat at zero covers a few rows only.
COLOURED_ROWS = """canvas => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const rows = new Set();
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 128 && Math.max(r, g, b) - Math.min(r, g, b) > 80) rows.add(Math.floor(i / 4 / canvas.width));
  }
  return rows.size;
}"""


def wait_for(what: str, deadline: float, check, orch: Orchestrator, output: Path) -> Any:
    """`check()` until it returns something true; fails with the stack's output tail after
    `deadline` seconds."""
    until = time.monotonic() + deadline
    last = None
    while True:
        try:
            last = check()
        except requests.RequestException as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > until:
            tail = output.read_text(errors="replace")[-3000:] if output.exists() else ""
            pytest.fail(f"{what}: not within {deadline:.0f}s (last: {last})\n--- airflow ---\n{tail}")
        assert orch.airflow is not None and orch.airflow.poll() is None, "airflow standalone exited"
        time.sleep(5.0)


def open_from_nav(page: Any) -> tuple[Any, Any]:
    """Click "CT monitor" in the UI's navigation; (the page's root to look in: the UI's
    iframe or the new tab, the browser page holding it)."""
    entry = page.get_by_role("link", name=NAV).or_(page.get_by_role("button", name=NAV))
    try:
        expect(entry.first).to_be_visible(timeout=15_000)
    except AssertionError:  # in a menu: Airflow groups plugins' views under "Plugins" (or their category's)
        for menu in ("Plugins", "Browse", "Admin", "Docs"):
            trigger = page.get_by_role("button", name=menu, exact=True)
            if trigger.count() and trigger.first.is_visible():
                trigger.first.click()
                if entry.first.is_visible():
                    break
                page.keyboard.press("Escape")
        expect(entry.first).to_be_visible()
    element = entry.first
    tag, href, target = element.evaluate("e => [e.tagName, e.getAttribute('href'), e.getAttribute('target')]")
    if tag != "A":
        pytest.fail(f"the navigation's {NAV!r} is a <{tag.lower()} href={href!r}>, which does nothing when clicked: "
                    "Airflow 3.3 renders a top-level nav external view without `url_route` that way; give "
                    "the plugin's external view a url_route (shown in the UI's frame) or a category (a menu link)")
    if target == "_blank":
        with page.context.expect_page() as opened:
            element.click()
        tab = opened.value
        tab.set_viewport_size(VIEWPORT)
        expect(tab).to_have_url(re.compile(r"/ct/$"))
        return tab, tab
    element.click()
    expect(page).to_have_url(re.compile(r"/plugin/"))
    return page.frame_locator(f'iframe[title="{NAV}"]'), page


def number(text: str) -> int:
    return int(re.sub(r"[^0-9]", "", text) or "0")


def test_ct_monitor_page_from_the_navigation(tmp_path: Path) -> None:
    docs = os.environ.get("CT_SCREENSHOT_DOCS", "").strip() in ("1", "true", "yes")
    output = tmp_path / "airflow.log"
    started = time.monotonic()
    with metadata_database("ct_e2e_monitor") as database:
        env = demo_environment(tmp_path / "home", database)
        orch = Orchestrator(
            demo=True, demo_logs=LOGS, ui_port=free_port(), run_dir=tmp_path / "run", env=env,
            lake=tmp_path / "lake", airflow_output=output,
            # From index 0, no history: the first run of each log commits what it has.
            demo_history_hours=0, demo_start_at="beginning",
            # A certificate for the watched domain every 12 s a log (the demo's: every minute).
            watched_every=WATCHED_EVERY,
        )  # fmt: skip
        try:
            orch.start()
            assert orch.wait_until_up(180), "airflow standalone did not come up"
            assert orch.login is not None
            url = orch.api_url()
            assert requests.get(f"{url}/ct/api/logs", timeout=30).status_code == 401  # authenticated routes

            def ingested() -> list[dict] | None:
                logs = AirflowApi(url, orch.login).fetch("ct/api/logs")["logs"]  # type: ignore[arg-type]
                done = len(logs) == LOGS and all(log["entries_total"] > 0 for log in logs)
                return logs if done else None

            logs = wait_for("every demo log with committed entries", DEADLINE, ingested, orch, output)
            slugs = [log["slug"] for log in logs]
            if docs:
                def rich() -> bool:
                    api = AirflowApi(url, orch.login)  # type: ignore[arg-type]
                    latest, series = api.fetch("ct/api/latest"), api.fetch("ct/api/series?hours=1")
                    return bool(latest["alerts"] and latest["watch_matches"] and len(series["freshness_lag"]["t"]) >= 2)

                wait_for("alerts, watch matches and two health checks", DOCS_DEADLINE, rich, orch, output)
            print(f"ingested {time.monotonic() - started:.0f}s after start: {[log['entries_total'] for log in logs]}")

            with chromium() as browser:
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(30_000)
                expect.set_options(timeout=30_000)
                log_in(page, SimpleNamespace(url=url, user=orch.login[0], password=orch.login[1]))
                monitor, shown = open_from_nav(page)

                rows = monitor.locator("#logs tbody tr[data-slug]")
                expect(rows).to_have_count(LOGS)
                for slug in slugs:
                    row = monitor.locator(f'#logs tbody tr[data-slug="{slug}"]')
                    expect(row).to_contain_text(slug)
                    for column in ("tree", "watermark", "entries"):
                        cell = row.locator(f'td[data-col="{column}"]')
                        expect(cell).to_have_text(re.compile(r"^[1-9][0-9,]*$"))
                    assert row.get_attribute("data-status") in ("ok", "behind", "stalled", "failing")

                def drawn(hours: str) -> int:
                    chart = monitor.locator("#chart-entries")
                    expect(chart).to_have_attribute("data-drawn", "true")
                    expect(chart.locator("canvas")).to_have_count(1)
                    coloured = chart.locator("canvas").evaluate(COLOURED_ROWS)
                    assert coloured >= 10, f"{hours}: the entries chart has coloured pixels on {coloured} rows only"
                    return coloured

                drawn("24 h")
                monitor.get_by_role("button", name="1 h").click()
                expect(monitor.locator("#range-label")).to_have_text("hour")
                expect(monitor.locator("#chart-entries")).to_have_attribute("data-drawn", "true")
                time.sleep(1.0)  # the new data drawn
                drawn("1 h")
                if docs:
                    expect(monitor.locator("#alerts tbody tr:not(.empty)").first).to_be_visible()
                    expect(monitor.locator("#watch tbody tr:not(.empty)").first).to_be_visible()
                screenshot = tmp_path / "ct_monitor.png"
                shown.screenshot(path=screenshot)
        finally:
            orch.stop()
    assert orch.airflow is not None and orch.airflow.poll() is not None
    if docs:
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)
        print(f"screenshot copied to {DOCS_SCREENSHOT.relative_to(PROJECT_ROOT)}")
    print(f"done in {time.monotonic() - started:.0f}s; screenshot {screenshot}")
