"""ctlib.airflow.monitor.page: the charts' series on a temporary lake (certs files with known
names and modification times, a day merged by compaction with its manifest while the range
files it absorbed are still there, merged files no manifest names, health checks, alerts),
the latest alerts and watch matches, the same on a local and an S3 lake, and the routes (the
page, its static files, no way out of static/) mounted in a bare FastAPI app (the real app
adds Airflow's authentication)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ctlib.airflow.monitor import page
from ctlib.lake import layout
from ctlib.lake.files import Lake, write_file
from ctlib.lake.manifest import Manifest, write_manifest

NOW = datetime(2026, 12, 5, 10, 30, 20, tzinfo=UTC)
TODAY, YESTERDAY = NOW.date(), NOW.date() - timedelta(days=1)
FIRST = datetime(2026, 12, 4, 10, 31, tzinfo=UTC)  # the first of the 24 h window's 1440 minutes


def at(text: str) -> datetime:
    """`MM-DD HH:MM:SS` of 2026, UTC."""
    return datetime.strptime(f"2026-{text}", "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def minute(text: str) -> int:
    """Index in the window of the minute holding `MM-DD HH:MM:SS`."""
    return int((at(text) - FIRST).total_seconds()) // 60


def touch(path: Path, moment: datetime) -> None:
    ns = int(moment.timestamp() * 1e9)
    os.utime(path, ns=(ns, ns))


def certs_file(lake: Path, slug: str, day: str, start: int, end: int, written: str, *, merged: int = 0) -> Path:
    """An (empty) certs file of [start, end) in `slug`'s partition of 2026-`day`, modified at
    `written`; with `merged` (a generation), compaction's merged file of that range instead
    (live only once its partition's manifest names it: `manifest`)."""
    directory = lake / layout.partition_dir("", layout.CERTS, slug, at(f"{day} 00:00:00").date())
    directory.mkdir(parents=True, exist_ok=True)
    name = layout.merged_file_name(start, end, merged) if merged else layout.range_file_name(start, end)
    path = directory / name
    pq.write_table(layout.CERTS_SCHEMA.empty_table(), path)
    touch(path, at(written))
    return path


def manifest(lake: Path, slug: str, day: str, merged: Path, *absorbed: Path) -> None:
    """The manifest of `slug`'s certs partition of 2026-`day`: `merged` is live, `absorbed` not."""
    first, end, generation = layout.parse_merged(merged.name) or (0, 0, 0)
    write_manifest(Lake.open(str(lake)), str(merged.parent),
                   Manifest(generation=generation, file=merged.name, rows=end - first, first=first, end=end,
                            absorbed=frozenset(p.name for p in absorbed)))


def health_file(lake: Path, checked: str, rows: list[tuple[str, int | None, float | None]]) -> None:
    """One ct_health check at 2026-`checked`: (slug, next_index, lag_seconds) per log."""
    checked_at = at(checked)
    table = pa.Table.from_pylist([
        {"checked_at": checked_at, "log_slug": slug, "log_id": "aWQ=", "status": "ok", "failing": False,
         "next_index": next_index, "lag_seconds": lag, "errors": 0, "incidents": 0, "detail": ""}
        for slug, next_index, lag in rows
    ], schema=layout.HEALTH_SCHEMA)
    directory = lake / layout.day_dir("", layout.HEALTH, checked_at.date())
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / layout.health_file_name(checked_at))


def alerts_file(lake: Path, slug: str, day: str, name: str, rows: list[dict]) -> None:
    base = {"log_id": "aWQ=", "log_slug": slug, "index": 1, "timestamp": at("12-05 00:00:00"),
            "cert_sha256": "ab" * 32, "entry_type": "precert", "issuer_org": "Let's Encrypt",
            "name": "paypal.com.login.example", "registered_domain": "login.example", "brand": "paypal",
            "score": 90.0, "alert": True, "rules": ["brand_in_subdomain=70", "keyword=20"]}
    directory = lake / layout.partition_dir("", layout.ALERTS, slug, at(f"{day} 00:00:00").date())
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([base | row for row in rows], schema=layout.SCORES_SCHEMA)
    pq.write_table(table, directory / name)


@pytest.fixture(autouse=True)
def fresh_caches():
    page.clear_cache()
    yield
    page.clear_cache()


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    """certs of log_a (files of today and yesterday; one of the day before, not read; a merged
    file no manifest names) and log_b (yesterday merged by compaction just after midnight, its
    absorbed files still there, a later merge whose manifest never came, then a file of
    today), health checks every 5 minutes after midnight, and alerts."""
    root = tmp_path / "lake"
    # log_a: entries by the minute each file was written.
    certs_file(root, "log_a", "12-05", 0, 100, "12-05 10:00:30")
    certs_file(root, "log_a", "12-05", 100, 250, "12-05 10:00:59")
    certs_file(root, "log_a", "12-05", 250, 260, "12-05 10:29:00")
    certs_file(root, "log_a", "12-04", 5000, 5300, "12-04 23:59:10")
    certs_file(root, "log_a", "12-04", 5300, 5320, "12-05 00:00:40")  # late entries of yesterday: not merged
    certs_file(root, "log_a", "12-05", 5300, 5320, "12-05 00:00:40")  # the same range's entries of today: once
    certs_file(root, "log_a", "12-04", 4000, 5000, "12-04 10:00:00")  # before the window
    certs_file(root, "log_a", "12-03", 3000, 4000, "12-05 09:00:00")  # a day outside the window: not listed
    certs_file(root, "log_a", "12-05", 0, 260, "12-05 10:20:00", merged=1)  # no manifest: not live, not a merge
    # log_b: yesterday merged at 00:10 (the range files it absorbed are not live: not counted
    # again), a next merge at 00:40 that stopped before its manifest (not live), today's file.
    absorbed = [certs_file(root, "log_b", "12-04", 0, 600, "12-04 12:00:00"),
                certs_file(root, "log_b", "12-04", 600, 1000, "12-04 23:00:00")]
    manifest(root, "log_b", "12-04", certs_file(root, "log_b", "12-04", 0, 1000, "12-05 00:10:00", merged=1), *absorbed)
    certs_file(root, "log_b", "12-04", 0, 1000, "12-05 00:40:00", merged=2)
    certs_file(root, "log_b", "12-05", 1000, 1060, "12-05 00:12:30")
    # ct_health every 5 minutes (log_c has not started).
    health_file(root, "12-04 10:00:00", [("log_a", 4000, 1.0), ("log_b", 500, 1.0)])  # before the window
    health_file(root, "12-05 00:00:00", [("log_a", 5300, 5.0), ("log_b", 950, 12.5), ("log_c", None, None)])
    health_file(root, "12-05 00:05:00", [("log_a", 5320, 0.0), ("log_b", 1000, 0.0)])
    health_file(root, "12-05 00:10:00", [("log_a", 5320, 0.0), ("log_b", 1000, 3.0)])
    health_file(root, "12-05 00:15:00", [("log_b", 1060, 0.0)])
    health_file(root, "12-05 00:20:00", [("log_b", 1060, 0.0)])
    health_file(root, "12-05 00:25:00", [("log_b", 1067, 30.0)])
    health_file(root, "12-05 10:35:00", [("log_b", 2000, 0.0)])  # after now
    # alerts: by scored_at.
    alerts_file(root, "log_a", "12-05", "a.parquet", [
        {"scored_at": at("12-05 10:10:00"), "name": "newest.example", "score": 80.0, "index": 7},
        {"scored_at": at("12-05 10:59:59") - timedelta(hours=1), "name": "second.example", "brand": None,
         "rules": ["fake_tld=35", "keyword=30"], "score": 65.0},
        {"scored_at": at("12-05 00:00:00")},
    ])
    alerts_file(root, "log_b", "12-04", "b.parquet", [
        {"scored_at": at("12-04 10:31:00")},  # the window's first minute
        {"scored_at": at("12-04 10:30:59")},  # just before it
        {"scored_at": at("12-04 23:00:00")},
    ])
    alerts_file(root, "log_b", "12-03", "c.parquet", [{"scored_at": at("12-05 01:00:00")}])  # not read
    return root


# --------------------------------------------------------------------------- series


def test_minutes_of_the_window():
    minutes = page.minute_buckets(NOW, 24)
    assert len(minutes) == 1440
    assert minutes[0] == FIRST.timestamp() and minutes[-1] == at("12-05 10:30:00").timestamp()
    assert page.days_between(FIRST, NOW) == [YESTERDAY, TODAY]


def test_entries_per_minute_from_file_names_and_mtimes(lake: Path):
    series = page.compute_series(Lake.open(str(lake)), NOW, 24)
    entries = series["entries_per_minute"]
    assert entries["t"] == page.minute_buckets(NOW, 24)
    assert set(entries["logs"]) == {"log_a", "log_b"}
    log_a = {n: v for n, v in enumerate(entries["logs"]["log_a"]) if v}
    assert log_a == {
        minute("12-05 10:00:00"): 250,  # two files in one minute
        minute("12-05 10:29:00"): 10,
        minute("12-04 23:59:10"): 300,
        minute("12-05 00:00:40"): 20,  # written after its day ended, but no merge
    }


def test_a_merged_day_is_filled_in_from_health_checks(lake: Path):
    series = page.compute_series(Lake.open(str(lake)), NOW, 24)
    assert series["entries_per_minute"]["from_health"] == ["log_b"]
    log_b = {n: v for n, v in enumerate(series["entries_per_minute"]["logs"]["log_b"]) if v}
    expected = {minute(f"12-05 00:0{m}:00"): 10 for m in range(1, 6)}  # 950 -> 1000 over 00:01..00:05
    expected[minute("12-05 00:12:30")] = 60  # today's file; 1000 -> 1060 adds nothing more
    expected |= dict(zip((minute(f"12-05 00:2{m}:00") for m in range(1, 6)), (2, 2, 1, 1, 1)))  # 7 over 5 minutes
    assert log_b == expected  # nothing at 00:10, the merge's mtime


def test_entries_per_minute_pure_edges():
    minutes = [0, 60, 120, 180]
    files = [page.RangeFile("x", TODAY, 0, 5, 59.9, "p", 1), page.RangeFile("x", TODAY, 5, 9, 240.0, "q", 1),
             page.RangeFile("y", TODAY, 0, 100, 61.0, "m", 1)]
    health = [page.HealthPoint(70.0, "y", 0, 0.0), page.HealthPoint(100.0, "y", 3, 0.0),  # one minute: all in it
              page.HealthPoint(130.0, "y", 1, 0.0),  # watermark went back: nothing
              page.HealthPoint(200.0, "y", 9, 0.0)]
    series, filled = page.entries_per_minute(files, lambda f: f.path == "m", health, minutes)
    assert series == {"x": [5, 0, 0, 0], "y": [0, 3, 0, 8]}  # x's second file is after the window
    assert filled == ["y"]


def test_freshness_lag_from_health_rows_of_the_window(lake: Path):
    lag = page.compute_series(Lake.open(str(lake)), NOW, 24)["freshness_lag"]
    checks = ["00:00:00", "00:05:00", "00:10:00", "00:15:00", "00:20:00", "00:25:00"]
    assert lag["t"] == [int(at(f"12-05 {c}").timestamp()) for c in checks]
    assert lag["logs"] == {
        "log_a": [5.0, 0.0, 0.0, None, None, None],
        "log_b": [12.5, 0.0, 3.0, 0.0, 0.0, 30.0],
        "log_c": [None, None, None, None, None, None],
    }


def test_alerts_per_hour(lake: Path):
    alerts = page.compute_series(Lake.open(str(lake)), NOW, 24)["alerts_per_hour"]
    hours = [at("12-04 10:00:00") + timedelta(hours=n) for n in range(25)]
    assert alerts["t"] == [int(h.timestamp()) for h in hours]
    counts = {hours[n].strftime("%d %H"): v for n, v in enumerate(alerts["alerts"]) if v}
    assert counts == {"04 10": 1, "04 23": 1, "05 00": 1, "05 09": 1, "05 10": 1}
    assert sum(alerts["alerts"]) == 5


def test_series_of_an_empty_lake(tmp_path: Path):
    series = page.compute_series(Lake.open(str(tmp_path / "none")), NOW, 2)
    assert series["entries_per_minute"]["logs"] == {} and len(series["entries_per_minute"]["t"]) == 120
    assert series["freshness_lag"] == {"t": [], "logs": {}}
    assert sum(series["alerts_per_hour"]["alerts"]) == 0


# --------------------------------------------------------------------------- latest


def watch_row(tbs: str, item: str, matched: str, **extra) -> dict:
    return {"watch_item": item, "tbs_sha256": tbs, "names": [f"www{item}"], "cert_sha256": "cd" * 32,
            "precert_sha256": None, "entry_type": "precert", "log_slug": "log_a", "index": 3,
            "timestamp": at(matched), "issuer": "CN=Test CA", "not_before": at("12-05 00:00:00"),
            "not_after": at("12-05 00:00:00") + timedelta(days=90), "crtsh": "https://crt.sh/?q=" + "cd" * 32,
            "run_id": "r", "matched_at": at(matched), "updated_at": at(matched)} | extra


def test_latest_alerts_and_watch_matches(lake: Path):
    bucket = lake / layout.WATCH_MATCHES
    bucket.mkdir()
    rows = {"aa": [watch_row("aa11", ".acme.example", "12-05 09:00:00")],
            "bb": [watch_row("bb22", ".acme.example", "12-05 10:00:00"), watch_row("bb22", ".other.example", "12-04 08:00:00")]}
    for prefix, items in rows.items():
        pq.write_table(pa.Table.from_pylist(items, schema=layout.WATCH_MATCHES_SCHEMA), bucket / f"{prefix}.parquet")

    latest = page.compute_latest(Lake.open(str(lake)), NOW, 2)
    alerts = latest["alerts"]
    assert [a["name"] for a in alerts] == ["newest.example", "second.example"]
    assert alerts[0]["rules"] == ["brand_in_subdomain=70", "keyword=20"]
    assert alerts[0]["why"] == "score 80 = brand paypal: brand_in_subdomain=70, keyword=20"
    assert alerts[1]["why"] == "score 65 = fake_tld=35, keyword=30"
    assert alerts[0]["scored_at"] == "2026-12-05T10:10:00Z" and alerts[0]["index"] == 7
    assert alerts[0]["crtsh"] == "https://crt.sh/?q=" + "ab" * 32

    matches = latest["watch_matches"]
    assert [(m["watch_item"], m["matched_at"]) for m in matches] == [
        (".acme.example", "2026-12-05T10:00:00Z"), (".acme.example", "2026-12-05T09:00:00Z")]
    assert matches[0]["names"] == ["www.acme.example"] and matches[0]["issuer"] == "CN=Test CA"
    assert matches[0]["why"] == "watch item .acme.example covers www.acme.example"
    assert matches[0]["crtsh"].startswith("https://crt.sh/?q=")
    assert "tbs_sha256" not in matches[0]


def test_latest_of_an_empty_lake(tmp_path: Path):
    latest = page.compute_latest(Lake.open(str(tmp_path)), NOW)
    assert latest["alerts"] == [] and latest["watch_matches"] == []


# --------------------------------------------------------------------------- routes


@pytest.fixture
def client(lake: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("CT_LAKE", str(lake))
    monkeypatch.setattr(page, "now", lambda: NOW)
    app = FastAPI()
    app.include_router(page.router)
    return TestClient(app)


def test_page_and_its_static_files_use_relative_urls(client: TestClient):
    answer = client.get("/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]*)"', answer.text)
    assert {"static/monitor.js", "static/monitor.css", "static/uplot/uPlot.iife.min.js"} <= set(urls)
    assert all(not u.startswith("/") and "://" not in u for u in urls), urls  # under /ct/, offline
    for url in urls:
        if url.startswith("static/"):
            assert client.get("/" + url).status_code == 200, url
    js = client.get("/static/monitor.js")
    assert js.headers["content-type"].startswith("text/javascript")
    assert "://" not in js.text.replace("https://crt.sh/", "")  # no other host
    assert client.get("/static/uplot/LICENSE").text.startswith("The MIT License")
    again = client.get("/static/monitor.js", headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 304 and not again.content  # the browser's copy is current


@pytest.mark.parametrize("path", ["../page.py", "..%2fpage.py", "%2e%2e/page.py", "uplot/../../page.py",
                                  "%2fetc%2fpasswd", "", "uplot", "missing.js"])
def test_static_refuses_paths_outside_static(client: TestClient, path: str):
    assert client.get(f"/static/{path}").status_code == 404


def test_static_file_resolution():
    assert page.static_file("monitor.js") == page.STATIC_DIR.resolve() / "monitor.js"
    for path in ("../page.py", "../../monitor/page.py", "/etc/passwd", "uplot/../../__init__.py", ".", ""):
        assert page.static_file(path) is None, path


def test_api_series_and_latest_read_the_configured_lake(client: TestClient, lake: Path):
    series = client.get("/api/series", params={"hours": 2})
    assert series.status_code == 200 and series.headers["cache-control"] == "no-store"
    body = series.json()
    assert body["hours"] == 2 and len(body["entries_per_minute"]["t"]) == 120
    assert set(body["entries_per_minute"]["logs"]) == {"log_a", "log_b"}
    assert client.get("/api/series", params={"hours": 0}).status_code == 422
    assert client.get("/api/series", params={"hours": 73}).status_code == 422
    latest = client.get("/api/latest").json()
    assert {"generated_at", "alerts", "watch_matches"} <= set(latest)


def test_api_logs_is_the_snapshots_as_json(client: TestClient, monkeypatch: pytest.MonkeyPatch):
    from ctlib.airflow.monitor import snapshot

    one = snapshot.LogSnapshot("log_a", "Log A", "Op", "tiled", 120, 100, 20, 12.5, at("12-05 10:00:00"),
                               100, 1, 0, "ok")
    monkeypatch.setattr(snapshot, "log_snapshots", lambda settings=None, **_: [one])
    body = client.get("/api/logs").json()
    assert body["logs"] == [{
        "slug": "log_a", "description": "Log A", "operator": "Op", "kind": "tiled", "tree_size": 120,
        "next_index": 100, "backlog": 20, "freshness_lag_seconds": 12.5, "last_success": "2026-12-05T10:00:00Z",
        "entries_total": 100, "errors_total": 1, "incidents_total": 0, "status": "ok",
    }]


# --------------------------------------------------------------------------- files read once


def test_a_file_is_read_again_only_when_its_version_changes(lake: Path, monkeypatch: pytest.MonkeyPatch):
    reads: list[str] = []
    real = page._read

    def counting(lake_: Lake, file: page.LakeFile, columns):
        reads.append(file.name)
        return real(lake_, file, columns)

    monkeypatch.setattr(page, "_read", counting)
    handle = Lake.open(str(lake))
    first = page.compute_series(handle, NOW, 24)
    assert sorted(n for n in reads if not n[0].isdigit()) == ["a.parquet", "b.parquet"]  # alerts files
    assert len([n for n in reads if n[0].isdigit()]) == 6  # the window's health checks
    reads.clear()
    assert page.compute_series(handle, NOW, 24) == first and reads == []
    alerts = lake / layout.partition_dir("", layout.ALERTS, "log_a", TODAY) / "a.parquet"
    alerts_file(lake, "log_a", "12-05", "a.parquet", [{"scored_at": at("12-05 10:20:00")}])  # rewritten
    touch(alerts, at("12-05 10:20:01"))
    again = page.compute_series(handle, NOW, 24)
    assert reads == ["a.parquet"]
    assert sum(again["alerts_per_hour"]["alerts"]) == 3  # its 3 rows became 1


def test_latest_alerts_read_the_newest_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "lake"
    for n in range(5):  # one file a minute, its alert scored a second before it was written
        alerts_file(root, "log_a", "12-05", f"{n}.parquet", [{"scored_at": at(f"12-05 10:0{n}:00"), "name": f"n{n}.example"}])
        touch(root / layout.partition_dir("", layout.ALERTS, "log_a", TODAY) / f"{n}.parquet", at(f"12-05 10:0{n}:01"))
    reads: list[str] = []
    real = page._read
    monkeypatch.setattr(page, "_read", lambda lake, file, columns: reads.append(file.name) or real(lake, file, columns))
    latest = page.latest_alerts(Lake.open(str(root)), NOW, 2)
    assert [a["name"] for a in latest] == ["n4.example", "n3.example"]
    assert reads == ["4.parquet", "3.parquet"]  # 2.parquet was written before 10:03:00: not read


def test_a_lake_on_another_filesystem_reads_the_same(lake: Path):
    """Everything goes through the Lake's filesystem and layout: a lake rooted at '' of a
    filesystem that is not the local one (as an object store's) gives the same answers."""
    import pyarrow.fs as pafs

    local = page.compute_series(Lake.open(str(lake)), NOW, 24)
    page.clear_cache()
    elsewhere = Lake(pafs.SubTreeFileSystem(str(lake), pafs.LocalFileSystem()), "")
    assert page.compute_series(elsewhere, NOW, 24) == local
    assert [a["name"] for a in page.compute_latest(elsewhere, NOW, 3)["alerts"]] == [
        "newest.example", "second.example", "paypal.com.login.example"]


def test_series_and_latest_on_a_local_and_an_s3_lake(lake_location: str):
    """Written through the lake's filesystem (on S3 a file's mtime is when it was put: now):
    every live certs file counts once, a compacted day's absorbed range files and a merged
    file no manifest names do not, the merged day is filled in from health rows."""
    lake = Lake.open(lake_location)
    written = datetime.now(UTC)
    today = written.date()

    def certs(slug: str, name: str) -> str:
        directory = layout.partition_dir(lake.root, layout.CERTS, slug, today)
        return write_file(lake, directory, name, layout.CERTS_SCHEMA.empty_table())

    certs("log_a", layout.range_file_name(0, 100))
    certs("log_a", layout.range_file_name(100, 250))
    certs("log_a", layout.merged_file_name(0, 250, 1))  # a compaction that stopped before its manifest
    absorbed = [layout.range_file_name(0, 600), layout.range_file_name(600, 1000)]
    for name in absorbed:
        certs("log_b", name)
    merged = layout.merged_file_name(0, 1000, 1)
    certs("log_b", merged)
    write_manifest(lake, layout.partition_dir(lake.root, layout.CERTS, "log_b", today),
                   Manifest(generation=1, file=merged, rows=1000, first=0, end=1000, absorbed=frozenset(absorbed)))
    certs("log_b", layout.merged_file_name(0, 1000, 2))  # the next merge, its manifest never came
    certs("log_b", layout.range_file_name(1000, 1060))  # written after the merge: live beside it
    checks = [written - timedelta(minutes=20), written - timedelta(minutes=10)]
    for checked, (a, b) in zip(checks, [(0, 950), (250, 1000)]):
        table = pa.Table.from_pylist([
            {"checked_at": checked, "log_slug": slug, "log_id": "aWQ=", "status": "ok", "failing": False,
             "next_index": next_index, "lag_seconds": 2.0, "errors": 0, "incidents": 0, "detail": ""}
            for slug, next_index in (("log_a", a), ("log_b", b))], schema=layout.HEALTH_SCHEMA)
        write_file(lake, layout.day_dir(lake.root, layout.HEALTH, checked.date()), layout.health_file_name(checked),
                   table)
    base = {"log_id": "aWQ=", "log_slug": "log_a", "index": 1, "timestamp": written, "cert_sha256": "ab" * 32,
            "entry_type": "precert", "issuer_org": None, "registered_domain": "x.example", "brand": None,
            "score": 70.0, "alert": True, "rules": ["keyword=70"]}
    alerts = pa.Table.from_pylist([base | {"name": f"n{n}.x.example", "scored_at": written - timedelta(minutes=n)}
                                   for n in (3, 4)], schema=layout.SCORES_SCHEMA)
    write_file(lake, layout.partition_dir(lake.root, layout.ALERTS, "log_a", today), "a.parquet", alerts)

    now = datetime.now(UTC) + timedelta(seconds=1)  # after every file's mtime
    series = page.compute_series(lake, now, 2)
    entries = series["entries_per_minute"]
    assert entries["from_health"] == ["log_b"]  # log_a's merged file is not live: not a merge
    assert {slug: sum(values) for slug, values in entries["logs"].items()} == {
        "log_a": 250,  # its two range files, the orphan merge not
        "log_b": 60 + 50,  # its live range file; 950 -> 1000 between the checks, from health
    }
    assert series["freshness_lag"]["t"] == [int(c.timestamp() * 1000) / 1000 for c in checks]
    assert series["freshness_lag"]["logs"] == {"log_a": [2.0, 2.0], "log_b": [2.0, 2.0]}
    assert sum(series["alerts_per_hour"]["alerts"]) == 2
    latest = page.compute_latest(lake, now, 5)
    assert [a["name"] for a in latest["alerts"]] == ["n3.x.example", "n4.x.example"]
    assert latest["watch_matches"] == []
