"""Google's CT log list (v3): parse it, check it, pick the logs a monitor reads, name them.

Pure and cheap (json + hashlib only): the DAG factory calls it at every parse.
`parse_log_list` raises LogListError if and only if the list is unusable; the message
names the operator and log at fault.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

LogKind = Literal["rfc6962", "static"]
log = logging.getLogger(__name__)

# States whose logs hold certificates worth reading. `pending` logs are not trusted yet,
# `rejected` ones never were, and `retired` ones are frozen and no longer trusted.
MONITORED_STATES = frozenset({"usable", "qualified", "readonly"})
MAX_SLUG = 100
"""Longest slug a monitored log may have: it names a DAG (`ct_ingest__<slug>`, Airflow allows
250 characters), Variables and lake folders. Real slugs are about 30 characters."""
MAX_MMD = 7 * 86400
"""The largest maximum merge delay (seconds) a log may state: logs state 24 h (Chrome's
policy caps it there); a week leaves room for test logs."""
KNOWN_STATES = MONITORED_STATES | {"pending", "rejected", "retired", "none"}
FROZEN_STATES = frozenset({"readonly", "retired"})
"""States of logs that accept no new entries (see `frozen_reason`)."""


class LogListError(ValueError):
    """The log list cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class CTLog:
    """One log of the list, as the pipeline needs it. Serialisable with to_dict/from_dict."""

    description: str
    slug: str
    operator: str
    log_id: str  # base64 of SHA-256(key), as in the list
    key: str  # base64 DER SubjectPublicKeyInfo
    kind: LogKind
    url: str  # RFC 6962 base URL, or the static-ct-api monitoring prefix; ends with "/"
    state: str
    mmd: int

    @property
    def key_der(self) -> bytes:
        return base64.b64decode(self.key)

    @property
    def log_id_bytes(self) -> bytes:
        return base64.b64decode(self.log_id)

    log_type: str = ""  # "test" logs are never monitored
    problem: str = ""  # why a log that looks monitorable is left out (e.g. a plain-http URL)
    interval_start: str = ""  # temporal_interval.start_inclusive, ISO 8601 UTC; "" when none
    interval_end: str = ""  # temporal_interval.end_exclusive; "" when the log has no interval

    @property
    def monitored(self) -> bool:
        return self.state in MONITORED_STATES and self.log_type != "test" and not self.problem

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> CTLog:
        """Fields with a default may be missing (a dict written before they existed)."""
        return cls(**{name: obj[name] for name in cls.__dataclass_fields__ if name in obj})


@dataclass(frozen=True, slots=True)
class LogList:
    version: str
    timestamp: str
    logs: tuple[CTLog, ...]

    def monitored(self, kinds: frozenset[LogKind] = frozenset({"rfc6962", "static"})) -> list[CTLog]:
        """The logs a monitor reads, in list order."""
        return [log for log in self.logs if log.monitored and log.kind in kinds]

    def by_slug(self, slug: str) -> CTLog:
        for log in self.logs:
            if log.slug == slug:
                return log
        raise LogListError(f"no log with slug {slug!r} in log list version {self.version}")


def frozen_reason(ctlog: CTLog, now: datetime) -> str:
    """Why nothing can be added to the log as of `now` (timezone-aware); "" while it can
    still grow. Reads only the log list entry.

    A log is *frozen* when its state is `readonly` or `retired`, or its temporal interval
    ended more than its MMD ago (a shard accepts no certificate expiring at or after
    `end_exclusive`, and has at most its MMD to incorporate what it accepted). A log whose
    interval has not started yet is not frozen: it is about to be the busy shard.
    """
    if ctlog.state in FROZEN_STATES:
        return f"its state is {ctlog.state}"
    if ctlog.interval_end:
        end = datetime.fromisoformat(ctlog.interval_end.replace("Z", "+00:00"))
        if now - end >= timedelta(seconds=ctlog.mmd):  # not end + mmd: that overflows for an end in 9999
            return (f"its temporal interval ended {ctlog.interval_end} and its MMD "
                    f"({ctlog.mmd} s) has passed since")
    return ""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with NUL and lone surrogates (JSON's "\\ud800" decodes to one) replaced by U+FFFD:
    descriptions and operator names reach UTF-8 output (the monitor's JSON and metrics, which
    raised on them) and Postgres text (DAG descriptions), which refuse both."""
    return _UNSTORABLE.sub("\ufffd", text)


def slugify(description: str) -> str:
    """`Google 'Argon2026h1' log` -> `google_argon2026h1_log`."""
    return re.sub(r"[^a-z0-9]+", "_", description.lower()).strip("_")


class InsecureURL(LogListError):
    """A plain-http URL to a non-loopback host: the log is listed but never read."""


def _check_url(url: Any, where: str) -> str:
    """https, or plain http to a loopback address (local test logs); always ends with '/'.

    Raises InsecureURL for other plain-http URLs, LogListError for anything malformed."""
    if not isinstance(url, str) or not url:
        raise LogListError(f"{where}: missing URL")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "http":
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InsecureURL(f"{where}: refusing plain-http URL {url!r} (https required)")
    elif parts.scheme != "https":
        raise LogListError(f"{where}: URL {url!r} is not http(s)")
    # not isprintable: a control character or a lone surrogate, which UTF-8 and Postgres refuse.
    if not host or parts.query or parts.fragment or parts.username or parts.password or not url.isprintable():
        raise LogListError(f"{where}: malformed URL {url!r}")
    return url if url.endswith("/") else url + "/"


def _parse_log(raw: Any, operator: str, kind: LogKind, position: int) -> CTLog:
    where = f"operator {operator!r}, {kind} log #{position}"
    if not isinstance(raw, Mapping):
        raise LogListError(f"{where}: expected an object, got {type(raw).__name__}")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise LogListError(f"{where}: missing description")
    description = storable(description)
    where = f"operator {operator!r}, log {description!r}"
    slug = slugify(description)
    if not slug:
        raise LogListError(f"{where}: description gives an empty slug")
    try:
        key_der = base64.b64decode(raw["key"], validate=True)
        log_id = base64.b64decode(raw["log_id"], validate=True)
    except KeyError as missing:
        raise LogListError(f"{where}: missing {missing.args[0]}") from None
    except (binascii.Error, TypeError, ValueError):
        raise LogListError(f"{where}: key or log_id is not valid base64") from None
    if hashlib.sha256(key_der).digest() != log_id:
        raise LogListError(f"{where}: log_id is not the SHA-256 of its key")
    states = raw.get("state")
    if states is None:
        states = {"none": {}}  # real lists carry test and special logs with no state
    if not isinstance(states, Mapping) or len(states) != 1:
        raise LogListError(f"{where}: state must hold exactly one of {sorted(KNOWN_STATES)}")
    (state,) = states
    if state not in KNOWN_STATES:
        raise LogListError(f"{where}: unknown state {state!r}")
    url_field = raw.get("url") if kind == "rfc6962" else raw.get("monitoring_url")
    problem = ""
    try:
        url = _check_url(url_field, where)
    except InsecureURL as err:
        url, problem = str(url_field), str(err)
        log.warning("%s; the log will not be read", err)
    if len(slug) > MAX_SLUG and not problem:
        problem = f"{where}: description gives a {len(slug)}-character slug (at most {MAX_SLUG})"
        log.warning("%s; the log will not be read", problem)
    mmd = raw.get("mmd", 86400)
    # Bounded: schedules and listings add it to dates (a huge one overflowed them at DAG import).
    if not isinstance(mmd, int) or isinstance(mmd, bool) or not 0 <= mmd <= MAX_MMD:
        raise LogListError(f"{where}: mmd must be an integer from 0 to {MAX_MMD} (seconds)")
    interval_start, interval_end = _parse_interval(raw.get("temporal_interval"), where)
    return CTLog(
        description=description,
        slug=slug,
        operator=operator,
        log_id=raw["log_id"],
        key=raw["key"],
        kind=kind,
        url=url,
        state=state,
        mmd=mmd,
        log_type=str(raw.get("log_type", "")),
        problem=problem,
        interval_start=interval_start,
        interval_end=interval_end,
    )


def _parse_interval(raw: Any, where: str) -> tuple[str, str]:
    """(start_inclusive, end_exclusive) of a temporal_interval, as canonical UTC ISO strings
    (`2026-01-01T00:00:00Z`); ("", "") when the log has none. Raises LogListError if malformed."""
    if raw is None:
        return "", ""
    if not isinstance(raw, Mapping):
        raise LogListError(f"{where}: temporal_interval is not an object")
    bounds = []
    for name in ("start_inclusive", "end_exclusive"):
        try:
            moment = datetime.fromisoformat(str(raw[name]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise LogListError(f"{where}: temporal_interval.{name} is missing or not an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise LogListError(f"{where}: temporal_interval.{name} has no time zone")
        try:
            bounds.append(moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        except OverflowError:  # year 1 or 9999 moved out of range by its zone
            raise LogListError(f"{where}: temporal_interval.{name} is out of range") from None
    return bounds[0], bounds[1]


def parse_log_list(data: bytes | str | Mapping[str, Any]) -> LogList:
    """Parse a v3 list (`logs` and `tiled_logs` of every operator). Raises LogListError."""
    if isinstance(data, (bytes, str)):
        try:
            data = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise LogListError(f"log list is not valid JSON: {err}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("operators"), list):
        raise LogListError("log list has no 'operators' array (is it a v3 list?)")
    logs: list[CTLog] = []
    seen: dict[str, CTLog] = {}
    fields: tuple[tuple[str, LogKind], ...] = (("logs", "rfc6962"), ("tiled_logs", "static"))
    for op_position, operator in enumerate(data["operators"]):
        if not isinstance(operator, Mapping):
            raise LogListError(f"operator #{op_position} is not an object")
        name = storable(str(operator.get("name") or f"#{op_position}"))
        for field, kind in fields:
            entries = operator.get(field, [])
            if not isinstance(entries, list):
                raise LogListError(f"operator {name!r}: {field} is not an array")
            for position, raw in enumerate(entries):
                log = _parse_log(raw, name, kind, position)
                if log.slug in seen:
                    # Slugs name DAGs, Variables and lake folders: two logs must never share one.
                    raise LogListError(
                        f"logs {seen[log.slug].description!r} and {log.description!r} "
                        f"both give the slug {log.slug!r}"
                    )
                seen[log.slug] = log
                logs.append(log)
    return LogList(
        version=str(data.get("version", "")),
        timestamp=str(data.get("log_list_timestamp", "")),
        logs=tuple(logs),
    )


def load_log_list(path: str | Path) -> LogList:
    """Read and parse a local log list file. Raises LogListError (never OSError) on failure."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise LogListError(f"cannot read log list {path}: {err.strerror}") from None
    return parse_log_list(raw)
