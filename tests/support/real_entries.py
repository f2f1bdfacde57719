"""The real RFC 6962 get-entries entries of the shared CT data, each with its expected facts
(expected_decoded_facts.json): `REAL`, their test ids `REAL_IDS`, and `RealEntry`."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from tests.paths import CTDATA

FACTS: dict[str, Any] = json.loads((CTDATA / "expected_decoded_facts.json").read_text())
ENTRY_TYPES = {"X509LogEntryType": "x509", "PrecertLogEntryType": "precert"}


@dataclass(frozen=True)
class RealEntry:
    """One real get-entries entry and its expected facts."""

    source: str  # path under CTDATA
    position: int  # position inside the file
    leaf_input: bytes
    extra_data: bytes
    facts: dict[str, Any]

    @property
    def entry_type(self) -> str:
        return ENTRY_TYPES[self.facts["entry_type"]]


def real_entries() -> list[RealEntry]:
    """Every entry of every rfc6962 get-entries / get-entry-and-proof file, with its facts."""
    out = []
    for source, facts in FACTS.items():
        if not source.startswith("rfc6962/"):
            continue
        body = json.loads((CTDATA / source).read_text())
        items = body["entries"] if "entries" in body else [body]  # get-entry-and-proof: top level
        assert len(items) == len(facts), source
        for position, (item, fact) in enumerate(zip(items, facts, strict=True)):
            leaf_input = base64.b64decode(item["leaf_input"])
            extra_data = base64.b64decode(item["extra_data"])
            out.append(RealEntry(source, position, leaf_input, extra_data, fact))
    return out


REAL = real_entries()
REAL_IDS = [f"{e.source.removeprefix('rfc6962/')}#{e.position}" for e in REAL]
