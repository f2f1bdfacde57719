"""The audit's verdicts and how they are told (pure): `LogAudit` per log (the lake, its
`KafkaAudit` when the topic was checked, its `DownstreamAudit` when ct_score has a watermark
of it), made from count runs by `audit_from_runs` and `kafka_audit_from_runs` (and by
ctlib.ops.audit.downstream); `format_table` is the CLI's report, `LogAudit.to_json` its --json."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ctlib.ops.audit.intervals import CountRun, Run, clip, duplicates, gaps, size, subtract


def describe_gap(run: Run, what: str = "gap") -> str:
    return f"{what} [{run[0]}, {run[1]})"


def describe_duplicate(run: CountRun) -> str:
    return f"duplicate [{run.start}, {run.end}) x{run.count}"


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


@dataclass
class DownstreamAudit:
    """The downstream verdict for one log: `consumer`'s watermark `next_index`, checked from
    `first_index`; `certificates` with a name in there, `scored` of them with scores rows;
    the first index of each kind of finding (None: none) and how many."""

    consumer: str
    first_index: int
    next_index: int
    certificates: int = 0
    scored: int = 0
    missing: int = 0
    first_missing: int | None = None
    doubled: int = 0  # (index, name) pairs of scores present more than once
    first_doubled: tuple[int, str] | None = None
    stray_alerts: int = 0  # alerts rows with no scores row
    first_stray_alert: tuple[int, str] | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.doubled or self.stray_alerts)

    def findings(self, slug: str) -> list[str]:
        lines = []
        where = f"{slug}: downstream {self.consumer}"
        if self.missing:
            lines.append(f"{where}: {self.missing} certificate(s) with a name below its watermark {self.next_index} "
                         f"have no scores rows; the first at index {self.first_missing}")
        if self.first_doubled is not None:
            lines.append(f"{where}: {self.doubled} (index, name) pair(s) scored more than once; the first at index "
                         f"{self.first_doubled[0]} ({self.first_doubled[1]})")
        if self.first_stray_alert is not None:
            lines.append(f"{where}: {self.stray_alerts} alerts row(s) not in scores; the first at index "
                         f"{self.first_stray_alert[0]} ({self.first_stray_alert[1]})")
        return lines

    def describe(self) -> str:
        """The report table's cell."""
        return f"{self.scored}/{self.certificates}" + ("" if self.ok else " FAIL")

    def to_json(self) -> dict[str, Any]:
        return {"consumer": self.consumer, "first_index": self.first_index, "next_index": self.next_index,
                "certificates": self.certificates, "scored": self.scored, "missing": self.missing,
                "first_missing": self.first_missing, "doubled": self.doubled,
                "first_doubled": list(self.first_doubled) if self.first_doubled else None,
                "stray_alerts": self.stray_alerts,
                "first_stray_alert": list(self.first_stray_alert) if self.first_stray_alert else None,
                "ok": self.ok}


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
    below: int = 0  # rows below first_index (backfilled history: duplicates count, gaps do not)
    above: int = 0  # rows at or above next_index (a failed run's files, not committed)
    kafka: KafkaAudit | None = None
    downstream: DownstreamAudit | None = None  # ct_score's watermark checked (when the log has one)
    problem: str = ""  # the audit of this log could not be done

    @property
    def ok(self) -> bool:
        return not (self.problem or self.gaps or self.duplicates or (self.kafka and self.kafka.gaps)
                    or (self.downstream and not self.downstream.ok))

    def findings(self) -> list[str]:
        lines = [f"{self.slug}: {self.problem}"] if self.problem else []
        lines += [f"{self.slug}: {describe_gap(g)} ({g[1] - g[0]} entries missing from the lake)" for g in self.gaps]
        lines += [f"{self.slug}: {describe_duplicate(d)} (in the lake)" for d in self.duplicates]
        if self.kafka:
            lines += [f"{self.slug}: Kafka {describe_gap(g)} ({g[1] - g[0]} certificates with no message)"
                      for g in self.kafka.gaps]
        if self.downstream:
            lines += self.downstream.findings(self.slug)
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug, "first_index": self.first_index, "next_index": self.next_index,
            "rows": self.rows, "certs": self.certs, "errors": self.errors,
            "gaps": [list(g) for g in self.gaps],
            "duplicates": [[d.start, d.end, d.count] for d in self.duplicates],
            "below_first_index": self.below, "at_or_above_next_index": self.above,
            "kafka": self.kafka.to_json() if self.kafka else None,
            "downstream": self.downstream.to_json() if self.downstream else None,
            "problem": self.problem, "ok": self.ok,
        }


def audit_from_runs(slug: str, first_index: int, next_index: int, present: Sequence[CountRun],
                    *, certs: int = 0, errors: int = 0) -> LogAudit:
    """The lake verdict for one log from the count runs of its indexes (all of them): gaps in
    [first_index, next_index), duplicates anywhere below next_index (backfilled history too:
    it need not be complete, but nothing may be in it twice)."""
    lo, hi = first_index, next_index
    inside = sum((min(r.end, hi) - max(r.start, lo)) * r.count for r in present if max(r.start, lo) < min(r.end, hi))
    below = sum((min(r.end, lo) - r.start) * r.count for r in present if r.start < lo)
    above = sum((r.end - max(r.start, hi)) * r.count for r in present if r.end > hi)
    return LogAudit(slug, lo, hi, rows=inside, certs=certs, errors=errors,
                    gaps=gaps(present, lo, hi), duplicates=duplicates(present, 0, hi),
                    below=below, above=above)


def kafka_audit_from_runs(certs: Iterable[Run], keys: Sequence[Run], lo: int, hi: int, *, topic: str,
                          since: str, messages: int) -> KafkaAudit:
    """The Kafka verdict for [lo, hi): which indexes of `certs` (the lake's certificates)
    are in no run of `keys` (the distinct indexes keyed on the topic)."""
    expected = clip(certs, lo, hi)
    return KafkaAudit(topic=topic, since=since, checked_from=lo, expected=size(expected),
                      keys=size(clip(keys, lo, hi)), messages=messages, gaps=subtract(expected, keys))


def format_table(audits: Sequence[LogAudit]) -> str:
    """The per-log summary table, then one line per finding."""
    header = ("log", "first_index", "next_index", "rows", "certs", "errors", "gaps", "missing",
              "dups", "kafka", "scored", "status")
    rows = []
    for a in audits:
        kafka = "-"
        if a.kafka is not None:
            kafka = f"{a.kafka.keys}/{a.kafka.expected}" + (f" {len(a.kafka.gaps)} gap(s)" if a.kafka.gaps else "")
        scored = a.downstream.describe() if a.downstream is not None else "-"
        rows.append((a.slug, str(a.first_index), str(a.next_index), str(a.rows), str(a.certs), str(a.errors),
                     str(len(a.gaps)), str(size(a.gaps)), str(len(a.duplicates)), kafka, scored,
                     "OK" if a.ok else ("ERROR" if a.problem else "FAIL")))
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    notes = []
    for a in audits:
        notes += a.findings()
        if a.below:
            notes.append(f"{a.slug}: note: {a.below} row(s) below first_index {a.first_index} "
                         "(backfilled history: checked for duplicates, not for gaps)")
        if a.above:
            notes.append(f"{a.slug}: note: {a.above} row(s) at or above next_index {a.next_index} "
                         "(files of a run not committed yet; a later run rewrites them)")
        if a.kafka is not None and a.kafka.since:
            notes.append(f"{a.slug}: Kafka checked {a.kafka.since} on {a.kafka.topic!r}: "
                         f"{a.kafka.messages} message(s), {a.kafka.keys} distinct key(s)")
        if a.downstream is not None:
            d = a.downstream
            notes.append(f"{a.slug}: downstream {d.consumer}: [{d.first_index}, {d.next_index}) checked: "
                         f"{d.scored} of {d.certificates} certificate(s) with a name scored")
    return "\n".join(out + ([""] + notes if notes else []))
