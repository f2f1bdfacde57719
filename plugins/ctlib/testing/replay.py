"""Replay growth for the local CT log: real-shaped entries from a pool, freshly stamped.

Generating a certificate with `cryptography` costs about a millisecond of signing, too much
for a log server that must grow thousands of entries per second on the machine it is
benchmarking. A replay log (`LocalCTLog(..., replay=True)`) appends the entries of a
`ReplayPool` instead, built once per process from `CertFactory` (precertificates followed a
few entries later by their final certificates, with chains) and shared by every log of the
process. Each appended entry gets a fresh timestamp in its MerkleTreeLeaf and, in a tiled
log, the leaf_index extension of its new index; its leaf hash is computed from those bytes,
so the log's tree, tree heads and proofs are as real as a generating log's.

`ReplayEntries` holds one log's entries as two arrays (pool position, timestamp): 12 bytes
an entry whatever the certificate's size, so a log reaching millions of entries stays small.
It rebuilds what is served from pieces precomputed once per pool entry (the base64 of the
leaf_input after its first 12 bytes and of the extra_data for get-entries; the TileLeaf
bytes around the timestamp and leaf_index for data tiles), so an answer is mostly joins.

Contracts:
* A replayed entry decodes (ctlib.decode.entries) exactly like the pool entry it copies, but for its
  timestamp and, in a tiled log, its leaf_index. Certificates repeat every `len(pool)`
  entries of a log. The SCTs embedded in final certificates are the pool's, signed by a key
  of the pool's own: well-formed, not verifiable against the replaying log's key.
* Entries may also be appended explicitly (`append_explicit`: planted certificates,
  malformed entries); they are stored and served as given.
* `ReplayPool` is immutable and shared; `replay_pool` is safe to call from several threads.
  `ReplayEntries` is not thread-safe: its log serialises writers and readers.
"""

from __future__ import annotations

import base64
import functools
import struct
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import overload

from ctlib.ct.leaf import EntryType, parse_extra_data, parse_merkle_tree_leaf
from ctlib.ct.tiles import encode_leaf_index_extension, encode_tile_leaf
from ctlib.testing.certs import CertFactory, GeneratedEntry, TestPKI, shared_pki

DEFAULT_POOL_SIZE = 2048
# MerkleTreeLeaf header: version, leaf_type, timestamp, entry_type: 12 bytes, a multiple of 3,
# so base64(header + rest) == base64(header) + base64(rest) and each part is encoded apart.
_HEAD = struct.Struct(">BBQH")
_HEAD_B64 = 16  # base64 characters of one _HEAD
_TIMESTAMP_TYPE = struct.Struct(">QH")  # a TimestampedEntry's start: timestamp, entry_type
_U16 = struct.Struct(">H")
_ENTRY_TYPE_CODE = {"x509": 0, "precert": 1}
_LEAF_INDEX_EXT_LEN = len(encode_leaf_index_extension(0))  # 8: every tiled entry's CtExtensions
_JSON_OPEN = b'{"leaf_input":"'
_JSON_MIDDLE = b'","extra_data":"'
_JSON_CLOSE = b'"}'


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def entry_json(leaf_input: bytes, extra_data: bytes) -> bytes:
    """One get-entries entry object, compact JSON bytes (base64 needs no escaping)."""
    return _JSON_OPEN + _b64(leaf_input) + _JSON_MIDDLE + _b64(extra_data) + _JSON_CLOSE


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """One pool entry split around what a replaying log rewrites (timestamp, leaf_index).

    leaf_input (RFC 6962 log) = _HEAD(0, 0, timestamp, type_code) + signed_entry + 00 00
    leaf_input (tiled log)    = _HEAD(0, 0, timestamp, type_code) + signed_entry + 00 08
                                + leaf_index extension
    """

    generated: GeneratedEntry  # as the factory made it (timestamp of the pool's build)
    type_code: int  # LogEntryType on the wire: 0 x509, 1 precert
    classic_rest: bytes  # leaf_input[12:] of an RFC 6962 log: signed_entry, empty CtExtensions
    tiled_rest: bytes  # signed_entry and the CtExtensions length of a tiled log (8)
    json_tail: bytes  # the get-entries object after base64(leaf_input[:12]), closing brace included
    tile_tail: bytes  # what follows the TimestampedEntry in a TileLeaf (pre_certificate, fingerprints)

    @property
    def entry_type(self) -> EntryType:
        return self.generated.entry_type

    @property
    def extra_data(self) -> bytes:
        return self.generated.extra_data


def _pool_entry(generated: GeneratedEntry, fingerprints: dict[bytes, bytes]) -> PoolEntry:
    leaf = parse_merkle_tree_leaf(generated.leaf_input)
    if leaf.extensions:
        raise ValueError("pool entries are generated without CtExtensions")
    classic_rest = generated.leaf_input[_HEAD.size :]
    signed_entry = classic_rest[: -_U16.size]  # drop the empty CtExtensions' length
    extra = parse_extra_data(leaf.entry_type, generated.extra_data)
    timestamped = generated.leaf_input[2:]
    chain = [fingerprints[der] for der in extra.chain]
    tile_leaf = encode_tile_leaf(timestamped, chain, extra.pre_certificate)
    return PoolEntry(
        generated=generated,
        type_code=_ENTRY_TYPE_CODE[leaf.entry_type],
        classic_rest=classic_rest,
        tiled_rest=signed_entry + _U16.pack(_LEAF_INDEX_EXT_LEN),
        json_tail=_b64(classic_rest) + _JSON_MIDDLE + _b64(generated.extra_data) + _JSON_CLOSE,
        tile_tail=tile_leaf[len(timestamped) :],
    )


@dataclass(frozen=True, slots=True)
class ReplayPool:
    """Real-shaped entries to replay, in the order the factory made them."""

    entries: tuple[PoolEntry, ...]
    pki: TestPKI

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def build(cls, size: int = DEFAULT_POOL_SIZE, *, seed: int = 0, pki: TestPKI | None = None) -> ReplayPool:
        """`size` entries from CertFactory(seed) (about 0.3 ms each). Raises ValueError if
        size < 1. Chains come from `pki` (default: the process's shared PKI, which the local
        logs' get-roots and issuer/ serve)."""
        if size < 1:
            raise ValueError(f"a replay pool needs at least one entry, not {size}")
        pki = pki or shared_pki()
        factory = CertFactory(seed, pki=pki)
        now_ms = time.time_ns() // 1_000_000
        fingerprints = {der: fp for fp, der in pki.issuers_by_fingerprint().items()}
        entries = tuple(_pool_entry(factory.next_entry(now_ms), fingerprints) for _ in range(size))
        return cls(entries, pki)


_pool_lock = threading.Lock()


@functools.cache
def _cached_pool(size: int, seed: int) -> ReplayPool:
    return ReplayPool.build(size, seed=seed)


def replay_pool(size: int = DEFAULT_POOL_SIZE, seed: int = 0) -> ReplayPool:
    """The process's pool of `size` entries from `seed`: built at the first call, then shared
    (every replay log of a server replays the same certificates, as real logs see the same
    CAs' output)."""
    with _pool_lock:
        return _cached_pool(size, seed)


class ReplayEntries(Sequence[bytes]):
    """One replay log's entries: a sequence of leaf_input bytes, rebuilt on access.

    `extras` is the matching sequence of extra_data. Appending is `build` (the leaf_inputs new
    entries would have, to hash them) then `append` (commit them), or `append_explicit`.
    """

    def __init__(self, pool: ReplayPool, *, tiled: bool) -> None:
        self.pool = pool
        self.tiled = tiled
        self._source = array("l")  # pool position, or -1: explicit
        self._timestamp = array("Q")
        self._explicit: dict[int, tuple[bytes, bytes]] = {}  # index: (leaf_input, extra_data)
        self._explicit_json: dict[int, bytes] = {}  # index: get-entries object
        self._leaves = _Column(self.__len__, self.leaf_input)
        self.extras = _Column(self.__len__, self.extra_data)

    def __len__(self) -> int:
        return len(self._source)

    @overload
    def __getitem__(self, key: int) -> bytes: ...
    @overload
    def __getitem__(self, key: slice) -> list[bytes]: ...
    def __getitem__(self, key: int | slice) -> bytes | list[bytes]:
        return self._leaves[key]

    def _index(self, key: int) -> int:
        n = len(self)
        index = key + n if key < 0 else key
        if not 0 <= index < n:
            raise IndexError(f"entry {key} is out of range for {n} entries")
        return index

    def _leaf(self, index: int, source: int, timestamp: int) -> bytes:
        entry = self.pool.entries[source]
        head = _HEAD.pack(0, 0, timestamp, entry.type_code)
        if self.tiled:
            return head + entry.tiled_rest + encode_leaf_index_extension(index)
        return head + entry.classic_rest

    def leaf_input(self, index: int) -> bytes:
        """The leaf_input stored at `index` (IndexError outside [0, len))."""
        index = self._index(index)
        source = self._source[index]
        if source < 0:
            return self._explicit[index][0]
        return self._leaf(index, source, self._timestamp[index])

    def extra_data(self, index: int) -> bytes:
        """The extra_data stored at `index` (IndexError outside [0, len))."""
        index = self._index(index)
        source = self._source[index]
        if source < 0:
            return self._explicit[index][1]
        return self.pool.entries[source].extra_data

    def build(self, sources: Sequence[int], timestamps: Sequence[int]) -> list[bytes]:
        """The leaf_inputs of pool entries `sources` stamped `timestamps`, if appended next
        (their indices follow len(self)). Changes nothing."""
        first = len(self)
        return [self._leaf(i, s, t) for i, (s, t) in enumerate(zip(sources, timestamps, strict=True), first)]

    def append(self, sources: Sequence[int], timestamps: Sequence[int]) -> None:
        """Append pool entries `sources` stamped `timestamps`."""
        if len(sources) != len(timestamps):
            raise ValueError("one timestamp per source")
        if any(not 0 <= s < len(self.pool) for s in sources):
            raise ValueError("a source is not a pool position")
        self._source.extend(sources)
        self._timestamp.extend(timestamps)

    def append_explicit(self, leaf_input: bytes, extra_data: bytes) -> int:
        """Append an entry stored as given; return its index."""
        index = len(self)
        self._explicit[index] = (leaf_input, extra_data)
        self._explicit_json[index] = entry_json(leaf_input, extra_data)
        self._source.append(-1)
        self._timestamp.append(0)
        return index

    def entries_json(self, start: int, end: int) -> bytes:
        """The get-entries answer body `{"entries":[...]}` for entries [start, end)."""
        sources, stamps = self._source[start:end], self._timestamp[start:end]
        entries = self.pool.entries
        # Every header packed and base64-encoded at once (an explicit entry's, from the last
        # pool entry's type, is encoded too and ignored).
        heads = _b64(b"".join([_HEAD.pack(0, 0, t, entries[s].type_code) for s, t in zip(sources, stamps)]))
        # One flat list of pieces and one join: concatenating each entry first would allocate
        # (and page-fault in) the whole answer twice, which costs ten times more past ~100 kB.
        parts = [b'{"entries":[']
        for k, s in enumerate(sources):
            if k:
                parts.append(b",")
            if s >= 0:
                parts += (_JSON_OPEN, heads[_HEAD_B64 * k : _HEAD_B64 * (k + 1)], entries[s].json_tail)
            else:
                parts.append(self._explicit_json[start + k])
        parts.append(b"]}")
        return b"".join(parts)

    def data_tile(self, start: int, end: int, fingerprint: Callable[[bytes], bytes]) -> bytes:
        """The TileLeaf entries [start, end) concatenated: a data tile's body. Explicit entries
        are encoded with `fingerprint(der)` for each chain certificate."""
        sources, stamps = self._source[start:end], self._timestamp[start:end]
        entries = self.pool.entries
        parts = []
        for index, s, t in zip(range(start, end), sources, stamps):
            if s < 0:
                parts.append(_explicit_tile_leaf(*self._explicit[index], fingerprint))
                continue
            entry = entries[s]
            parts += (
                _TIMESTAMP_TYPE.pack(t, entry.type_code),
                entry.tiled_rest,
                encode_leaf_index_extension(index),
                entry.tile_tail,
            )
        return b"".join(parts)


def _explicit_tile_leaf(leaf_input: bytes, extra_data: bytes, fingerprint: Callable[[bytes], bytes]) -> bytes:
    entry_type: EntryType = "x509" if leaf_input[11] == 0 else "precert"  # entry_type's low byte
    chain = parse_extra_data(entry_type, extra_data)
    return encode_tile_leaf(leaf_input[2:], [fingerprint(der) for der in chain.chain], chain.pre_certificate)


class _Column(Sequence[bytes]):
    """A read-only sequence of bytes computed per index by `item` (which checks the index),
    `length` long; a slice gives a list."""

    def __init__(self, length: Callable[[], int], item: Callable[[int], bytes]) -> None:
        self._length = length
        self._item = item

    def __len__(self) -> int:
        return self._length()

    @overload
    def __getitem__(self, key: int) -> bytes: ...
    @overload
    def __getitem__(self, key: slice) -> list[bytes]: ...
    def __getitem__(self, key: int | slice) -> bytes | list[bytes]:
        if isinstance(key, slice):
            return [self._item(i) for i in range(*key.indices(len(self)))]
        return self._item(key)


def spread_timestamps(n: int, last_ms: int, now_ms: int, max_span_ms: int) -> list[int]:
    """`n` entry timestamps spread evenly after `last_ms` up to now, as submissions since the
    last growth would be: non-decreasing, none below `last_ms` (so a log's timestamps never go
    backwards, whatever the clock does), the last one max(now_ms, last_ms), none older than
    `max_span_ms` before it."""
    end = max(now_ms, last_ms)
    begin = max(last_ms, end - max_span_ms)
    return [begin + (end - begin) * (k + 1) // n for k in range(n)]
