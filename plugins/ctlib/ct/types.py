"""The types every CT log client shares: what a client returns (TreeHead, RawEntry), what it
raises when a log misbehaves (VerificationError), and the LogClient protocol itself.

One interface over the two log APIs (RFC 6962 and static-ct-api), so ingest never asks
which one a log speaks. The implementations (ctlib.ct.rfc6962, ctlib.ct.static) import
these types; `ctlib.ct.client.open_client` picks the implementation from the log list entry.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ctlib.ct.loglist import CTLog
from ctlib.ct.merkle import CompactRange

if TYPE_CHECKING:
    from ctlib.http import HttpSession


class VerificationError(RuntimeError):
    """A log served something that does not verify: a bad signature, inconsistent tree heads,
    a rolled-back size, or entries that do not hash to the signed root. `kind` names which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


Point = tuple[int, int]
"""(index, log timestamp in ms) of one entry: what a time-to-index search knows of a log."""


@dataclass(frozen=True, slots=True)
class TreeHead:
    """A tree head whose signature has been verified with the log's key."""

    size: int
    timestamp: int  # ms
    root_hash: bytes
    signed: str  # the signed form as served (get-sth JSON or checkpoint note), for incident records


@dataclass(frozen=True, slots=True)
class RawEntry:
    """One log entry as RFC 6962 get-entries serves it (ctlib.ct.static converts static-ct-api
    entries to this form): `leaf_input` is the MerkleTreeLeaf, `extra_data` the entry's chain
    (a certificate_chain, or a PrecertChainEntry for a precertificate)."""

    index: int
    leaf_input: bytes
    extra_data: bytes


class LogClient(Protocol):
    log: CTLog
    session: HttpSession
    """The client's HTTP session; ingest logs its request, retry and rate-limit counters."""

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

    def entry_timestamps(self, index: int, tree_size: int, count: int = 1) -> list[Point]:
        """(index, log timestamp in ms) of entry `index` of the tree of `tree_size` (index < tree_size),
        plus any neighbours read with it, in index order.

        For a time-to-index search: one cheap read, nothing verified, no chain fetched. An RFC
        6962 log gives entries [index, index + count) as far as one get-entries answer goes
        (at least the one entry); a tiled log every entry of the data tile holding `index` (up
        to 256, a partial last tile of tree_size % 256), worth caching. Raises ValueError
        unless 0 <= index < tree_size."""

    def close(self) -> None: ...
