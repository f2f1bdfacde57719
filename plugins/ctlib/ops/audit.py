"""Prove the lake holds every committed entry exactly once, and Kafka at least once.

For each log with a stored state (the Variable `ct_state__<slug>`), every index of
[first_index, next_index) must be in the lake exactly once, counting the `certs` and
`errors` tables together (an undecodable entry is present: it sits in `errors`). With
`--kafka`, every index the lake holds in `certs` (only certificates are published) must
also have a message keyed `<log_id>:<index>` on the topic; duplicates are allowed there
(delivery is at-least-once), so only gaps count. Problems are reported as index ranges:

    python -m ctlib.audit                        # every log with state, lake only
    python -m ctlib.audit --log argon2026h1 --kafka --since 6h
    python -m ctlib.audit --state-json variables.json --lake data/   # offline, no Airflow

Exit status: 0 clean, 1 a gap or duplicate, 2 the audit could not be done (no state, an
unreadable lake, Kafka unreachable). Rows outside [first_index, next_index) are shown but
are not errors: backfilled history lies below first_index, and a failed run's files lie at
or above next_index until a later run rewrites them under the same names and commits.

The interval logic is pure (lists of half-open `(start, end)` runs) and unit-tested; the
lake scan is one DuckDB query per log reading only `index` and `log_slug` (hive
partitioning), which collapses millions of rows into runs before Python sees them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ctlib.ingest.state import LogState, StateError
from ctlib.lake import layout

Run = tuple[int, int]
"""Half-open index range [start, end)."""

TABLES = ("certs", "errors")
STATE_PREFIX = "ct_state__"

# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True, slots=True, order=True)
class CountRun:
    """Indexes [start, end), each present `count` times."""

    start: int
    end: int
    count: int


def collapse(indexes: Iterable[int]) -> list[Run]:
    """Sorted indexes (repeats allowed) -> maximal runs of consecutive ones."""
    runs: list[Run] = []
    start = prev = None
    for i in indexes:
        if prev is not None and i < prev:
            raise ValueError(f"indexes are not sorted: {i} after {prev}")
        if start is None:
            start = prev = i
        elif i > prev + 1:
            runs.append((start, prev + 1))
            start = prev = i
        else:
            prev = i
    if start is not None:
        runs.append((start, prev + 1))
    return runs


def count_runs(counts: Iterable[tuple[int, int]]) -> list[CountRun]:
    """(index, count) pairs sorted by index -> runs of consecutive indexes with equal counts
    (what the DuckDB query computes, in Python for small inputs and tests)."""
    out: list[CountRun] = []
    for index, n in counts:
        if out and out[-1].end == index and out[-1].count == n:
            out[-1] = CountRun(out[-1].start, index + 1, n)
        else:
            if out and index < out[-1].end:
                raise ValueError(f"indexes are not sorted or repeat: {index}")
            out.append(CountRun(index, index + 1, n))
    return out


def normalize(runs: Iterable[Run]) -> list[Run]:
    """Sorted, with overlapping and touching runs merged; empty runs dropped."""
    out: list[Run] = []
    for start, end in sorted(r for r in runs if r[0] < r[1]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract(runs: Iterable[Run], holes: Iterable[Run]) -> list[Run]:
    """The indexes of `runs` that are in none of `holes`, as runs."""
    out: list[Run] = []
    holes = normalize(holes)
    for start, end in normalize(runs):
        at = start
        for h_start, h_end in holes:
            if h_end <= at:
                continue
            if h_start >= end:
                break
            if h_start > at:
                out.append((at, h_start))
            at = max(at, h_end)
            if at >= end:
                break
        if at < end:
            out.append((at, end))
    return out


def clip(runs: Iterable[Run], lo: int, hi: int) -> list[Run]:
    return [(max(s, lo), min(e, hi)) for s, e in runs if max(s, lo) < min(e, hi)]


def gaps(present: Iterable[CountRun | Run], lo: int, hi: int) -> list[Run]:
    """Indexes of [lo, hi) in no run of `present`."""
    runs = [(r.start, r.end) if isinstance(r, CountRun) else r for r in present]
    return subtract([(lo, hi)], runs)


def duplicates(present: Iterable[CountRun], lo: int, hi: int) -> list[CountRun]:
    """Runs of [lo, hi) present more than once (clipped, touching runs of equal count merged)."""
    out: list[CountRun] = []
    for r in present:
        start, end = max(r.start, lo), min(r.end, hi)
        if r.count < 2 or start >= end:
            continue
        if out and out[-1].end == start and out[-1].count == r.count:
            out[-1] = CountRun(out[-1].start, end, r.count)
        else:
            out.append(CountRun(start, end, r.count))
    return out


def size(runs: Iterable[Run | CountRun]) -> int:
    return sum((r.end - r.start) if isinstance(r, CountRun) else (r[1] - r[0]) for r in runs)


def describe_gap(run: Run, what: str = "gap") -> str:
    return f"{what} [{run[0]}, {run[1]})"


def describe_duplicate(run: CountRun) -> str:
    return f"duplicate [{run.start}, {run.end}) x{run.count}"


# --------------------------------------------------------------------------- reports


@dataclass
class LogAudit:
    slug: str
    first_index: int
    next_index: int
    rows: int = 0  # rows of the lake (certs + errors) inside [first_index, next_index)
    certs: int = 0
    errors: int = 0
    gaps: list[Run] = field(default_factory=list)
    duplicates: list[CountRun] = field(default_factory=list)
    below: int = 0  # rows below first_index (backfilled history)
    above: int = 0  # rows at or above next_index (a failed run's files, not committed)
    kafka: KafkaAudit | None = None
    problem: str = ""  # the audit of this log could not be done

    @property
    def ok(self) -> bool:
        return not (self.problem or self.gaps or self.duplicates or (self.kafka and self.kafka.gaps))

    def findings(self) -> list[str]:
        lines = [f"{self.slug}: {self.problem}"] if self.problem else []
        lines += [f"{self.slug}: {describe_gap(g)} ({g[1] - g[0]} entries missing from the lake)" for g in self.gaps]
        lines += [f"{self.slug}: {describe_duplicate(d)} (in the lake)" for d in self.duplicates]
        if self.kafka:
            lines += [f"{self.slug}: Kafka {describe_gap(g)} ({g[1] - g[0]} certificates with no message)"
                      for g in self.kafka.gaps]
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug, "first_index": self.first_index, "next_index": self.next_index,
            "rows": self.rows, "certs": self.certs, "errors": self.errors,
            "gaps": [list(g) for g in self.gaps],
            "duplicates": [[d.start, d.end, d.count] for d in self.duplicates],
            "below_first_index": self.below, "at_or_above_next_index": self.above,
            "kafka": self.kafka.to_json() if self.kafka else None,
            "problem": self.problem, "ok": self.ok,
        }


@dataclass
class KafkaAudit:
    topic: str
    since: str  # what window was checked, as said
    checked_from: int  # lowest index checked
    expected: int = 0  # certificates of the lake in the window
    keys: int = 0  # distinct keys of this log found on the topic in the window
    messages: int = 0  # messages of this log read (duplicates included)
    gaps: list[Run] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "since": self.since, "checked_from": self.checked_from,
                "expected": self.expected, "keys": self.keys, "messages": self.messages,
                "gaps": [list(g) for g in self.gaps]}


def audit_from_runs(slug: str, first_index: int, next_index: int, present: Sequence[CountRun],
                    *, certs: int = 0, errors: int = 0) -> LogAudit:
    """The lake verdict for one log from the count runs of its indexes (all of them)."""
    lo, hi = first_index, next_index
    inside = sum((min(r.end, hi) - max(r.start, lo)) * r.count for r in present if max(r.start, lo) < min(r.end, hi))
    below = sum((min(r.end, lo) - r.start) * r.count for r in present if r.start < lo)
    above = sum((r.end - max(r.start, hi)) * r.count for r in present if r.end > hi)
    return LogAudit(slug, lo, hi, rows=inside, certs=certs, errors=errors,
                    gaps=gaps(present, lo, hi), duplicates=duplicates(present, lo, hi),
                    below=below, above=above)


def format_table(audits: Sequence[LogAudit]) -> str:
    """The per-log summary table, then one line per finding."""
    header = ("log", "first_index", "next_index", "rows", "certs", "errors", "gaps", "missing",
              "dups", "kafka", "status")
    rows = []
    for a in audits:
        kafka = "-"
        if a.kafka is not None:
            kafka = f"{a.kafka.keys}/{a.kafka.expected}" + (f" {len(a.kafka.gaps)} gap(s)" if a.kafka.gaps else "")
        rows.append((a.slug, str(a.first_index), str(a.next_index), str(a.rows), str(a.certs), str(a.errors),
                     str(len(a.gaps)), str(size(a.gaps)), str(len(a.duplicates)), kafka,
                     "OK" if a.ok else ("ERROR" if a.problem else "FAIL")))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    notes = []
    for a in audits:
        notes += a.findings()
        if a.below:
            notes.append(f"{a.slug}: note: {a.below} row(s) below first_index {a.first_index} (backfilled history, not audited)")
        if a.above:
            notes.append(f"{a.slug}: note: {a.above} row(s) at or above next_index {a.next_index} "
                         "(files of a run not committed yet; a later run rewrites them)")
        if a.kafka is not None and a.kafka.since:
            notes.append(f"{a.slug}: Kafka checked {a.kafka.since} on {a.kafka.topic!r}: "
                         f"{a.kafka.messages} message(s), {a.kafka.keys} distinct key(s)")
    return "\n".join(out + ([""] + notes if notes else []))


# --------------------------------------------------------------------------- state


@dataclass(frozen=True, slots=True)
class Watermark:
    slug: str
    first_index: int
    next_index: int


def parse_states(obj: Mapping[str, Any]) -> dict[str, Watermark]:
    """States from a JSON object: `{"ct_state__<slug>": <state or its JSON text>, ...}` (as
    `airflow variables export` writes, other keys ignored) or `{"<slug>": <state>, ...}`."""
    out = {}
    for key, value in obj.items():
        if key.startswith(STATE_PREFIX):
            slug = key[len(STATE_PREFIX):]
        elif key.startswith("ct_") and "__" in key:
            continue  # another ct-airflow Variable (pending plans)
        else:
            slug = key
        state = LogState.from_json(value, slug)
        out[slug] = Watermark(slug, state.first_index, state.next_index)
    return out


def states_from_airflow(slug: str | None = None) -> dict[str, Watermark]:
    """States from Airflow Variables (metadata database, and AIRFLOW_VAR_* for one log)."""
    from airflow.models import Variable

    if slug is not None:
        raw = Variable.get(STATE_PREFIX + slug, default_var=None)
        return {} if raw is None else parse_states({STATE_PREFIX + slug: raw})
    from sqlalchemy import select

    from airflow.utils.session import create_session

    with create_session() as session:
        keys = list(session.scalars(select(Variable.key).where(Variable.key.like(f"{STATE_PREFIX}%"))))
    keys += [name[len("AIRFLOW_VAR_"):].lower() for name in os.environ
             if name.startswith("AIRFLOW_VAR_" + STATE_PREFIX.upper())]
    values = {}
    for key in sorted({k for k in keys if k.startswith(STATE_PREFIX)}):  # LIKE's '_' matches any character
        raw = Variable.get(key, default_var=None)
        if raw is not None:
            values[key] = raw
    return parse_states(values)


# --------------------------------------------------------------------------- lake


def _has_files(con, pattern: str) -> bool:
    return con.execute("select count(*) from (select 1 from glob(?) limit 1)", [pattern]).fetchone()[0] > 0


_RUNS_SQL = """
with c as (
  select index, count(*) as n from ({rows}) group by index
), g as (
  select index, n, index - row_number() over (partition by n order by index) as grp from c
)
select min(index) as s, max(index) + 1 as e, n from g group by n, grp order by s
"""


def scan_lake(lake: str, slug: str, *, tables: Sequence[str] = TABLES, con=None, where: str = "",
              params: Sequence[Any] = (), window: Run | None = None) -> tuple[list[CountRun], dict[str, int]]:
    """Count runs of `slug`'s indexes over `tables` of the lake, and rows per table (inside
    `window` when given).

    Reads only `index` and `log_slug` (plus what `where` names) of
    `<table>/log=<slug>/date=*/*.parquet`; rows of another log_slug in the folder are ignored."""
    import duckdb

    root = layout.local_root(lake)
    if con is None:
        with duckdb.connect() as own:
            return scan_lake(lake, slug, tables=tables, con=own, where=where, params=params, window=window)
    selects, args, per_table = [], [], dict.fromkeys(tables, 0)
    for table in tables:
        pattern = layout.log_glob(root, table, slug)
        if not _has_files(con, pattern):
            continue
        selects.append(
            f"select index, '{table}' as t from read_parquet(?, hive_partitioning = true, union_by_name = true) "
            f"where log_slug = ?{' and ' + where if where else ''}"
        )
        args += [pattern, slug, *params]
    if not selects:
        return [], per_table
    rows = " union all ".join(selects)
    runs = [CountRun(s, e, n) for s, e, n in con.execute(_RUNS_SQL.format(rows=rows), args).fetchall()]
    lo, hi = window if window is not None else (-(2**63), 2**63 - 1)
    counted = con.execute(f"select t, count(*) from ({rows}) where index >= ? and index < ? group by t",
                          [*args, lo, hi]).fetchall()
    per_table.update(dict(counted))
    return runs, per_table


def audit_lake(lake: str, mark: Watermark, con=None) -> LogAudit:
    """The lake verdict for one log; `certs` and `errors` count the rows inside the window."""
    window = (mark.first_index, mark.next_index)
    runs, per_table = scan_lake(lake, mark.slug, con=con, window=window)
    audit = audit_from_runs(mark.slug, mark.first_index, mark.next_index, runs)
    audit.certs, audit.errors = per_table.get("certs", 0), per_table.get("errors", 0)
    return audit


def log_id_from_lake(lake: str, slug: str, con=None) -> str | None:
    import duckdb

    if con is None:
        with duckdb.connect() as own:
            return log_id_from_lake(lake, slug, own)
    pattern = layout.log_glob(layout.local_root(lake), "certs", slug)
    if not _has_files(con, pattern):
        return None
    row = con.execute("select log_id from read_parquet(?, hive_partitioning = true) where log_slug = ? limit 1",
                      [pattern, slug]).fetchone()
    return row[0] if row else None


# --------------------------------------------------------------------------- Kafka


@dataclass(frozen=True, slots=True)
class Since:
    """The Kafka window: from an index on, or from a time on (entries ingested since)."""

    index: int | None = None
    time: datetime | None = None

    def describe(self) -> str:
        if self.index is not None:
            return f"from index {self.index} on"
        if self.time is not None:
            return f"for certificates ingested since {self.time.isoformat(timespec='seconds')}"
        return "over the whole topic"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str | None, now: datetime | None = None) -> Since:
    """`1234` (an index), `90m` / `6h` / `2d` (a duration back from now), or an ISO-8601 time."""
    if text is None or not text.strip():
        return Since()
    text = text.strip()
    if text.isdigit():
        return Since(index=int(text))
    match = _DURATION.match(text.lower())
    now = now or datetime.now(UTC)
    if match:
        return Since(time=now - timedelta(seconds=float(match[1]) * _UNITS[match[2]]))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: use an index, a duration like 6h, or an ISO-8601 time") from None
    return Since(time=moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def kafka_config(bootstrap: str | None, conn_id: str | None) -> dict[str, Any]:
    """Consumer settings: `--bootstrap`, else the extras of the Airflow Kafka connection."""
    if bootstrap:
        return {"bootstrap.servers": bootstrap}
    if not conn_id:
        raise ValueError("no Kafka to check: pass --bootstrap or set CT_KAFKA_CONN_ID")
    from airflow.models.connection import Connection

    try:
        extra = Connection.get_connection_from_secrets(conn_id).extra_dejson
    except Exception as err:  # AirflowNotFoundException
        raise ValueError(f"Kafka connection {conn_id!r} (CT_KAFKA_CONN_ID): {err}") from None
    if not extra.get("bootstrap.servers"):
        raise ValueError(f"Kafka connection {conn_id!r} has no bootstrap.servers")
    return dict(extra)


def kafka_indexes(config: Mapping[str, Any], topic: str, log_ids: Mapping[str, str], *,
                  since_ms: int | None = None, timeout: float = 120.0) -> dict[str, tuple[Any, int]]:
    """Read `topic` to its end; for each slug of `log_ids` ({slug: log_id}), the sorted
    distinct indexes of its keys (a numpy array) and how many of its messages were read.

    Without a consumer group (partitions assigned, nothing committed). `since_ms` starts each
    partition at the first message at or after that time (librdkafka offsets_for_times);
    earlier messages may be read too, which only adds keys. Raises TimeoutError when the end
    of every partition is not reached within `timeout` seconds of silence."""
    import uuid
    from array import array

    import numpy as np
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

    by_id = {log_id: slug for slug, log_id in log_ids.items()}
    found: dict[str, array] = {slug: array("q") for slug in log_ids}
    messages = dict.fromkeys(log_ids, 0)
    consumer = Consumer({
        **config,
        "group.id": f"ct-audit-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
    })
    try:
        try:
            meta = consumer.list_topics(topic, timeout=min(timeout, 30.0))
        except KafkaException as err:
            raise ConnectionError(f"Kafka at {config.get('bootstrap.servers')}: cannot read metadata: {err}") from None
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            if tmeta is not None and tmeta.error is not None and tmeta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise ConnectionError(f"Kafka topic {topic!r}: {tmeta.error}")
            return {slug: (np.array([], dtype=np.int64), 0) for slug in log_ids}
        partitions = sorted(tmeta.partitions)
        assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        if since_ms is not None:
            try:
                wanted = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions],
                                                    timeout=min(timeout, 30.0))
                assignment = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                              for tp in wanted]
            except KafkaException:
                pass  # from the beginning: more to read, same verdict
        consumer.assign(assignment)
        at_end: set[int] = set()
        last_progress = time.monotonic()
        while len(at_end) < len(partitions):
            batch = consumer.consume(num_messages=10_000, timeout=0.5)
            if not batch:
                if time.monotonic() - last_progress > timeout:
                    raise TimeoutError(f"Kafka topic {topic!r}: end of partitions {sorted(set(partitions) - at_end)} "
                                       f"not reached after {timeout:.0f}s without a message")
                continue
            last_progress = time.monotonic()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise ConnectionError(f"Kafka topic {topic!r}: {err}")
                at_end.discard(msg.partition())
                key = msg.key()
                if not key:
                    continue
                log_id, _, index = key.decode("utf-8", "replace").rpartition(":")
                slug = by_id.get(log_id)
                if slug is not None and index.isdigit():
                    found[slug].append(int(index))
                    messages[slug] += 1
    finally:
        consumer.close()
    return {slug: (np.unique(np.frombuffer(found[slug], dtype=np.int64)) if found[slug] else
                   np.array([], dtype=np.int64), messages[slug]) for slug in log_ids}


def runs_of_array(indexes) -> list[Run]:
    """Sorted distinct indexes (numpy int64) -> runs, without a Python loop per index."""
    import numpy as np

    if len(indexes) == 0:
        return []
    breaks = np.flatnonzero(np.diff(indexes) != 1)
    starts = np.concatenate(([indexes[0]], indexes[breaks + 1]))
    ends = np.concatenate((indexes[breaks] + 1, [indexes[-1] + 1]))
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def audit_kafka(lake: str, mark: Watermark, present: tuple[Any, int], topic: str, since: Since,
                con=None) -> KafkaAudit:
    """Which certificates of the lake in [first_index, next_index) (and the window) have no message."""
    lo = mark.first_index if since.index is None else max(mark.first_index, since.index)
    where, params = "", []
    if since.time is not None:
        where, params = "ingested_at >= ?", [since.time]
    cert_runs, per_table = scan_lake(lake, mark.slug, tables=("certs",), con=con, where=where, params=params)
    expected = clip([(r.start, r.end) for r in cert_runs], lo, mark.next_index)
    indexes, messages = present
    keys = runs_of_array(indexes)
    return KafkaAudit(topic=topic, since=since.describe(), checked_from=lo, expected=size(expected),
                      keys=size(clip(keys, lo, mark.next_index)), messages=messages,
                      gaps=subtract(expected, keys))


# --------------------------------------------------------------------------- CLI


def run_audit(*, lake: str, states: Mapping[str, Watermark], kafka: Mapping[str, Any] | None = None,
              topic: str = "ct-certs", since: Since = Since(), log_ids: Mapping[str, str] | None = None,
              kafka_timeout: float = 120.0) -> list[LogAudit]:
    """Audit every log of `states`; with `kafka` (consumer config), the topic too."""
    import duckdb

    con = duckdb.connect()
    try:
        return _run_audit(con, lake, states, kafka, topic, since, log_ids, kafka_timeout)
    finally:
        con.close()


def _run_audit(con, lake, states, kafka, topic, since, log_ids, kafka_timeout) -> list[LogAudit]:
    import duckdb

    audits = []
    for slug in sorted(states):
        try:
            audits.append(audit_lake(lake, states[slug], con))
        except (duckdb.Error, OSError, ValueError) as err:
            audits.append(LogAudit(slug, states[slug].first_index, states[slug].next_index,
                                   problem=f"cannot scan the lake: {err}"))
    if kafka is None:
        return audits
    ids: dict[str, str] = {}
    for audit in audits:
        log_id = (log_ids or {}).get(audit.slug) or log_id_from_lake(lake, audit.slug, con)
        if log_id:
            ids[audit.slug] = log_id
        elif audit.next_index > audit.first_index and not audit.problem:
            audit.problem = "cannot tell its log_id (not in the log list, no certs in the lake) to match Kafka keys"
    since_ms = int(since.time.timestamp() * 1000) if since.time is not None else None
    present = kafka_indexes(kafka, topic, ids, since_ms=since_ms, timeout=kafka_timeout) if ids else {}
    for audit in audits:
        if audit.slug in present:
            audit.kafka = audit_kafka(lake, states[audit.slug], present[audit.slug], topic, since, con)
    return audits


def _log_ids_from_log_list(settings) -> dict[str, str]:
    try:
        from ctlib.ct.loglist import LogListError, load_log_list

        return {log.slug: log.log_id for log in load_log_list(settings.log_list_path).logs}
    except (LogListError, OSError):
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.audit",
        description="Prove the lake holds every index of [first_index, next_index) exactly once "
        "(certs and errors together), and optionally that Kafka has every certificate's key.",
    )
    add = parser.add_argument
    add("--log", metavar="SLUG", help="audit this log only (default: every log with state)")
    add("--state-json", type=Path, metavar="FILE",
        help="read states from this JSON file ({'ct_state__<slug>': state, ...}) instead of Airflow Variables")
    add("--lake", help="lake root (default: CT_LAKE)")
    add("--kafka", action="store_true", help="also check the topic for a key <log_id>:<index> per certificate")
    add("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default: the Airflow connection CT_KAFKA_CONN_ID)")
    add("--topic", help="topic (default: CT_KAFKA_TOPIC or ct-certs)")
    add("--since", help="Kafka window: an index, a duration back from now (6h, 2d) or an ISO-8601 time")
    add("--kafka-timeout", type=float, default=120.0, help="seconds without a message before giving up (default 120)")
    add("--json", action="store_true", help="print the findings as JSON instead of a table")
    args = parser.parse_args(argv)

    from ctlib.settings import Settings

    try:
        settings = Settings.from_env()
        since = parse_since(args.since)
        if args.since and not args.kafka:
            parser.error("--since applies to --kafka")
        if args.state_json is not None:
            try:
                states = parse_states(json.loads(args.state_json.read_text()))
            except (OSError, json.JSONDecodeError) as err:
                raise ValueError(f"cannot read {args.state_json}: {err}") from None
            if args.log:
                states = {k: v for k, v in states.items() if k == args.log}
        else:
            try:
                states = states_from_airflow(args.log)
            except StateError:
                raise
            except Exception as err:  # no metadata database, no Airflow configured
                raise ValueError(f"cannot read the states from Airflow Variables ({type(err).__name__}: {err}); "
                                 "run where Airflow is configured, or pass --state-json") from None
        if not states:
            where = str(args.state_json) if args.state_json else "Airflow Variables"
            raise ValueError(f"no stored state {'for ' + repr(args.log) if args.log else 'of any log'} in {where}")
        kafka = kafka_config(args.bootstrap, settings.kafka_conn_id) if args.kafka else None
        audits = run_audit(
            lake=args.lake or settings.lake, states=states, kafka=kafka,
            topic=args.topic or settings.kafka_topic, since=since,
            log_ids=_log_ids_from_log_list(settings) if args.kafka else None,
            kafka_timeout=args.kafka_timeout,
        )
    except (ValueError, ConnectionError, TimeoutError, StateError) as err:
        print(f"audit: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([a.to_json() for a in audits], indent=2))
    else:
        print(format_table(audits))
    if any(a.problem for a in audits):
        return 2
    return 0 if all(a.ok for a in audits) else 1


if __name__ == "__main__":
    sys.exit(main())
