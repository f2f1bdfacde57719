"""Client of the classic RFC 6962 log API: get-sth, get-entries, get-sth-consistency.

`fetch_range` returns every entry of [start, end) in index order or raises: logs answer
get-entries with fewer entries than asked (their cap), so it learns the cap from the first
answer and asks for the rest in cap-sized windows, several in flight at once. A log whose cap
is known beforehand (`max_batch`, from ctlib.ct.limits) is never asked more than that.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ctlib.ct.loglist import CTLog
from ctlib.ct.merkle import CompactRange, leaf_hash, left_siblings, verify_inclusion
from ctlib.ct.sth import SignatureError, SignedTreeHead, verify_sth
from ctlib.ct.types import RawEntry, TreeHead, VerificationError
from ctlib.http import HttpSession


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
        sibling is a left one, and they are exactly the subtrees covering [0, size - 1)."""
        if head.size == 0:
            return CompactRange.empty()
        last = head.size - 1
        body = self.session.get_json(
            self._url("get-entry-and-proof"), {"leaf_index": last, "tree_size": head.size}
        )
        try:
            leaf = leaf_hash(_b64(body["leaf_input"], "leaf_input"))
            path = [_b64(h, "audit_path hash") for h in body["audit_path"]]
            verify_inclusion(leaf, last, head.size, path, head.root_hash)
            left = CompactRange(0, last, tuple(reversed(path)))
            return left.merge(CompactRange.from_leaf_hashes(last, [leaf]))
        except (ValueError, TypeError, KeyError) as err:
            raise VerificationError(
                "root_mismatch", f"{self.log.slug}: cannot anchor at size {head.size}: {err}"
            ) from None

    def compact_range_before(self, index: int, head: TreeHead) -> CompactRange:
        """The left siblings of leaf `index`'s audit path are the subtrees covering [0, index)."""
        if index == 0:
            return CompactRange.empty()
        body = self.session.get_json(
            self._url("get-entry-and-proof"), {"leaf_index": index, "tree_size": head.size}
        )
        try:
            path = [_b64(h, "audit_path hash") for h in body["audit_path"]]
            return CompactRange(0, index, tuple(left_siblings(index, head.size, path)))
        except (ValueError, TypeError, KeyError) as err:
            raise LogResponseError(
                f"{self.log.slug}: malformed get-entry-and-proof for leaf {index} at size {head.size}: {err}"
            ) from None

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
