"""Looking for secrets where data goes: a scanner that says where it found which secret, and
the places a pipeline run writes to (files, Parquet read back, Kafka messages, the metadata
database's XComs and Variables).

A `Secret` is matched in several forms (`Secret.forms`): as is, URL-encoded, and base64 at
each of the three byte alignments, so it is also found inside a longer base64 text (an HTTP
Basic header of `login:secret`, a binary column a Kafka message carries as base64). Matching
ignores case. A `Finding` names the secret by its label, the form and the place, never the
secret itself, so an assertion message can be printed.

    scanner = SecretScanner([Secret("api key", key), ...])
    findings = scanner.scan_all(files_under(lake), parquet_rows(lake), kafka_messages(servers, topics))
    assert not findings, "\\n".join(map(str, findings))
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

Place = tuple[str, bytes | str | None]
"""Where (a description to show) and what was written there."""


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret to look for, `label` saying what it is (shown in findings instead of it)."""

    label: str
    value: str = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) < 12:
            raise ValueError(f"{self.label}: too short to be told apart from ordinary data")

    def forms(self) -> dict[str, bytes]:
        """Its forms by name, lower-cased: raw, url (when it differs), base64 at offsets 0-2."""
        raw = self.value.encode()
        found = {"raw": raw.lower()}
        url = quote(self.value, safe="")
        if url != self.value:
            found["url-encoded"] = url.encode().lower()
        for offset in range(3):
            # Encode behind `offset` filler bytes; keep the characters that depend on the
            # secret's bytes alone (not on the filler, not on the padding).
            encoded = base64.b64encode(b"\0" * offset + raw)
            start = (0, 2, 3)[offset]
            end = (offset + len(raw)) // 3 * 4
            found[f"base64+{offset}"] = encoded[start:end].lower()
        return found


@dataclass(frozen=True, slots=True)
class Finding:
    """One secret found in one place, in one form."""

    secret: str  # its label
    form: str
    place: str

    def __str__(self) -> str:
        return f"{self.secret} ({self.form}) in {self.place}"


class SecretScanner:
    """Finds any of `secrets`, in any of its forms, in what places hold."""

    def __init__(self, secrets: Iterable[Secret]) -> None:
        self.secrets = tuple(secrets)
        self._forms = [(s.label, name, form) for s in self.secrets for name, form in s.forms().items()]

    def scan(self, place: str, data: bytes | str | None) -> list[Finding]:
        """The findings in `data`, one per secret (its first matching form)."""
        if not data:
            return []
        haystack = (data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)).lower()
        findings: dict[str, Finding] = {}
        for label, name, form in self._forms:
            if label not in findings and form in haystack:
                findings[label] = Finding(label, name, place)
        return list(findings.values())

    def scan_all(self, *sources: Iterable[Place]) -> list[Finding]:
        """The findings of every place of every source."""
        return [finding for source in sources for place, data in source for finding in self.scan(place, data)]


# --------------------------------------------------------------------------- places


def files_under(root: Path, *, skip: Iterable[Path] = ()) -> Iterator[Place]:
    """Every file under `root` (none if it does not exist), its raw bytes."""
    skipped = {Path(p).resolve() for p in skip}
    if not root.exists():
        return
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.resolve() not in skipped:
            yield f"file {path}", path.read_bytes()


def parquet_rows(root: Path) -> Iterator[Place]:
    """Every Parquet file under `root` read back: its rows as JSON text (values as text),
    its schema and key-value metadata (compressed pages hide text from a raw scan)."""
    import pyarrow.parquet as pq

    for path in sorted(root.rglob("*.parquet")):
        table = pq.read_table(path)
        yield f"parquet rows {path}", json.dumps(table.to_pylist(), default=_text)
        yield f"parquet schema {path}", str(table.schema) + repr(table.schema.metadata)


def kafka_messages(bootstrap_servers: str, topics: Iterable[str]) -> Iterator[Place]:
    """Every message of `topics`: its key, value and each header, read from the start."""
    from ctlib.localsvc.broker import consume_all

    for topic in topics:
        for record in consume_all(bootstrap_servers, topic):
            where = f"kafka {topic} partition {record.partition} offset {record.offset}"
            yield f"{where} key", record.key
            yield f"{where} value", record.value
            for name, value in record.headers:
                yield f"{where} header {name!r}", name.encode() + b"=" + (value or b"")


def xcoms() -> Iterator[Place]:
    """Every XCom in the metadata database: as stored, and deserialized."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index,
                                      XComModel.key, XComModel.value)).all()
    for dag_id, run_id, task_id, map_index, key, value in rows:
        where = f"xcom {dag_id}/{run_id}/{task_id}[{map_index}] {key!r}"
        yield where, _text(value)
        yield f"{where} (deserialized)", _text(XComModel.deserialize_value(_Row(value)))


def variables() -> Iterator[Place]:
    """Every Airflow Variable in the metadata database: its key and its value."""
    from airflow.models import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(Variable)).scalars().all()
        pairs = [(v.key, v.val) for v in rows]  # val decrypts, as Variable.get does
    for key, value in pairs:
        yield f"variable {key!r}", f"{key}\n{value}"


@dataclass(frozen=True, slots=True)
class _Row:
    """What XComModel.deserialize_value reads of a row."""

    value: object


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr)
    except (TypeError, ValueError):
        return repr(value)
