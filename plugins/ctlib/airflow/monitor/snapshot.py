"""What the monitor (the `/ct/metrics` series and the `/ct/` page) shows of each log, read
cheaply: never a scan of the lake.

Sources of `log_snapshots`, per computation:
* every `ct_state__*` Variable, in one metadata-database query (values decrypted as Airflow
  does; `AIRFLOW_VAR_CT_STATE__*` environment variables too);
* the monitored logs (slug, description, operator, kind) from the log list, parsed again only
  when its file changes;
* the newest `health/` file only (one row per log, written by `ct_health` every 5 minutes):
  the log's tree size and first pending entry as the check saw them, and its incidents;
  found by two listings and read through the lake's filesystem (`CT_LAKE`: a local folder
  or an object store alike).

`build_snapshots` is the pure part: one `LogSnapshot` per monitored log, in list order (a
state of a log no longer monitored is left out). Its rules:

* `kind`: "rfc6962", or "tiled" for a static-ct-api log.
* `tree_size`: the larger of the state's (the newest verified tree head at the last commit)
  and the health check's (the log's verified tree head at the check); None without either.
* `backlog`: `tree_size - next_index`, at least 0; None without a state.
* `freshness_lag_seconds`: the age, at `now`, of the oldest entry not ingested yet. 0 when
  there is no backlog; else the age of the first pending entry the health check read, when
  the check's watermark is at or below the current one (exact while the watermark has not
  moved since; otherwise an upper bound, entries being in the tree roughly in time order);
  None (unknown) otherwise: no state, or no check that read the pending entry.
* `last_success`: the state's `updated_at` (the watermark last written by a commit).
* `entries_total`, `errors_total`: the state's `entries_ingested` and `errors_ingested`
  (what commits put in the lake; a backfill by time is not counted); `incidents_total`: the
  rows in `incidents/` as the newest health check counted them (0 without a check).
* `status`, the first that applies (thresholds CT_HEALTH_STALL_SECONDS, CT_HEALTH_MAX_LAG_SECONDS):
  - `not_started`: no state yet (the ingest DAG has not run);
  - `failing`: the newest health check could not read or verify the log's tree head and the
    watermark has not moved since that check;
  - `stalled`: a backlog, and the watermark has not moved for over CT_HEALTH_STALL_SECONDS;
  - `behind`: the freshness lag is over CT_HEALTH_MAX_LAG_SECONDS;
  - `ok`: otherwise (a small backlog within the thresholds included).

A snapshot computed without an explicit `now` is kept `CACHE_SECONDS`, so a burst of
requests (scrapes, page refreshes) costs one computation. `totals` sums the per-run counters
of the downstream DAGs (ctlib.ops.counters), read in one query too.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ctlib.ct.loglist import CTLog
from ctlib.ingest.state import STATE_PREFIX, LogState, StateError
from ctlib.ops import counters
from ctlib.settings import Settings

CACHE_SECONDS = 5.0
STATUSES = ("ok", "behind", "stalled", "failing", "not_started")
KINDS = {"rfc6962": "rfc6962", "static": "tiled"}


@dataclass(frozen=True, slots=True)
class LogSnapshot:
    slug: str
    description: str
    operator: str
    kind: str
    """"rfc6962" | "tiled"."""
    tree_size: int | None
    next_index: int | None
    backlog: int | None
    freshness_lag_seconds: float | None
    """0 when caught up; None: unknown."""
    last_success: datetime | None
    """The state's updated_at."""
    entries_total: int
    errors_total: int
    incidents_total: int
    status: str
    """One of STATUSES; see the module docstring for the rules."""


@dataclass(frozen=True, slots=True)
class HealthRow:
    """What the newest health check recorded of one log (the columns the monitor reads)."""

    checked_at: datetime
    status: str
    next_index: int | None
    tree_size: int | None
    oldest_pending_at: datetime | None
    incidents: int


# --------------------------------------------------------------------------- pure


def _seconds(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())


def snapshot_of(ctlog: CTLog, state: LogState | None, health: HealthRow | None, settings: Settings,
                now: datetime) -> LogSnapshot:
    """One log's snapshot (pure; the rules are in the module docstring)."""
    kind = KINDS.get(ctlog.kind, ctlog.kind)
    incidents = health.incidents if health else 0
    if state is None:
        tree_size = health.tree_size if health else None
        return LogSnapshot(ctlog.slug, ctlog.description, ctlog.operator, kind, tree_size, None, None, None,
                           None, 0, 0, incidents, "not_started")
    sizes = [state.tree_size] + ([health.tree_size] if health and health.tree_size is not None else [])
    tree_size = max(sizes)
    backlog = max(0, tree_size - state.next_index)
    lag: float | None
    if backlog == 0:
        lag = 0.0
    elif (health is not None and health.oldest_pending_at is not None and health.next_index is not None
          and health.next_index <= state.next_index):
        lag = _seconds(now, health.oldest_pending_at)
    else:
        lag = None
    last_success = state.updated_time
    unmoved = health is not None and health.next_index == state.next_index
    if health is not None and health.status == "unreachable" and unmoved:
        status = "failing"
    elif backlog and last_success is not None and _seconds(now, last_success) > settings.health_stall_seconds:
        status = "stalled"
    elif lag is not None and lag > settings.health_max_lag_seconds:
        status = "behind"
    else:
        status = "ok"
    return LogSnapshot(ctlog.slug, ctlog.description, ctlog.operator, kind, tree_size, state.next_index, backlog,
                       lag, last_success, state.entries_ingested, state.errors_ingested, incidents, status)


def build_snapshots(logs: Sequence[CTLog], states: Mapping[str, LogState], health: Mapping[str, HealthRow],
                    settings: Settings, now: datetime) -> list[LogSnapshot]:
    """Every monitored log's snapshot, in list order (pure)."""
    return [snapshot_of(c, states.get(c.slug), health.get(c.slug), settings, now) for c in logs]


def parse_states(values: Mapping[str, str]) -> dict[str, LogState]:
    """{slug: state} of the `ct_state__<slug>` keys of `values`; an unreadable state is left
    out (the page and the metrics show the log as not started rather than fail)."""
    out = {}
    for key, raw in values.items():
        if key.startswith(STATE_PREFIX):
            try:
                out[key[len(STATE_PREFIX):]] = LogState.from_json(raw, key=key)
            except StateError:
                continue
    return out


# --------------------------------------------------------------------------- I/O edges


def stored_variables(prefixes: Iterable[str]) -> dict[str, str]:
    """Every Variable whose key begins with one of `prefixes`, in ONE metadata-database
    query (values decrypted with Airflow's Fernet key, as `Variable.get` does), then the
    `AIRFLOW_VAR_<KEY>` environment variables, which win, as they do for Airflow."""
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import or_, select

    prefixes = tuple(prefixes)
    out: dict[str, str] = {}
    with create_session() as session:
        rows = session.scalars(select(Variable).where(or_(*(Variable.key.like(f"{p}%") for p in prefixes))))
        for row in rows:
            # LIKE's '_' matches any character: keep only the keys that really begin with a prefix.
            if row.key.startswith(prefixes):
                value = row.get_val()
                if value is not None:
                    out[row.key] = value
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_VAR_"):
            key = name[len("AIRFLOW_VAR_"):].lower()
            if key.startswith(prefixes):
                out[key] = value
    return out


_LOGS: dict[str, tuple[tuple[int, int], list[CTLog]]] = {}
_LOCK = threading.Lock()


def monitored(settings: Settings) -> list[CTLog]:
    """The monitored logs of the configured list, parsed again only when the file changes
    (its modification time or size); none before a list given by URL is first downloaded."""
    from ctlib.ct.loglist import load_log_list

    path = settings.log_list_path
    try:
        stat = path.stat()
    except OSError:
        return []
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _LOGS.get(str(path))
    if cached and cached[0] == stamp:
        return cached[1]
    logs = load_log_list(path).monitored()
    _LOGS[str(path)] = (stamp, logs)
    return logs


_HEALTH: dict[str, dict[str, HealthRow]] = {}


def _latest_health_file(lake: Any) -> str | None:
    """The path of the newest health file: the newest day directory (of the two newest, as a
    new day's may not hold a finished file yet), then its live files (ctlib.lake.manifest:
    no writer's temporary), newest name last. Two listings, on any filesystem."""
    import pyarrow.fs as pafs

    from ctlib.lake import layout
    from ctlib.lake.manifest import ManifestError, live_files

    try:
        entries = lake.filesystem.get_file_info(
            pafs.FileSelector(layout.table_dir(lake.root, layout.HEALTH), allow_not_found=True))
    except (OSError, FileNotFoundError):
        return None
    days = sorted((day for i in entries if i.type == pafs.FileType.Directory
                   and (day := layout.parse_day_dir(i.base_name)) is not None), reverse=True)
    for day in days[:2]:
        try:
            files = live_files(lake, layout.HEALTH, days=[day])
        except (OSError, ManifestError):
            continue
        if files:
            return max(files, key=lambda f: f.name).path
    return None


def latest_health(settings: Settings) -> dict[str, HealthRow]:
    """{slug: row} of the newest health file (two directory listings; the file itself read
    once: health files are written atomically and never change)."""
    import pyarrow.parquet as pq

    from ctlib.lake.files import Lake

    lake = Lake.open(settings.lake)
    path = _latest_health_file(lake)
    if path is None:
        return {}
    if path in _HEALTH:
        return _HEALTH[path]
    columns = ["checked_at", "log_slug", "status", "next_index", "tree_size", "oldest_pending_at", "incidents"]
    try:
        table = pq.read_table(path, columns=columns, filesystem=lake.filesystem)
    except (OSError, ValueError):
        return {}
    rows = {r["log_slug"]: HealthRow(r["checked_at"], r["status"], r["next_index"], r["tree_size"],
                                     r["oldest_pending_at"], r["incidents"] or 0)
            for r in table.to_pylist()}
    _HEALTH.clear()  # only the newest file is ever wanted again
    _HEALTH[path] = rows
    return rows


_SNAPSHOTS: dict[Settings, tuple[float, list[LogSnapshot]]] = {}
_TOTALS: dict[Settings, tuple[float, dict[str, float]]] = {}


def _cached(cache: dict, settings: Settings, compute: Any) -> Any:
    with _LOCK:  # one computation per burst: the others wait for it and share it
        hit = cache.get(settings)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        value = compute()
        cache[settings] = (time.monotonic(), value)
        return value


def log_snapshots(settings: Settings | None = None, *, now: datetime | None = None) -> list[LogSnapshot]:
    """Every monitored log's snapshot (see the module docstring). Without `now`, a snapshot
    computed within the last CACHE_SECONDS is reused."""
    settings = settings or Settings.from_env()

    def compute(moment: datetime) -> list[LogSnapshot]:
        states = parse_states(stored_variables([STATE_PREFIX]))
        return build_snapshots(monitored(settings), states, latest_health(settings), settings, moment)

    if now is not None:
        return compute(now)
    return _cached(_SNAPSHOTS, settings, lambda: compute(datetime.now(UTC)))


def totals(settings: Settings | None = None, *, cached: bool = True) -> dict[str, float]:
    """{"alerts", "watch_matches", "enrichment_calls", "enrichment_failures"}: cumulative
    counts recorded by ct_score, ct_watch and ct_enrich (ctlib.ops.counters), in one query."""
    settings = settings or Settings.from_env()

    def compute() -> dict[str, float]:
        return counters.totals_of(stored_variables([counters.COUNTERS_PREFIX]).values())

    return _cached(_TOTALS, settings, compute) if cached else compute()


def clear_cache() -> None:
    """Forget every cached snapshot, log list and health file (tests)."""
    with _LOCK:
        _SNAPSHOTS.clear()
        _TOTALS.clear()
        _LOGS.clear()
        _HEALTH.clear()
