"""The CT monitor page, `/ct/` in the Airflow UI (plugins/ct_monitor.py mounts the app of
ctlib.airflow.monitor.app, which includes `router` behind Airflow's authentication).

Routes, relative to the app's mount (`/ct`); the page uses relative URLs only, so it works
under any mount point and in the UI's iframe:

* `GET /`: the page (static/index.html; its script and styles are static files too).
* `GET /static/{path}`: a file under static/ (monitor.js, monitor.css, the vendored uPlot);
  a path that leaves static/ (`..`, an absolute path, a symbolic link out) is a 404.
* `GET /api/logs`: `{"generated_at", "logs": [one object per LogSnapshot field]}`, the
  monitored logs in list order (ctlib.airflow.monitor.snapshot), datetimes as ISO-8601 UTC.
* `GET /api/series?hours=24` (1..72): the charts' data, see `compute_series`.
* `GET /api/latest?limit=20` (1..100): the newest alerts and watch matches with what
  explains them, see `compute_latest`.

Data for the charts comes from the lake through ctlib.lake (a `Lake` and its layout), so
a local lake and a pyarrow filesystem URI (s3://...) are read the same way. A partition's
files are its live files (ctlib.lake.manifest: one listing, and its manifest when it has
one): a compacted day's merged file once its manifest names it, never the range files that
manifest absorbed nor a merged file no manifest names, so no entry is counted twice.

* entries ingested per minute per log: from the listing of the `certs` partitions of the
  window's days. Each file's name is its index range and its modification time says when
  ingest wrote it, so `end - start` goes to the minute of its mtime: no Parquet read. A file
  that compaction wrote (a merged file: `layout.parse_merged` of its name) is left out, and
  the log's entries the listing does not account for come from the health rows instead:
  between two checks, the watermark's advance (`next_index`) less what the listed files
  hold, spread evenly over the minutes between them.
* freshness lag per log: the health rows (`ct_health`, every 5 minutes) of the window,
  their `lag_seconds`; the files are picked by name (the check time).
* alerts per hour: the `scored_at` column of the `alerts` files of the window's days.

Each of `/api/series` and `/api/latest` is computed at most once per CACHE_SECONDS for a
lake and its parameters; concurrent requests share one computation. What is read of a file
(a health check's rows, an alerts file's scored_at, a watch_matches file's keys) is kept
while the file's listed version (mtime, size) is the same, so a computation reads only the
files written since the last one (forgotten once not listed for FILE_MEMORY_SECONDS).
"""

from __future__ import annotations

import logging
import math
import mimetypes
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ctlib.downstream.watchlist import CRTSH
from ctlib.lake import layout
from ctlib.lake.files import Lake
from ctlib.lake.manifest import ManifestError, live_names, partition_listing
from ctlib.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter()

STATIC_DIR = Path(__file__).with_name("static")
CACHE_SECONDS = 60.0
DEFAULT_HOURS = 24
MAX_HOURS = 72
DEFAULT_LATEST = 20
MAX_LATEST = 100

_NO_STORE = {"Cache-Control": "no-store"}

# --------------------------------------------------------------------------- routes


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    """The page: static/index.html."""
    return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})


@router.get("/static/{path:path}")
def static(path: str, request: Request) -> Response:
    """A file under static/ (304 when the browser's copy is current); 404 for anything else."""
    found = static_file(path)
    if found is None:
        raise HTTPException(status_code=404, detail="not found")
    stat = found.stat()
    headers = {"Cache-Control": "no-cache", "ETag": f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
    if found.suffix == ".js":
        media_type = "text/javascript"
    return FileResponse(found, media_type=media_type, headers=headers, stat_result=stat)


@router.get("/api/logs")
def api_logs() -> JSONResponse:
    """The logs table: every monitored log's snapshot."""
    from ctlib.airflow.monitor.snapshot import log_snapshots

    snapshots = log_snapshots(Settings.from_env())
    body = {"generated_at": _iso(now()), "logs": [snapshot_json(s) for s in snapshots]}
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/api/series")
def api_series(hours: int = Query(DEFAULT_HOURS, ge=1, le=MAX_HOURS)) -> JSONResponse:
    """The charts' data over the last `hours` (see compute_series)."""
    lake = Settings.from_env().lake
    body = _SERIES.get((lake, hours), lambda: compute_series(Lake.open(lake), now(), hours))
    return JSONResponse(body, headers=_NO_STORE)


@router.get("/api/latest")
def api_latest(limit: int = Query(DEFAULT_LATEST, ge=1, le=MAX_LATEST)) -> JSONResponse:
    """The newest alerts and watch matches (see compute_latest)."""
    lake = Settings.from_env().lake
    body = _LATEST.get((lake, limit), lambda: compute_latest(Lake.open(lake), now(), limit))
    return JSONResponse(body, headers=_NO_STORE)


def now() -> datetime:
    """The current time, UTC (the routes' clock)."""
    return datetime.now(UTC)


def static_file(path: str) -> Path | None:
    """The file `path` names under STATIC_DIR, None when it is not one (or is outside)."""
    root = STATIC_DIR.resolve()
    try:
        found = (root / path).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if not found.is_relative_to(root) or found == root or not found.is_file():
        return None
    return found


def snapshot_json(snapshot: Any) -> dict[str, Any]:
    """A LogSnapshot (any dataclass) as JSON-ready values: datetimes as ISO-8601 UTC."""
    out = {}
    for field in fields(snapshot):
        value = getattr(snapshot, field.name)
        out[field.name] = _iso(value) if isinstance(value, datetime) else value
    return out


# --------------------------------------------------------------------------- cache

T = TypeVar("T")


class _Cache:
    """Values by key, each kept CACHE_SECONDS; one computation at a time (the others wait
    and get its result)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any, compute: Callable[[], T]) -> T:
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
                return hit[1]
            value = compute()
            self._values[key] = (time.monotonic(), value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_SERIES = _Cache()
_LATEST = _Cache()


class _PerFile:
    """What was read of each file, kept while the file's version (mtime, size) stays the
    same; a file not asked about for FILE_MEMORY_SECONDS is forgotten (`sweep`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[tuple[float, int], Any, float]] = {}

    def get(self, file: LakeFile, read: Callable[[], T | None]) -> T | None:
        """The value of `file`, read (and kept) unless known; a None read is not kept."""
        version = (file.mtime, file.size)
        with self._lock:
            hit = self._values.get(file.path)
            if hit is not None and hit[0] == version:
                self._values[file.path] = (version, hit[1], time.monotonic())
                return hit[1]
        value = read()
        if value is not None:
            with self._lock:
                self._values[file.path] = (version, value, time.monotonic())
        return value

    def sweep(self) -> None:
        cutoff = time.monotonic() - FILE_MEMORY_SECONDS
        with self._lock:
            for path in [p for p, (_, _, seen) in self._values.items() if seen < cutoff]:
                del self._values[path]

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


FILE_MEMORY_SECONDS = 600.0
_HEALTH = _PerFile()  # health files: their rows (HealthPoint)
_SCORED = _PerFile()  # alerts files: their scored_at values (epoch s)
_WATCH = _PerFile()  # watch_matches files: (tbs_sha256, watch_item, matched_at) of their rows


def clear_cache() -> None:
    """Forget every cached answer and file (tests)."""
    for cache in (_SERIES, _LATEST, _HEALTH, _SCORED, _WATCH):
        cache.clear()


def _sweep() -> None:
    for cache in (_HEALTH, _SCORED, _WATCH):
        cache.sweep()


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class LakeFile:
    """A Parquet file of the lake as its directory listing shows it."""

    path: str
    name: str
    mtime: float  # epoch seconds
    size: int
    slug: str = ""  # of its log, in LOG_TABLES
    day: date | None = None  # of its partition, in LOG_TABLES and DAY_TABLES


@dataclass(frozen=True, slots=True)
class RangeFile:
    """A certs file as its listing shows it: a range file, or a merged file (compaction's)."""

    slug: str
    day: date
    start: int
    end: int
    mtime: float  # epoch seconds
    path: str
    size: int
    merged: bool = False
    """Compaction's merge (layout.merged_file_name): [start, end) bounds its entries, it
    does not say how many there are."""

    @property
    def entries(self) -> int:
        return self.end - self.start


def _list(lake: Lake, directory: str) -> list[Any]:
    """pyarrow FileInfos of `directory`'s entries; none when it does not exist."""
    import pyarrow.fs as pafs

    try:
        return list(lake.filesystem.get_file_info(pafs.FileSelector(directory, allow_not_found=True)))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_dir(info: Any) -> bool:
    import pyarrow.fs as pafs

    return bool(info.type == pafs.FileType.Directory)


def _files(lake: Lake, directory: str, slug: str = "", day: date | None = None) -> list[LakeFile]:
    """The live files of the partition `directory` (ctlib.lake.manifest: not a writer's
    hidden temporary, nor what the partition's manifest does not make live), sorted by name.
    A manifest that cannot be read leaves the partition out (logged): guessing could count
    its entries twice."""
    try:
        infos, manifest = partition_listing(lake, directory)
    except ManifestError as err:
        log.warning("ct monitor: %s left out: %s", directory, err)
        return []
    return [LakeFile(i.path, name, i.mtime_ns / 1e9 if i.mtime_ns is not None else 0.0, i.size or 0, slug, day)
            for name in live_names(infos, manifest) for i in (infos[name],)]


def log_slugs(lake: Lake, table: str) -> list[str]:
    """The logs with a `<table>/log=<slug>` directory, sorted."""
    slugs = []
    for info in _list(lake, layout.table_dir(lake.root, table)):
        if _is_dir(info) and info.base_name.startswith("log="):
            slugs.append(info.base_name[len("log="):])
    return sorted(slugs)


def days_between(start: datetime, end: datetime) -> list[date]:
    """The UTC days from `start`'s to `end`'s, both included."""
    first, last = start.astimezone(UTC).date(), end.astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


LISTING_THREADS = 8  # partition listings at once: an object store answers each in ~50-100 ms


def partition_files(lake: Lake, table: str, days: Iterable[date]) -> list[LakeFile]:
    """The Parquet files of every log's partitions of `days` in a LOG_TABLES table (the
    partitions listed LISTING_THREADS at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    days = list(days)
    partitions = [(slug, day) for slug in log_slugs(lake, table) for day in days]

    def listing(partition: tuple[str, date]) -> list[LakeFile]:
        slug, day = partition
        return _files(lake, layout.partition_dir(lake.root, table, slug, day), slug, day)

    if len(partitions) <= 1:
        return [file for partition in partitions for file in listing(partition)]
    with ThreadPoolExecutor(max_workers=min(LISTING_THREADS, len(partitions)), thread_name_prefix="ct-page") as pool:
        return [file for files in pool.map(listing, partitions) for file in files]


def certs_files(lake: Lake, days: Iterable[date]) -> list[RangeFile]:
    """The live range and merged files of the `certs` partitions of `days`."""
    out = []
    for file in partition_files(lake, layout.CERTS, days):
        merged = layout.parse_merged(file.name)
        span = merged[:2] if merged is not None else layout.parse_range(file.name)
        if span is not None and file.day is not None:
            out.append(RangeFile(file.slug, file.day, span[0], span[1], file.mtime, file.path, file.size,
                                 merged is not None))
    return out


def is_merged(file: RangeFile) -> bool:
    """True when compaction wrote `file`: its name is a merged file's (layout.parse_merged)."""
    return file.merged


def _read(lake: Lake, file: LakeFile, columns: Sequence[str]) -> list[dict[str, Any]] | None:
    """`columns` of one file's rows; None when it cannot be read now (replaced meanwhile)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file.path, columns=list(columns), filesystem=lake.filesystem).to_pylist()
    except (OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class HealthPoint:
    """What one health check recorded of one log (the columns the charts use)."""

    checked_at: float  # epoch seconds
    slug: str
    next_index: int | None
    lag_seconds: float | None


_HEALTH_COLUMNS = ["checked_at", "log_slug", "next_index", "lag_seconds"]


def health_points(lake: Lake, start: datetime, end: datetime) -> list[HealthPoint]:
    """The health rows of the checks in [start, end], oldest first. Files are chosen by
    their name (the check's time); each is read once."""
    low, high = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    wanted = []
    for day in days_between(start, end):
        for file in _files(lake, layout.day_dir(lake.root, layout.HEALTH, day), day=day):
            stem = file.name.removesuffix(".parquet")
            if stem.isdigit() and low <= int(stem) <= high:
                wanted.append((int(stem), file))
    out: list[HealthPoint] = []
    for _, file in sorted(wanted, key=lambda pair: pair[0]):

        def read(file: LakeFile = file) -> list[HealthPoint] | None:
            rows = _read(lake, file, _HEALTH_COLUMNS)
            return None if rows is None else [
                HealthPoint(r["checked_at"].timestamp(), r["log_slug"], r["next_index"], r["lag_seconds"]) for r in rows]

        out.extend(_HEALTH.get(file, read) or ())
    return out


def scored_at(lake: Lake, files: Iterable[LakeFile]) -> list[float]:
    """The `scored_at` values (epoch s) of alerts files; each file read once per version."""
    out: list[float] = []
    for file in files:

        def read(file: LakeFile = file) -> list[float] | None:
            rows = _read(lake, file, ["scored_at"])
            return None if rows is None else [r["scored_at"].timestamp() for r in rows if r["scored_at"] is not None]

        out.extend(_SCORED.get(file, read) or ())
    return out


# --------------------------------------------------------------------------- series (pure)


def _floor(moment: float, step: int) -> int:
    return int(math.floor(moment / step) * step)


def minute_buckets(now: datetime, hours: int) -> list[int]:
    """Epoch seconds of the window's minutes, oldest first: `hours * 60` of them, the last
    one the minute holding `now`."""
    last = _floor(now.timestamp(), 60)
    return [last - 60 * n for n in range(hours * 60 - 1, -1, -1)]


def entries_per_minute(files: Iterable[RangeFile], merged: Callable[[RangeFile], bool],
                       health: Sequence[HealthPoint], minutes: Sequence[int]) -> tuple[dict[str, list[int]], list[str]]:
    """({slug: entries per minute of `minutes`}, the logs filled in from health rows).

    A file that is not `merged` adds `end - start` to the minute of its mtime, once per
    range (a run's range whose entries straddle midnight is a file in each day). For a log
    with a merged file in the window, between consecutive health checks a and b (in time
    order; both with a watermark, and b's not below a's), the entries of
    `next_index(b) - next_index(a)` that the log's other files with mtime in (a, b] do not
    hold are spread over the minutes of (a, b]: the minutes after a's up to b's (b's alone
    when both are in one minute), equal shares, the remainder one each to the earliest."""
    first, count = minutes[0], len(minutes)
    end = first + 60 * count
    series: dict[str, list[int]] = {}
    kept: dict[str, list[RangeFile]] = {}
    fill: set[str] = set()
    counted: set[tuple[str, int, int]] = set()
    for file in files:
        series.setdefault(file.slug, [0] * count)
        if not first <= file.mtime < end:
            continue
        if merged(file):
            fill.add(file.slug)
            continue
        if (file.slug, file.start, file.end) in counted:
            continue
        counted.add((file.slug, file.start, file.end))
        series[file.slug][(int(file.mtime) - first) // 60] += file.entries
        kept.setdefault(file.slug, []).append(file)
    for slug in sorted(fill):
        points = sorted((p for p in health if p.slug == slug and p.next_index is not None), key=lambda p: p.checked_at)
        values = series[slug]
        for a, b in zip(points, points[1:]):
            assert a.next_index is not None and b.next_index is not None
            listed = sum(f.entries for f in kept.get(slug, ()) if a.checked_at < f.mtime <= b.checked_at)
            rest = b.next_index - a.next_index - listed
            if rest <= 0:
                continue
            low = (_floor(a.checked_at, 60) - first) // 60 + 1
            high = (_floor(b.checked_at, 60) - first) // 60
            span = list(range(min(low, high), high + 1))
            share, extra = divmod(rest, len(span))
            for n, bucket in enumerate(span):
                if 0 <= bucket < count:
                    values[bucket] += share + (1 if n < extra else 0)
    return series, sorted(fill)


def freshness_lag(health: Iterable[HealthPoint]) -> dict[str, Any]:
    """{"t": [check times, epoch s, ascending], "logs": {slug: [lag_seconds or None per t]}}."""
    points = list(health)
    times = sorted({p.checked_at for p in points})
    where = {t: n for n, t in enumerate(times)}
    logs: dict[str, list[float | None]] = {}
    for p in points:
        logs.setdefault(p.slug, [None] * len(times))[where[p.checked_at]] = p.lag_seconds
    return {"t": [_seconds(t) for t in times], "logs": dict(sorted(logs.items()))}


def alerts_per_hour(scored_at: Iterable[float], start: float, now: float) -> dict[str, list[int]]:
    """{"t": [hour starts, epoch s, from start's hour to now's], "alerts": [alerts scored in
    each hour, counting only [start, now]]}."""
    first, last = _floor(start, 3600), _floor(now, 3600)
    hours = list(range(first, last + 1, 3600))
    counts = [0] * len(hours)
    for moment in scored_at:
        if start <= moment <= now:
            counts[(_floor(moment, 3600) - first) // 3600] += 1
    return {"t": hours, "alerts": counts}


def _seconds(moment: float) -> float | int:
    return int(moment) if moment == int(moment) else round(moment, 3)


# --------------------------------------------------------------------------- series (I/O)


def compute_series(lake: Lake, now: datetime, hours: int = DEFAULT_HOURS) -> dict[str, Any]:
    """The charts' data over the `hours` before `now`:

        {"generated_at": ISO-8601, "hours": n,
         "entries_per_minute": {"t": [minute starts, epoch s], "logs": {slug: [entries]},
                                "from_health": [slugs partly counted from health rows]},
         "freshness_lag": {"t": [check times, epoch s], "logs": {slug: [seconds or null]}},
         "alerts_per_hour": {"t": [hour starts, epoch s], "alerts": [count]}}

    The window starts at the first of the `hours * 60` minutes (entries_per_minute's t[0])."""
    minutes = minute_buckets(now, hours)
    start = datetime.fromtimestamp(minutes[0], UTC)
    days = days_between(start, now)
    health = health_points(lake, start, now)
    files = certs_files(lake, days)
    entries, from_health = entries_per_minute(files, is_merged, health, minutes)
    moments = scored_at(lake, partition_files(lake, layout.ALERTS, days))
    _sweep()
    return {
        "generated_at": _iso(now),
        "hours": hours,
        "entries_per_minute": {"t": minutes, "logs": dict(sorted(entries.items())), "from_health": from_health},
        "freshness_lag": freshness_lag(health),
        "alerts_per_hour": alerts_per_hour(moments, start.timestamp(), now.timestamp()),
    }


# --------------------------------------------------------------------------- latest


def compute_latest(lake: Lake, now: datetime, limit: int = DEFAULT_LATEST) -> dict[str, Any]:
    """The newest alerts and watch matches, newest first, at most `limit` of each:

        {"generated_at": ISO-8601,
         "alerts": [{"scored_at", "name", "score", "brand", "registered_domain", "rules",
                     "why", "log_slug", "index", "timestamp", "entry_type", "cert_sha256",
                     "crtsh"}],
         "watch_matches": [{"matched_at", "updated_at", "watch_item", "names", "issuer",
                            "why", "log_slug", "index", "timestamp", "entry_type",
                            "not_before", "not_after", "cert_sha256", "crtsh"}]}

    Alerts: of today's and yesterday's partitions (UTC, of `now`), by scored_at; `rules` as
    the scorer wrote them ("rule=weight"), `why` in one line. Watch matches: by matched_at;
    `why` says which watch item covers which names."""
    body = {"generated_at": _iso(now), "alerts": latest_alerts(lake, now, limit),
            "watch_matches": latest_watch_matches(lake, limit)}
    _sweep()
    return body


_ALERT_COLUMNS = ["scored_at", "name", "score", "brand", "registered_domain", "rules", "log_slug", "index",
                  "timestamp", "entry_type", "cert_sha256"]


def latest_alerts(lake: Lake, now: datetime, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` alerts rows of today's and yesterday's partitions. Files are read
    newest first (by mtime) until no older file can hold one of them: a file's rows were
    scored before it was written."""
    files = sorted(partition_files(lake, layout.ALERTS, days_between(now - timedelta(days=1), now)),
                   key=lambda f: f.mtime, reverse=True)
    rows: list[dict[str, Any]] = []
    for file in files:
        if len(rows) >= limit:
            rows = sorted(rows, key=lambda r: (r["scored_at"], r["score"]), reverse=True)[:limit]
            if file.mtime < rows[-1]["scored_at"].timestamp() - 1.0:
                break
        rows += _read(lake, file, _ALERT_COLUMNS) or []
    rows = sorted(rows, key=lambda r: (r["scored_at"], r["score"]), reverse=True)[:limit]
    return [_alert_json(row) for row in rows]


def _alert_json(row: Mapping[str, Any]) -> dict[str, Any]:
    rules = [str(rule) for rule in row["rules"] or ()]
    about = f"brand {row['brand']}: " if row["brand"] else ""
    return {
        **_jsonable(row),
        "rules": rules,
        "why": f"score {row['score']:g} = {about}{', '.join(rules) or 'no rule'}",
        "crtsh": CRTSH + str(row["cert_sha256"]),
    }


_WATCH_COLUMNS = ["matched_at", "updated_at", "watch_item", "names", "issuer", "log_slug", "index", "timestamp",
                  "entry_type", "not_before", "not_after", "cert_sha256", "crtsh", "tbs_sha256"]


def latest_watch_matches(lake: Lake, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` watch_matches rows (by matched_at): every file's keys first (each
    file read once per version), then the whole rows from the files holding the newest."""
    files = _files(lake, layout.table_dir(lake.root, layout.WATCH_MATCHES))
    keys: list[tuple[str, str, float]] = []
    for file in files:

        def read(file: LakeFile = file) -> list[tuple[str, str, float]] | None:
            rows = _read(lake, file, ["tbs_sha256", "watch_item", "matched_at"])
            return None if rows is None else [
                (r["tbs_sha256"], r["watch_item"], r["matched_at"].timestamp()) for r in rows]

        keys += _WATCH.get(file, read) or ()
    newest = sorted(keys, key=lambda key: key[2], reverse=True)[:limit]
    wanted = {(tbs, item) for tbs, item, _ in newest}
    buckets = {layout.watch_bucket(lake.root, tbs).rpartition("/")[2] for tbs, _ in wanted}
    rows = [row for file in files if file.name in buckets for row in _read(lake, file, _WATCH_COLUMNS) or ()
            if (row["tbs_sha256"], row["watch_item"]) in wanted]
    rows.sort(key=lambda r: r["matched_at"], reverse=True)
    out = []
    for row in rows[:limit]:
        names = [str(n) for n in row["names"] or ()]
        item = _jsonable({k: v for k, v in row.items() if k != "tbs_sha256"})
        item["names"] = names
        item["why"] = f"watch item {row['watch_item']} covers {', '.join(names)}"
        out.append(item)
    return out


# --------------------------------------------------------------------------- helpers


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _iso(value) if isinstance(value, datetime) else value for key, value in row.items()}
