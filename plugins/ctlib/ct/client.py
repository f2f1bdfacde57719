"""One interface over the two log APIs (RFC 6962 and static-ct-api), so ingest never asks
which one a log speaks. `open_client` picks the implementation from the log list entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ctlib.decode.entries import RawEntry
from ctlib.ct.loglist import CTLog
from ctlib.ct.merkle import CompactRange
from ctlib.settings import Settings


class VerificationError(RuntimeError):
    """A log served something that does not verify: a bad signature, inconsistent tree heads,
    a rolled-back size, or entries that do not hash to the signed root. `kind` names which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A tree head whose signature has been verified with the log's key."""

    size: int
    timestamp: int  # ms
    root_hash: bytes
    signed: str  # the signed form as served (get-sth JSON or checkpoint note), for incident records


class LogClient(Protocol):
    log: CTLog

    def tree_head(self) -> TreeHead:
        """The log's newest tree head. Raises VerificationError("bad_signature", ...) if its
        signature does not verify with the log list's key."""

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """A consistency proof between tree sizes `first` < `second` (as served or as built
        from the log's hash tiles); the caller verifies it."""

    def compact_range_at(self, head: TreeHead) -> CompactRange:
        """The compact range of [0, head.size), checked against head.root_hash; used to start
        verified ingestion of a log in the middle. Raises VerificationError on mismatch."""

    def compact_range_before(self, index: int, head: TreeHead) -> CompactRange:
        """[0, index) as the log's tree of head.size has it (index < head.size). Not checked
        here: the caller merges entries onto it and checks the result against a signed root."""

    def fetch_range(self, start: int, end: int, *, batch: int, in_flight: int) -> Iterator[list[RawEntry]]:
        """Every entry of [start, end) in index order, in batches. `end` must not exceed the
        size of a tree head already obtained."""

    def close(self) -> None: ...


def open_client(log: CTLog, settings: Settings, *, share: int = 1) -> LogClient:
    """A client of `log` whose session sends at most 1/`share` of the log's request rate
    (ctlib.ct.limits): `share` is how many clients of the log may run at once (a mapped fetch
    task: CT_FETCH_PARALLELISM). Raises ctlib.ct.limits.LimitsError if the limits file is bad."""
    from ctlib.http import HttpPolicy, LogSession
    from ctlib.ct.limits import limits_for

    limits = limits_for(log, settings)
    session = LogSession(log.slug, HttpPolicy.from_settings(settings), requests_per_second=limits.rate(share))
    if log.kind == "rfc6962":
        from ctlib.ct.rfc6962 import RFC6962Client

        return RFC6962Client(log, session, max_batch=limits.entries_per_request)
    from ctlib.ct.static import StaticClient

    return StaticClient(log, session, settings)
