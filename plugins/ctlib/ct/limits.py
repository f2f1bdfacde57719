"""Per-log read limits: requests per second and entries per get-entries request.

Bundled figures per log operator live in `include/log_limits.yaml` (the file documents its
format); the operator's own file (setting CT_LOG_LIMITS) is laid over them field by field.
`limits_for(log, settings)` resolves one log: its slug's figures win over its operator's
(matched case-insensitively), which win over the default.

The request rate is a budget per log and per ingest run. A run of one log has at most
CT_FETCH_PARALLELISM fetch tasks at once (its DAG has max_active_runs=1), so each mapped
fetch task paces itself at `requests_per_second / CT_FETCH_PARALLELISM`; the ingest task, which
runs alone (and fetches small backlogs inline), and commit use the whole rate.

`load_limits` raises LimitsError (naming the file and the key) if and only if a file cannot
be read or holds something other than the documented fields with non-negative numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctlib.ct.loglist import CTLog
from ctlib.settings import DEFAULT_LOG_LIMITS, Settings, SettingsError

FIELDS = ("requests_per_second", "entries_per_request")
SECTIONS = ("default", "operators", "logs")
TILE_ENTRIES = 256  # a static-ct-api data tile; not configurable


class LimitsError(SettingsError):
    """A limits file is unusable; the message names the file and the key at fault."""


@dataclass(frozen=True, slots=True)
class LogLimits:
    """The read limits of one log. 0 means no limit (no cap beyond CT_GET_ENTRIES_BATCH)."""

    requests_per_second: float = 0.0
    entries_per_request: int = 0
    source: str = "default"  # which entry of which file the figures came from, for logs

    def batch(self, asked: int) -> int:
        """Entries the first get-entries asks: `asked` (CT_GET_ENTRIES_BATCH) within the cap."""
        return min(asked, self.entries_per_request) if self.entries_per_request else asked

    def rate(self, share: int = 1) -> float:
        """Requests per second of one of `share` clients reading the log at the same time."""
        return self.requests_per_second / max(1, share)

    def describe(self, kind: str, settings: Settings) -> str:
        """`32 entries/request, 10 req/s (5 per fetch task, ...)`, for the ingest task's log."""
        if kind == "static":
            size = f"{TILE_ENTRIES} entries/tile"
        elif self.entries_per_request:
            size = f"{self.batch(settings.get_entries_batch)} entries/request"
        else:
            size = f"{settings.get_entries_batch} entries/request (CT_GET_ENTRIES_BATCH; a smaller cap is learnt from answers)"
        if not self.requests_per_second:
            return f"{size}, no request-rate limit; from {self.source}"
        per_task = self.rate(settings.fetch_parallelism)
        return (f"{size}, {self.requests_per_second:g} req/s ({per_task:g} per fetch task, "
                f"CT_FETCH_PARALLELISM={settings.fetch_parallelism}); from {self.source}")


@dataclass(frozen=True, slots=True)
class _Partial:
    """Figures of one entry of a file; None where the entry says nothing."""

    requests_per_second: float | None = None
    entries_per_request: int | None = None
    source: str = ""

    def over(self, base: LogLimits) -> LogLimits:
        if self.requests_per_second is None and self.entries_per_request is None:
            return base
        return LogLimits(
            base.requests_per_second if self.requests_per_second is None else self.requests_per_second,
            base.entries_per_request if self.entries_per_request is None else self.entries_per_request,
            self.source,
        )

    def merged(self, newer: _Partial) -> _Partial:
        return _Partial(
            self.requests_per_second if newer.requests_per_second is None else newer.requests_per_second,
            self.entries_per_request if newer.entries_per_request is None else newer.entries_per_request,
            newer.source if newer.source and (newer.requests_per_second, newer.entries_per_request) != (None, None)
            else self.source,
        )


@dataclass(frozen=True, slots=True)
class LimitsTable:
    """The merged figures of the bundled file and the operator's; resolve with `for_log`."""

    default: LogLimits
    operators: Mapping[str, _Partial]  # key: operator name, casefolded
    logs: Mapping[str, _Partial]  # key: slug

    def for_log(self, log: CTLog) -> LogLimits:
        limits = self.operators.get(_operator_key(log.operator), _Partial()).over(self.default)
        return self.logs.get(log.slug, _Partial()).over(limits)

    def overlay(self, newer: LimitsTable, newer_default: _Partial) -> LimitsTable:
        operators = dict(self.operators)
        for key, partial in newer.operators.items():
            operators[key] = operators.get(key, _Partial()).merged(partial)
        logs = dict(self.logs)
        for key, partial in newer.logs.items():
            logs[key] = logs.get(key, _Partial()).merged(partial)
        return LimitsTable(newer_default.over(self.default), operators, logs)


def _operator_key(name: str) -> str:
    return " ".join(name.split()).casefold()


def _number(value: Any, where: str, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LimitsError(f"{where}: {name} must be a number, got {value!r}")
    if value < 0 or value != value or value == float("inf"):
        raise LimitsError(f"{where}: {name} must be a non-negative finite number, got {value!r}")
    return value


def _partial(raw: Any, where: str, source: str) -> _Partial:
    if raw is None:
        return _Partial()
    if not isinstance(raw, Mapping):
        raise LimitsError(f"{where}: expected a mapping of {', '.join(FIELDS)}, got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - set(FIELDS))
    if unknown:
        raise LimitsError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    rps = raw.get("requests_per_second")
    entries = raw.get("entries_per_request")
    if entries is not None and (isinstance(entries, bool) or not isinstance(entries, int)):
        raise LimitsError(f"{where}: entries_per_request must be a whole number, got {entries!r}")
    return _Partial(
        None if rps is None else float(_number(rps, where, "requests_per_second")),
        None if entries is None else int(_number(entries, where, "entries_per_request")),
        source,
    )


def parse_limits(data: Any, name: str) -> tuple[LimitsTable, _Partial]:
    """One file's table (over an empty default) and its own default entry. Raises LimitsError."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise LimitsError(f"{name}: expected a mapping with {', '.join(SECTIONS)}")
    unknown = sorted(set(map(str, data)) - set(SECTIONS))
    if unknown:
        raise LimitsError(f"{name}: unknown section(s) {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    default = _partial(data.get("default"), f"{name}: default", f"default of {name}")
    tables: dict[str, dict[str, _Partial]] = {}
    for section in ("operators", "logs"):
        entries = data.get(section) or {}
        if not isinstance(entries, Mapping):
            raise LimitsError(f"{name}: {section} must be a mapping")
        table: dict[str, _Partial] = {}
        for key, raw in entries.items():
            label = "operator" if section == "operators" else "log"
            where = f"{name}: {section}: {key!r}"
            partial = _partial(raw, where, f"{label} {key!r} in {name}")
            table[_operator_key(str(key)) if section == "operators" else str(key)] = partial
        tables[section] = table
    return LimitsTable(default.over(LogLimits(source=f"default of {name}")), tables["operators"], tables["logs"]), default


def _read(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise LimitsError(f"cannot read limits file {path}: {err.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise LimitsError(f"limits file {path} is not valid YAML: {err}") from None


_cache: dict[tuple[str, ...], tuple[tuple[int, ...], LimitsTable]] = {}
_cache_lock = threading.Lock()


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


def load_limits(extra: Path | None = None, bundled: Path = DEFAULT_LOG_LIMITS) -> LimitsTable:
    """The bundled figures with `extra` (the operator's file) laid over them. Cached per
    process until either file changes. Raises LimitsError."""
    paths = (bundled,) if extra is None else (bundled, extra)
    key = tuple(str(p) for p in paths)
    stamps = tuple(n for p in paths for n in _stamp(p))
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stamps:
        return hit[1]
    table, _ = parse_limits(_read(bundled), bundled.name)
    if extra is not None:
        table = table.overlay(*parse_limits(_read(extra), str(extra)))
    with _cache_lock:
        _cache[key] = (stamps, table)
    return table


def limits_for(log: CTLog, settings: Settings) -> LogLimits:
    """The limits of `log` under `settings` (CT_LOG_LIMITS). Raises LimitsError."""
    return load_limits(settings.log_limits).for_log(log)
