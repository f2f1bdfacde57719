"""Client of the classic RFC 6962 log API: get-sth, get-entries, get-sth-consistency, and
get-entry-and-proof (or get-entries + get-proof-by-hash) to start in the middle of a log.

`fetch_range` returns every entry of [start, end) in index order or raises: logs answer
get-entries with fewer entries than asked (their cap), so it learns the cap from the first
answer and asks for the rest in cap-sized windows, several in flight at once. A log whose cap
is known beforehand (`max_batch`, from ctlib.ct.limits) is never asked more than that.

Starting mid-log needs one leaf's audit path. Some logs do not implement get-entry-and-proof:
when it answers 404 or 501, the client reads the leaf with get-entries and its audit path with
get-proof-by-hash (RFC 6962 section 4.5) instead, for that call and every later one (a 400 is
remembered likewise once the fallback has answered: a 400 may also mean a bad request). Both
ways give the same compact ranges.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import struct
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ctlib.ct.loglist import CTLog
from ctlib.ct.merkle import CompactRange, leaf_hash, left_siblings, verify_inclusion
from ctlib.ct.sth import SignatureError, SignedTreeHead, verify_sth
from ctlib.ct.types import RawEntry, TreeHead, VerificationError
from ctlib.http import HttpError, HttpSession

log = logging.getLogger(__name__)

# get-entry-and-proof answers that mean "not implemented here": 404 and 501 for certain; a 400
# may be that too (some logs refuse unknown endpoints so) or a bad request.
_NOT_IMPLEMENTED = frozenset({404, 501})
_MAYBE_NOT_IMPLEMENTED = frozenset({400})
_ENTRY_AND_PROOF = "get-entry-and-proof"
_BY_HASH = "get-entries + get-proof-by-hash"
_LEAF_HEAD = struct.Struct(">BBQ")  # MerkleTreeLeaf: version, leaf_type, TimestampedEntry.timestamp


class LogResponseError(RuntimeError):
    """A log answered something that breaks the protocol; names the log and index range."""


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} is missing or not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


class RFC6962Client:
    """Reads one RFC 6962 log (a ctlib.ct.types.LogClient). Thread-safe: the session is."""

    def __init__(self, log: CTLog, session: HttpSession, *, max_batch: int = 0) -> None:
        self.log = log
        self.session = session
        self.max_batch = max_batch  # the log's known cap on entries per get-entries; 0: unknown
        self.learned_cap: int | None = None
        self._proof_way: str | None = None  # _ENTRY_AND_PROOF or _BY_HASH once a call settled it
        self._proof_lock = threading.Lock()

    def _url(self, endpoint: str) -> str:
        return f"{self.log.url}ct/v1/{endpoint}"

    def get_sth(self) -> SignedTreeHead:
        body = self.session.get_json(self._url("get-sth"))
        try:
            return SignedTreeHead.from_json(body)
        except (ValueError, TypeError, KeyError) as err:
            raise LogResponseError(f"{self.log.slug}: malformed get-sth answer: {err}") from None

    def close(self) -> None:
        self.session.close()

    def tree_head(self) -> TreeHead:
        sth = self.get_sth()
        try:
            verify_sth(sth, self.log.key_der)
        except SignatureError as err:
            raise VerificationError(
                "bad_signature", f"{self.log.slug}: tree head of size {sth.tree_size} at {sth.timestamp}: {err}"
            ) from None
        return TreeHead(sth.tree_size, sth.timestamp, sth.root_hash, json.dumps(sth.to_json()))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self.get_sth_consistency(first, second)

    def compact_range_at(self, head: TreeHead) -> CompactRange:
        """[0, head.size) from the audit path of the last leaf: for the rightmost leaf every
        sibling is a left one, and they are exactly the subtrees covering [0, size - 1).
        The leaf and path come from get-entry-and-proof, or get-entries + get-proof-by-hash
        where the log lacks it (see the module docstring)."""
        if head.size == 0:
            return CompactRange.empty()
        last = head.size - 1
        try:
            leaf, path = self._leaf_and_path(last, head.size)
            verify_inclusion(leaf, last, head.size, path, head.root_hash)
            left = CompactRange(0, last, tuple(reversed(path)))
            return left.merge(CompactRange.from_leaf_hashes(last, [leaf]))
        except (ValueError, TypeError, KeyError) as err:
            raise VerificationError(
                "root_mismatch", f"{self.log.slug}: cannot anchor at size {head.size} (leaf {last}): {err}"
            ) from None

    def compact_range_before(self, index: int, head: TreeHead) -> CompactRange:
        """The left siblings of leaf `index`'s audit path are the subtrees covering [0, index).
        The path comes as for compact_range_at."""
        if index == 0:
            return CompactRange.empty()
        try:
            _, path = self._leaf_and_path(index, head.size)
            return CompactRange(0, index, tuple(left_siblings(index, head.size, path)))
        except (ValueError, TypeError, KeyError) as err:
            raise LogResponseError(
                f"{self.log.slug}: malformed audit path answer for leaf {index} at size {head.size}: {err}"
            ) from None

    def _settle(self, way: str, why: str = "") -> None:
        """Remember how this client gets audit paths; logged once per client (and on a change)."""
        with self._proof_lock:
            if self._proof_way == way:
                return
            self._proof_way = way
        log.info("%s: audit paths come from %s%s", self.log.slug, way, why)

    def _leaf_and_path(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """The leaf hash of entry `index` and its audit path in the tree of `size`, unverified.
        Malformed answers raise ValueError, TypeError or KeyError (the caller names them);
        HttpError and LogResponseError name the log and the index."""
        refused: HttpError | None = None
        if self._proof_way != _BY_HASH:
            try:
                body = self.session.get_json(
                    self._url("get-entry-and-proof"), {"leaf_index": index, "tree_size": size}
                )
            except HttpError as err:
                if err.status not in _NOT_IMPLEMENTED | _MAYBE_NOT_IMPLEMENTED:
                    raise
                refused = err
            else:
                self._settle(_ENTRY_AND_PROOF)
                leaf = leaf_hash(_b64(body["leaf_input"], "leaf_input"))
                return leaf, [_b64(h, "audit_path hash") for h in body["audit_path"]]
        why = "" if refused is None else f" (get-entry-and-proof answered HTTP {refused.status})"
        if refused is not None and refused.status in _NOT_IMPLEMENTED:
            self._settle(_BY_HASH, why)
        try:
            found = self._leaf_and_path_by_hash(index, size)
        except Exception as err:
            if refused is not None:
                err.add_note(f"after get-entry-and-proof answered HTTP {refused.status}: {refused}")
            raise
        self._settle(_BY_HASH, why)
        return found

    def _leaf_and_path_by_hash(self, index: int, size: int) -> tuple[bytes, list[bytes]]:
        """get-entries for leaf `index`, then get-proof-by-hash of its leaf hash at `size`."""
        leaf = leaf_hash(self.get_entries(index, index + 1)[0].leaf_input)
        params = {"hash": base64.b64encode(leaf).decode("ascii"), "tree_size": size}
        try:
            body = self.session.get_json(self._url("get-proof-by-hash"), params)
        except HttpError as err:
            raise HttpError(
                f"{self.log.slug}: get-proof-by-hash for leaf {index} at tree size {size}: {err}",
                err.status, unreachable=err.unreachable,
            ) from None
        got = body["leaf_index"]
        if isinstance(got, bool) or not isinstance(got, int):
            raise ValueError(f"get-proof-by-hash leaf_index {got!r} is not an integer")
        if got != index:
            raise LogResponseError(
                f"{self.log.slug}: get-proof-by-hash for the hash of leaf {index} (tree size {size}) "
                f"answered leaf_index {got}: the log holds this leaf at another index too, so "
                f"leaf {index} has no audit path this way"
            )
        return leaf, [_b64(h, "audit_path hash") for h in body["audit_path"]]

    def entry_timestamps(self, index: int, tree_size: int, count: int = 1) -> list[tuple[int, int]]:
        """[(index, log timestamp in ms)] of entries [index, index + count) of the tree of
        `tree_size` (clipped to it), read with one get-entries request: as many as its answer
        holds, at least entry `index`. The timestamp is the MerkleTreeLeaf's (the 8 bytes after
        version and leaf_type); nothing is verified. Raises ValueError unless 0 <= index <
        tree_size, LogResponseError naming the log and index for a leaf too short or of another
        version or leaf type."""
        if not 0 <= index < tree_size:
            raise ValueError(f"{self.log.slug}: entry {index} is not in a tree of size {tree_size}")
        points = []
        for entry in self.get_entries(index, min(tree_size, index + max(1, count))):
            leaf = entry.leaf_input
            if len(leaf) < _LEAF_HEAD.size:
                raise LogResponseError(
                    f"{self.log.slug}: entry {entry.index}: leaf_input of {len(leaf)} bytes is too short for a "
                    f"MerkleTreeLeaf header ({_LEAF_HEAD.size} bytes)"
                )
            version, leaf_type, timestamp = _LEAF_HEAD.unpack_from(leaf)
            if version != 0 or leaf_type != 0:
                raise LogResponseError(
                    f"{self.log.slug}: entry {entry.index}: MerkleTreeLeaf version {version}, leaf_type "
                    f"{leaf_type} (only 0, 0 is known)"
                )
            points.append((entry.index, timestamp))
        return points

    def get_sth_consistency(self, first: int, second: int) -> list[bytes]:
        body = self.session.get_json(
            self._url("get-sth-consistency"), {"first": first, "second": second}
        )
        try:
            return [_b64(h, "consistency hash") for h in body["consistency"]]
        except (ValueError, TypeError, KeyError) as err:
            raise LogResponseError(
                f"{self.log.slug}: malformed get-sth-consistency {first}->{second}: {err}"
            ) from None

    def get_entries(self, start: int, end: int) -> list[RawEntry]:
        """One get-entries request for [start, end) (exclusive end). May return fewer."""
        body = self.session.get_json(self._url("get-entries"), {"start": start, "end": end - 1})
        raw_entries = body.get("entries") if isinstance(body, dict) else None
        if not isinstance(raw_entries, list):
            raise LogResponseError(
                f"{self.log.slug}: get-entries [{start}, {end}) answer has no 'entries' array"
            )
        if not raw_entries:
            raise LogResponseError(f"{self.log.slug}: get-entries [{start}, {end}) returned no entry")
        if len(raw_entries) > end - start:
            raise LogResponseError(
                f"{self.log.slug}: get-entries [{start}, {end}) returned {len(raw_entries)} "
                f"entries, more than the {end - start} asked"
            )
        entries = []
        for offset, raw in enumerate(raw_entries):
            index = start + offset
            # Without the bytes there is no leaf hash, so the tree cannot be checked and the
            # entry cannot be kept: the range fails loudly rather than skipping the index.
            try:
                if not isinstance(raw, dict):
                    raise ValueError("entry is not an object")
                leaf = _b64(raw.get("leaf_input"), "leaf_input")
                extra = _b64(raw.get("extra_data"), "extra_data")
            except ValueError as err:
                raise LogResponseError(f"{self.log.slug}: index {index}: {err}") from None
            entries.append(RawEntry(index=index, leaf_input=leaf, extra_data=extra))
        return entries

    def _fill_window(self, start: int, end: int) -> list[RawEntry]:
        """All of [start, end), asking again for the remainder of short answers."""
        out: list[RawEntry] = []
        while start + len(out) < end:
            out.extend(self.get_entries(start + len(out), end))
        return out

    def fetch_range(self, start: int, end: int, *, batch: int, in_flight: int) -> Iterator[list[RawEntry]]:
        """Yield the entries of [start, end) in order, window by window.

        The first request asks `batch` entries (at most `max_batch`); the size of its answer
        is the log's cap. Up to `in_flight` windows are requested at once (ctlib.ingest.run reads
        the whole range before decoding it: see fetch_range there).
        """
        if start >= end:
            return
        if self.max_batch:
            batch = min(batch, self.max_batch)
        cap = self.learned_cap
        first = self._fill_window(start, min(end, start + batch)) if cap else None
        if first is None:
            first = self.get_entries(start, min(end, start + batch))
            cap = self.learned_cap = len(first)
        yield first
        position = start + len(first)
        window = max(1, cap or 0)
        with ThreadPoolExecutor(max_workers=max(1, in_flight), thread_name_prefix="get-entries") as pool:
            pending: deque[Future[list[RawEntry]]] = deque()
            while position < end or pending:
                while position < end and len(pending) < 2 * in_flight:
                    window_end = min(end, position + window)
                    pending.append(pool.submit(self._fill_window, position, window_end))
                    position = window_end
                try:
                    yield pending.popleft().result()
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
