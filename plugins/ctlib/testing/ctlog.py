"""A local CT log server (RFC 6962 and static-ct-api) for tests, `make demo` and benchmarks.

`LogServer` hosts several `LocalCTLog`s on one ThreadingHTTPServer bound to 127.0.0.1;
each log lives under `/<slug>/`, from a real Merkle tree with tree heads signed by its own
P-256 key. A classic log answers the RFC 6962 section 4 read API (`ct/v1/get-sth`,
`get-entries`, `get-roots`, `get-sth-consistency`, `get-proof-by-hash`,
`get-entry-and-proof`). A tiled log (`tiled=True`) answers the static-ct-api monitoring
API instead: `checkpoint` (a signed note whose origin is `127.0.0.1:<port>/<slug>`, the
submission prefix without scheme and trailing slash), hash tiles `tile/<L>/<N>[.p/<W>]`,
data tiles `tile/data/<N>[.p/<W>]` (gzip when the client accepts it) and `issuer/<hex>`;
its entries carry the leaf_index extension from the start, as a static-ct-api log's do.

Like a real log, entries appended by `grow` are served only once `publish` has signed
a tree head covering them. `grow_history` appends backdated entries instead (timestamps
spread over a past window, optionally a little out of order, as in real logs), so a log can
start with hours of history to backfill. Faults (`Faults`) are changeable while serving;
`Faults.not_found` makes chosen endpoints answer 404, as from a log that lacks them.

A log made with `replay=True` grows by replaying a pool of pre-built entries with fresh
timestamps (ctlib.testing.replay) instead of signing a new certificate for each: cheap
enough to grow thousands of entries per second (a firehose, ctlib.testing.profiles).

    python -m ctlib.testing.ctlog --logs 3 --tiled 1 --port 8800 --log-list .run/log_list.json
    python -m ctlib.testing.ctlog --log-list logs.json --rate 5 --history-hours 3 --history-rate 0.5

Everything here is safe to call from several threads at once.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import datetime as dt
import gzip
import hashlib
import io
import json
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ctlib.ct.leaf import parse_extra_data
from ctlib.ct.loglist import slugify
from ctlib.ct.merkle import MerkleTree, leaf_hash
from ctlib.ct.sth import SignedTreeHead, sign_checkpoint, sign_sth
from ctlib.ct.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileError,
    TileRef,
    encode_hash_tile,
    encode_leaf_index_extension,
    encode_tile_leaf,
    parse_tile_path,
    tile_width,
)
from ctlib.http import TokenBucket
from ctlib.testing.certs import CertFactory, EntryType, GeneratedEntry
from ctlib.testing.replay import DEFAULT_POOL_SIZE, ReplayEntries, replay_pool, spread_timestamps

HOST = "127.0.0.1"  # never anything else: this server has no authentication at all
OPERATOR = "ct-airflow local"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_GROW_CHUNK = 64  # entries generated per state-lock acquisition: keeps serving responsive
_MAX_BACKLOG_S = 5.0  # a growth thread that fell behind catches up at most this many seconds
_REPLAY_CHUNK = 1024  # replayed entries hashed per state-lock acquisition
_TILE_CACHE = 2  # full data tiles (raw and gzip) a replay log keeps, most recent first
ENDPOINTS = frozenset(
    {
        "get-sth",
        "get-entries",
        "get-roots",
        "get-sth-consistency",
        "get-proof-by-hash",
        "get-entry-and-proof",
    }
)
# What a tiled log's requests are counted (and faulted) as: checkpoint, hash tiles, data
# tiles, issuer certificates.
STATIC_ENDPOINTS = frozenset({"checkpoint", "tile", "data", "issuer"})
_OCTETS = "application/octet-stream"


@dataclass
class Faults:
    """Misbehaviour of one log, read at every request: mutate it while the server runs
    (`log.faults.fork = True`, later `False`), so a test can break a log and fix it again.

    The `*_every` knobs count the log's requests to `endpoints` (all of them when None;
    names from ENDPOINTS, or STATIC_ENDPOINTS for a tiled log), from 1: every Nth answers
    429 (with `Retry-After: retry_after`), 503/500 (alternately), or a truncated body
    (invalid JSON, or half a tile / checkpoint / certificate); 0 turns a knob off, 1 makes
    every request fault. `cap` (most entries per get-entries) does not apply to tiled logs.

    `malformed` indices are *logged* corrupted when appended (bad framing or bad DER, by
    index % 3; always bad DER in a tiled log, whose tiles must stay parseable): the tree
    hashes the corrupted bytes, so the log stays consistent and only a decoder notices. Set
    it before the entries exist (e.g. via `add_log(faults=...)`).
    `tampered` indices are served (get-entries, data tiles) with one byte flipped: they
    decode, but no longer hash to the signed root, as from a log that lies.

    `not_found` endpoints (names from ENDPOINTS or STATIC_ENDPOINTS) answer 404, counted as
    client errors, as from a log that does not implement them (e.g. get-entry-and-proof);
    latency still applies, no other fault does.

    Tree-head misbehaviour, in both modes:
    * `bad_signature`: get-sth / checkpoint carry a signature that does not verify.
    * `rollback_to`: the tree head served is a properly signed one for this smaller size.
    * `fork`: from now on the log serves another tree, properly signed, whose entries from
      `fork_at` on differ (a byte flipped, still decodable): entries, tiles, proofs and tree
      head all come from it, so a monitor sees two signed roots for one size. Switching it
      off serves the original tree again.
    Tiled logs only: `corrupt_issuers` serves issuer certificates with a byte flipped (no
    longer hashing to their fingerprints); `raw_gzip` serves data tiles gzip-compressed
    without a Content-Encoding header, like a misconfigured bucket.

    Latency (both APIs, every request, faultable or not): `latency` = (low, high) seconds
    sleeps a uniformly random time in [low, high] before answering, as a remote log's round
    trip would (e.g. (0.05, 0.15)); (0, 0), the default, sleeps not at all. The sleep holds
    no lock and costs no CPU: other requests are served meanwhile.

    Transport misbehaviour (classic logs; counted like the `*_every` knobs): `delay_every`
    sleeps `delay` only on every Nth request (0: on every one); `reset_every` sends the
    headers and half the body of every Nth answer, then resets the connection (RST);
    `extra_entries` makes get-entries answer that many entries more than asked (as far as the
    tree goes); `bad_base64` indices are served by get-entries with a leaf_input that is not
    base64; `huge_body` > 0 pads every get-entries answer with whitespace up to that many
    bytes, streamed (never held in memory), with a Content-Length, or chunked (no length
    announced) when `huge_body_chunked`.

    `max_rps` > 0 limits the log's readers as a real log does: a token bucket of `max_rps`
    tokens a second (holding at most max(1, max_rps), one second's worth) takes one per
    request counted like the `*_every` knobs; a request finding it empty answers 429 with
    `Retry-After: retry_after` and counts as throttled (RequestCounts.throttled).
    """

    cap: int = 1000
    http_429_every: int = 0
    retry_after: int = 1
    http_5xx_every: int = 0
    invalid_json_every: int = 0
    delay: float = 0.0
    malformed: frozenset[int] = frozenset()
    tampered: frozenset[int] = frozenset()
    endpoints: frozenset[str] | None = None
    bad_signature: bool = False
    rollback_to: int | None = None
    fork: bool = False
    fork_at: int = 0
    corrupt_issuers: bool = False
    raw_gzip: bool = False
    delay_every: int = 0
    reset_every: int = 0
    extra_entries: int = 0
    bad_base64: frozenset[int] = frozenset()
    huge_body: int = 0
    huge_body_chunked: bool = False
    latency: tuple[float, float] = (0.0, 0.0)
    max_rps: float = 0.0
    not_found: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RequestCounts:
    """What a log has answered so far, by outcome."""

    requests: int
    ok: int
    throttled: int  # 429
    server_errors: int  # 500 and 503
    invalid_json: int
    client_errors: int  # 400 and 404
    entries_served: int
    by_endpoint: Mapping[str, int]
    outcomes: Mapping[str, int] = field(default_factory=dict)  # every outcome, e.g. "resets", "huge"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, independent of the HTTP server."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    reset: bool = False  # send the headers and half the body, then reset the connection
    padding: int = 0  # bytes of whitespace streamed after `body` (a huge answer)
    chunked: bool = False  # announce no Content-Length: chunked transfer encoding


@dataclass
class _Counters:
    faultable: int = 0
    entries_served: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    endpoints: Counter[str] = field(default_factory=Counter)


class BadRequest(Exception):
    """The request cannot be answered; `status` is 400 or 404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(obj: Any) -> Answer:
    return Answer(200, json.dumps(obj, separators=(",", ":")).encode())


def _text(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, f"{message}\n".encode(), headers, "text/plain")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def derive_log_key(seed: int, description: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key fixed by (seed, description): a restarted log keeps its log_id."""
    digest = hashlib.sha256(f"ctlib.testing.ctlog:{seed}:{description}".encode()).digest()
    secret = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(secret, ec.SECP256R1())


def corrupt_malformed(leaf_input: bytes, index: int, *, der_only: bool = False) -> bytes:
    """The corrupted form a `malformed` entry is logged in, by index % 3 (2 when der_only):
    0 truncated to half, 1 unknown entry type 7, 2 certificate DER whose outer tag is wrong."""
    mode = 2 if der_only else index % 3
    if mode == 0:
        return leaf_input[: len(leaf_input) // 2]
    out = bytearray(leaf_input)
    if mode == 1:
        out[10:12] = b"\x00\x07"
    else:
        # x509: the certificate starts after version, type, timestamp, entry type and a
        # 3-byte length; precert: after the 32-byte issuer_key_hash too.
        out[15 if out[11] == 0 else 47] ^= 0xFF
    return bytes(out)


def _tamper(leaf_input: bytes, ext_len: int = 0, bit: int = 0x01) -> bytes:
    """`leaf_input` with a bit of the signed entry's last byte flipped: inside the signature
    (x509) or the last TBS byte, so it still decodes. `ext_len` is the length of its
    CtExtensions (8 in a tiled log: the leaf_index, which must stay intact)."""
    out = bytearray(leaf_input)
    out[len(out) - 3 - ext_len] ^= bit
    return bytes(out)


def history_timestamps(n: int, start_ms: int, end_ms: int, disorder_ms: int = 0, seed: int = 0) -> list[int]:
    """`n` log timestamps of a backdated history: spread evenly from start_ms to end_ms (both
    included when n > 1), each then moved by a pseudo-random offset in
    [-disorder_ms, +disorder_ms] drawn from random.Random(seed) (none below 0). The same
    arguments give the same timestamps. Raises ValueError on n < 0, end_ms < start_ms or
    disorder_ms < 0."""
    if n < 0 or end_ms < start_ms or disorder_ms < 0:
        raise ValueError(f"need n >= 0, start_ms <= end_ms and disorder_ms >= 0, got {n}, {start_ms}, {end_ms}, {disorder_ms}")
    span, steps = end_ms - start_ms, max(1, n - 1)
    stamps = [start_ms + span * k // steps for k in range(n)]
    if disorder_ms:
        jitter = random.Random(seed).randint
        stamps = [max(0, t + jitter(-disorder_ms, disorder_ms)) for t in stamps]
    return stamps


def _corrupt_signature(signature: bytes) -> bytes:
    # The last byte of a DigitallySigned is inside the ECDSA/RSA signature value: the
    # structure still parses, the signature no longer verifies.
    return signature[:-1] + bytes([signature[-1] ^ 0x01])


def _corrupt_note(note: bytes) -> bytes:
    """A checkpoint note whose signature line(s) carry a signature that does not verify."""
    body, _, signatures = note.decode("utf-8").rpartition("\n\n")
    lines = []
    for line in signatures.split("\n")[:-1]:
        prefix, _, b64 = line.rpartition(" ")
        lines.append(f"{prefix} {_b64(_corrupt_signature(base64.b64decode(b64)))}")
    return f"{body}\n\n{chr(10).join(lines)}\n".encode()


def _static_endpoint(path: str) -> str:
    """What a tiled-log request counts as (STATIC_ENDPOINTS), or the path when unknown."""
    if path == "checkpoint":
        return "checkpoint"
    if path.startswith("tile/data/"):
        return "data"
    if path.startswith("tile/"):
        return "tile"
    if path.startswith("issuer/"):
        return "issuer"
    return path


@dataclass
class _Fork:
    """The other tree a forked log serves: entries before `at` shared, the rest flipped."""

    at: int
    leaves: list[bytes]
    tree: MerkleTree
    sth: SignedTreeHead | None = None


@dataclass(frozen=True)
class _View:
    """What the log serves right now: its leaves (read under the log's lock), their tree and
    the published head of that tree (before rollback_to / bad_signature apply)."""

    leaves: list[bytes]
    tree: MerkleTree
    sth: SignedTreeHead


class LocalCTLog:
    """One log: its key, entries, Merkle tree, published STH, faults and request counters.

    `grow`, `submit`, `publish`, `answer` and `answer_static` are safe to call concurrently;
    `tick` belongs to the one growth thread of the server hosting the log.

    `grow_history` appends backdated entries (a past window, roughly ordered) in both modes.

    With `replay=True`, `grow` appends entries of the process's replay pool (shared by every
    replay log; ctlib.testing.replay) with fresh timestamps spread over the time since the
    previous growth (non-decreasing), and in a tiled log the leaf_index of their new index,
    instead of generating certificates; `submit` and `malformed` entries are still generated
    and stored as such. get-entries answers and data tiles are assembled from per-pool-entry
    pieces; the most recent full data tiles are kept. `operator` is the log list's operator.
    """

    def __init__(
        self,
        description: str,
        *,
        seed: int = 0,
        faults: Faults | None = None,
        rate: float = 0.0,
        key: ec.EllipticCurvePrivateKey | None = None,
        tiled: bool = False,
        origin: str | None = None,
        replay: bool = False,
        operator: str = OPERATOR,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.description = description
        self.operator = operator
        self.slug = slugify(description)
        if not self.slug:
            raise ValueError(f"log description {description!r} gives an empty slug")
        self.tiled = tiled
        # The checkpoint origin: the submission prefix without scheme and trailing slash.
        self.origin = origin or f"{HOST}/{self.slug}"
        self.key = key or derive_log_key(seed, description)
        self.key_der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.log_id = hashlib.sha256(self.key_der).digest()
        self.faults = faults or Faults()
        self.rate = rate  # entries per second added by the server's growth thread
        self.created = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self._factory = CertFactory(seed, sct_key=self.key, sct_log_id=self.log_id)
        self._issuers = self._factory.pki.issuers_by_fingerprint() if tiled else {}
        self._fingerprints = {der: fp for fp, der in self._issuers.items()}
        self._ext_len = len(encode_leaf_index_extension(0)) if tiled else 0
        self._leaves: list[bytes] = []
        self._extras: list[bytes] = []
        self._replay: ReplayEntries | None = None
        self._cursor = 0  # the next pool position a replay log appends
        if replay:
            self._replay = ReplayEntries(replay_pool(pool_size), tiled=tiled)
            # Same sequence interface as the lists: every reader of _leaves/_extras works as is.
            self._leaves, self._extras = self._replay, self._replay.extras  # type: ignore[assignment]
            self._cursor = int.from_bytes(hashlib.sha256(self.slug.encode()).digest()[:4], "big")
            self._cursor %= len(self._replay.pool)
        self._tile_cache: dict[int, list[bytes]] = {}  # full data tile index: [raw, gzip]
        self._tree = MerkleTree()
        self._published: list[int] = []  # every tree size published, ascending (partial tiles)
        self._fork: _Fork | None = None
        self._heads: dict[tuple[bytes, int, int], SignedTreeHead] = {}  # rolled-back heads
        self._notes: dict[SignedTreeHead, bytes] = {}  # checkpoints of served heads
        self._gen_lock = threading.Lock()  # factory and entry timestamps; taken before _lock
        self._lock = threading.Lock()  # entries, trees, heads, counters
        self._last_entry_ms = 0
        self._last_sth_ms = 0
        self._carry = 0.0
        self._last_tick: float | None = None
        self._counters = _Counters()
        self._rps_gate: TokenBucket | None = None  # Faults.max_rps, made anew when it changes
        self._sth = self.publish()  # the empty tree's STH

    # ----------------------------------------------------------------- state

    @property
    def log_id_b64(self) -> str:
        return _b64(self.log_id)

    @property
    def key_b64(self) -> str:
        return _b64(self.key_der)

    @property
    def size(self) -> int:
        """Entries appended, published or not."""
        with self._lock:
            return len(self._leaves)

    @property
    def sth(self) -> SignedTreeHead:
        """The STH last published (of the true tree, whatever the faults)."""
        with self._lock:
            return self._sth

    @property
    def roots(self) -> tuple[bytes, ...]:
        """DER of the roots this log accepts (its get-roots)."""
        return tuple(root.cert_der for root in self._factory.pki.roots)

    @property
    def issuers(self) -> Mapping[bytes, bytes]:
        """A tiled log's issuer certificates (DER) by SHA-256 fingerprint; empty otherwise."""
        return dict(self._issuers)

    def entry(self, index: int) -> tuple[bytes, bytes]:
        """(leaf_input, extra_data) as stored at `index` (published or not)."""
        with self._lock:
            return self._leaves[index], self._extras[index]

    def served_sth(self) -> SignedTreeHead:
        """The tree head get-sth / checkpoint serves now, faults (fork, rollback, bad
        signature) included."""
        return self._served_head(self._view())

    def checkpoint(self) -> bytes:
        """The checkpoint note served now, faults included."""
        return self._note(self._view())

    def counts(self) -> RequestCounts:
        with self._lock:
            c = self._counters
            return RequestCounts(
                requests=sum(c.endpoints.values()),
                ok=c.outcomes["ok"],
                throttled=c.outcomes["throttled"],
                server_errors=c.outcomes["server_errors"],
                invalid_json=c.outcomes["invalid_json"],
                client_errors=c.outcomes["client_errors"],
                entries_served=c.entries_served,
                by_endpoint=dict(c.endpoints),
                outcomes=dict(c.outcomes),
            )

    # ----------------------------------------------------------------- writing

    def _append(self, entries: Sequence[GeneratedEntry]) -> int:
        with self._lock:
            first = len(self._leaves)
            malformed = self.faults.malformed
            leaves = [
                corrupt_malformed(e.leaf_input, i, der_only=self.tiled) if i in malformed else e.leaf_input
                for i, e in enumerate(entries, first)
            ]
            if self._replay is not None:
                for leaf, e in zip(leaves, entries):
                    self._replay.append_explicit(leaf, e.extra_data)
            else:
                self._leaves.extend(leaves)
                self._extras.extend(e.extra_data for e in entries)
            self._tree.extend(leaf_hash(leaf) for leaf in leaves)
            return first

    def _timestamp(self) -> int:
        # Entry timestamps never go backwards, whatever the wall clock does.
        self._last_entry_ms = max(_now_ms(), self._last_entry_ms)
        return self._last_entry_ms

    def _extensions(self, index: int) -> bytes:
        # A static-ct-api log's TimestampedEntry carries its leaf_index; RFC 6962 logs none.
        return encode_leaf_index_extension(index) if self.tiled else b""

    def grow(self, n: int) -> int:
        """Append `n` generated (or replayed) entries, not yet published; return the new size."""
        if self._replay is not None:
            if n > 0:
                with self._gen_lock:
                    stamps = spread_timestamps(n, self._last_entry_ms, _now_ms(), int(_MAX_BACKLOG_S * 1000))
                    self._last_entry_ms = stamps[-1]
                    self._append_replayed(stamps)
            return self.size
        with self._gen_lock:
            self._generate(n, lambda _: self._timestamp())
        return self.size

    def grow_history(self, n: int, *, start_ms: int, end_ms: int, disorder_ms: int = 0, seed: int = 0) -> int:
        """Append `n` backdated entries, not yet published; return the new size.

        Their log timestamps (MerkleTreeLeaf, so leaf_input and data tiles) are
        `history_timestamps(n, start_ms, end_ms, disorder_ms, seed)`: spread evenly from
        start_ms to end_ms, each moved by up to +-disorder_ms, so only roughly ordered, as in
        real logs. Generated, or replayed in a replay log (cheap: hundreds of thousands of
        entries in about a second); `faults.malformed` applies as in `grow`. Entries appended
        later (grow, submit, the growth thread) are stamped no earlier than end_ms or any of
        these (the latest), and so are tree heads. Raises ValueError on n < 0,
        end_ms < start_ms or disorder_ms < 0.
        """
        stamps = history_timestamps(n, start_ms, end_ms, disorder_ms, seed)
        with self._gen_lock:
            if not stamps:
                return self.size
            if self._replay is not None:
                self._append_replayed(stamps)
            else:
                self._generate(n, stamps.__getitem__)
            self._last_entry_ms = max(self._last_entry_ms, end_ms, max(stamps))
        return self.size

    def _generate(self, n: int, stamp: Callable[[int], int]) -> None:
        """Append `n` generated entries, the kth logged at stamp(k) (call with _gen_lock held)."""
        done = 0
        while done < n:
            count = min(_GROW_CHUNK, n - done)
            first = self.size  # stable: only this thread (holding _gen_lock) appends
            batch = [
                self._factory.next_entry(stamp(done + k), extensions=self._extensions(first + k))
                for k in range(count)
            ]
            self._append(batch)
            done += len(batch)

    def _append_replayed(self, stamps: Sequence[int]) -> None:
        """Append the next pool entries, one per timestamp of `stamps` (call with _gen_lock
        held)."""
        store = self._replay
        assert store is not None
        pool_size = len(store.pool)
        for done in range(0, len(stamps), _REPLAY_CHUNK):
            times = stamps[done : done + _REPLAY_CHUNK]
            sources = [(self._cursor + k) % pool_size for k in range(len(times))]
            self._cursor = (self._cursor + len(times)) % pool_size
            first = len(store)  # stable: only this thread (holding _gen_lock) appends
            leaves = store.build(sources, times)  # hashed outside _lock: serving goes on
            bad = [i for i in range(first, first + len(leaves)) if i in self.faults.malformed]
            for i in bad:
                leaves[i - first] = corrupt_malformed(leaves[i - first], i, der_only=self.tiled)
            hashes = [leaf_hash(leaf) for leaf in leaves]
            with self._lock:
                if not bad:
                    store.append(sources, times)
                else:
                    for k, (source, stamp) in enumerate(zip(sources, times)):
                        if first + k in bad:
                            store.append_explicit(leaves[k], store.pool.entries[source].extra_data)
                        else:
                            store.append([source], [stamp])
                self._tree.extend(hashes)

    def submit(self, names: Sequence[str], *, entry_type: EntryType | None = None) -> int:
        """Append one certificate for exactly `names` (not yet published); return its index."""
        with self._gen_lock:
            entry = self._factory.next_entry(
                self._timestamp(), names=names, entry_type=entry_type, extensions=self._extensions(self.size)
            )
            return self._append([entry])

    def publish(self) -> SignedTreeHead:
        """Sign and publish an STH over every entry appended so far."""
        with self._gen_lock, self._lock:
            size = len(self._leaves)
            # STH timestamps strictly increase and are never older than an entry they cover.
            timestamp = max(_now_ms(), self._last_entry_ms, self._last_sth_ms + 1)
            self._sth = sign_sth(size, timestamp, self._tree.root(size), self.key)
            self._last_sth_ms = timestamp
            if not self._published or self._published[-1] != size:
                self._published.append(size)
            return self._sth

    def tick(self, now: float | None = None) -> None:
        """Grow by `rate` times the time since the last tick, then publish (if rate > 0)."""
        now = time.monotonic() if now is None else now
        last, self._last_tick = self._last_tick, now
        if self.rate <= 0 or last is None:
            return
        due = self.rate * min(now - last, _MAX_BACKLOG_S) + self._carry
        n = int(due)
        self._carry = due - n
        self.grow(n)
        self.publish()

    # ----------------------------------------------------------------- what is served

    def _view(self) -> _View:
        """The true tree, or the forked one while `faults.fork` is on."""
        with self._lock:
            if not self.faults.fork:
                return _View(self._leaves, self._tree, self._sth)
            fork = self._forked()
            assert fork.sth is not None  # _forked always signs the fork's head
            return _View(fork.leaves, fork.tree, fork.sth)

    def _forked(self) -> _Fork:
        """The fork, brought up to date with the log (call with _lock held)."""
        at = max(0, self.faults.fork_at)
        fork = self._fork
        if fork is None or fork.at != at:
            shared = self._leaves[:at]
            tree = MerkleTree(self._tree.leaf_hash_at(i) for i in range(len(shared)))
            fork = self._fork = _Fork(at, shared, tree)
        start = len(fork.leaves)
        new = [
            leaf if i < at else _tamper(leaf, self._ext_len, bit=0x02)
            for i, leaf in enumerate(self._leaves[start:], start)
        ]
        fork.leaves.extend(new)
        fork.tree.extend(leaf_hash(leaf) for leaf in new)
        sth = self._sth
        if fork.sth is None or (fork.sth.tree_size, fork.sth.timestamp) != (sth.tree_size, sth.timestamp):
            # The same publication, signed over the other tree: two valid heads for one size.
            fork.sth = sign_sth(sth.tree_size, sth.timestamp, fork.tree.root(sth.tree_size), self.key)
        return fork

    def _unbroken_head(self, view: _View) -> SignedTreeHead:
        """The head to serve before bad_signature: the view's, or its rolled-back one."""
        rollback = self.faults.rollback_to
        if rollback is None or not 0 <= rollback < view.sth.tree_size:
            return view.sth
        key = (view.sth.root_hash, rollback, view.sth.timestamp)  # the root names the tree
        with self._lock:
            head = self._heads.get(key)
            if head is None:
                if len(self._heads) > 64:
                    self._heads.clear()
                root = view.tree.root(rollback)
                head = self._heads[key] = sign_sth(rollback, view.sth.timestamp, root, self.key)
            return head

    def _served_head(self, view: _View) -> SignedTreeHead:
        head = self._unbroken_head(view)
        if self.faults.bad_signature:
            head = replace(head, signature=_corrupt_signature(head.signature))
        return head

    def _note(self, view: _View) -> bytes:
        head = self._unbroken_head(view)
        with self._lock:
            note = self._notes.get(head)
            if note is None:
                if len(self._notes) > 64:
                    self._notes.clear()
                note = sign_checkpoint(self.origin, head.tree_size, head.root_hash, head.timestamp, self.key)
                self._notes[head] = note
        return _corrupt_note(note) if self.faults.bad_signature else note

    # ----------------------------------------------------------------- serving

    def answer(self, endpoint: str, query: Mapping[str, str]) -> Answer:
        """The answer to `GET ct/v1/<endpoint>?<query>`, faults included (may sleep). A tiled
        log answers only get-roots there (its submission API)."""
        if self.tiled and endpoint != "get-roots":
            refusal = BadRequest("a tiled log has no RFC 6962 read API", 404)
            return self._serve(endpoint, lambda: _raise(refusal))
        return self._serve(endpoint, lambda: self._dispatch(endpoint, query))

    def answer_static(self, path: str, *, accept_gzip: bool = False) -> Answer:
        """The answer to `GET <path>` below a tiled log's prefix (`checkpoint`, `tile/...`,
        `issuer/<hex>`), faults included (may sleep). Data tiles are gzip-compressed when the
        client accepts it (Content-Encoding: gzip), or raw when `faults.raw_gzip`."""
        endpoint = _static_endpoint(path)
        if not self.tiled:
            refusal = BadRequest("not a tiled log", 404)
            return self._serve(endpoint, lambda: _raise(refusal))
        answer = self._serve(endpoint, lambda: self._dispatch_static(path))
        raw_gzip = self.faults.raw_gzip
        if answer.status != 200 or endpoint != "data" or not (accept_gzip or raw_gzip):
            return answer
        headers = answer.headers if raw_gzip else answer.headers + (("Content-Encoding", "gzip"),)
        return replace(answer, body=self._gzip_data_tile(answer.body), headers=headers)

    def _gzip_data_tile(self, body: bytes) -> bytes:
        """`body` gzip-compressed, from the tile cache when it is a cached full tile's body."""
        with self._lock:
            cached = next((c for c in self._tile_cache.values() if c[0] is body), None)
            if cached is not None and len(cached) > 1:
                return cached[1]
        compressed = gzip.compress(body, compresslevel=1, mtime=0)
        if cached is not None:
            with self._lock:
                cached[1:] = [compressed]
        return compressed

    def _serve(self, endpoint: str, produce: Callable[[], tuple[Answer, int]]) -> Answer:
        faults = self.faults
        known = endpoint in ENDPOINTS or endpoint in STATIC_ENDPOINTS
        faultable = known and (faults.endpoints is None or endpoint in faults.endpoints)
        with self._lock:
            self._counters.endpoints[endpoint] += 1
            if faultable:
                self._counters.faultable += 1
            n = self._counters.faultable
        low, high = faults.latency
        if high > 0:
            time.sleep(random.uniform(low, high))
        if endpoint in faults.not_found:
            return self._outcome("client_errors", _text(404, f"{endpoint} is not implemented by this log"))
        if faultable and faults.delay > 0 and (not faults.delay_every or n % faults.delay_every == 0):
            time.sleep(faults.delay)
        if faultable and faults.max_rps > 0 and not self._within_max_rps(faults.max_rps):
            retry_after = (("Retry-After", str(faults.retry_after)),)
            return self._outcome("throttled", _text(429, "over the request rate", retry_after))
        if faultable and faults.http_429_every and n % faults.http_429_every == 0:
            retry_after = (("Retry-After", str(faults.retry_after)),)
            return self._outcome("throttled", _text(429, "rate limited", retry_after))
        if faultable and faults.http_5xx_every and n % faults.http_5xx_every == 0:
            status = 503 if (n // faults.http_5xx_every) % 2 else 500
            return self._outcome("server_errors", _text(status, "unavailable"))
        try:
            result, served = produce()
        except BadRequest as err:
            return self._outcome("client_errors", _text(err.status, str(err)))
        if faultable and faults.invalid_json_every and n % faults.invalid_json_every == 0:
            half = result.body[: max(1, len(result.body) // 2)]
            return self._outcome("invalid_json", replace(result, body=half))
        if faultable and faults.reset_every and n % faults.reset_every == 0:
            return self._outcome("resets", replace(result, reset=True))
        if faultable and faults.huge_body and endpoint == "get-entries" and result.status == 200:
            padding = max(0, faults.huge_body - len(result.body))
            return self._outcome("huge", replace(result, padding=padding, chunked=faults.huge_body_chunked))
        with self._lock:
            self._counters.entries_served += served
        return self._outcome("ok", result)

    def _within_max_rps(self, rate: float) -> bool:
        """Take a token of the Faults.max_rps bucket (one second's worth at most); False when
        there is none."""
        with self._lock:
            if self._rps_gate is None or self._rps_gate.rate != rate:
                self._rps_gate = TokenBucket(rate, capacity=max(1.0, rate))
            gate = self._rps_gate
        return gate.try_acquire()

    def _outcome(self, what: str, answer: Answer) -> Answer:
        with self._lock:
            self._counters.outcomes[what] += 1
        return answer

    def _dispatch(self, endpoint: str, q: Mapping[str, str]) -> tuple[Answer, int]:
        view = self._view()
        sth = view.sth
        if endpoint == "get-sth":
            return _json(self._served_head(view).to_json()), 0
        if endpoint == "get-roots":
            return _json({"certificates": [_b64(der) for der in self.roots]}), 0
        if endpoint == "get-entries":
            start, end = _int(q, "start"), _int(q, "end")
            if end < start:
                raise BadRequest(f"end {end} is before start {start}")
            if start >= sth.tree_size:
                raise BadRequest(f"start {start} is not below the tree size {sth.tree_size}")
            end = min(end, start + max(1, self.faults.cap) - 1)
            end = min(end + max(0, self.faults.extra_entries), sth.tree_size - 1)
            with self._lock:
                if self._replay is not None and view.leaves is self._replay and self._untouched(start, end + 1):
                    return Answer(200, self._replay.entries_json(start, end + 1)), end + 1 - start
                leaves = view.leaves[start : end + 1]
                extras = self._extras[start : end + 1]
            tampered, bad_base64 = self.faults.tampered, self.faults.bad_base64
            entries = [
                {
                    "leaf_input": "%%not base64%%" if i in bad_base64
                    else _b64(_tamper(leaf, self._ext_len) if i in tampered else leaf),
                    "extra_data": _b64(extra),
                }
                for i, (leaf, extra) in enumerate(zip(leaves, extras), start)
            ]
            return _json({"entries": entries}), len(entries)
        if endpoint == "get-sth-consistency":
            first, second = _int(q, "first"), _int(q, "second")
            if not first <= second <= sth.tree_size:
                raise BadRequest(
                    f"need first <= second <= {sth.tree_size}, got {first} and {second}"
                )
            with self._lock:
                proof = view.tree.consistency_proof(first, second)
            return _json({"consistency": [_b64(h) for h in proof]}), 0
        if endpoint == "get-proof-by-hash":
            size = self._tree_size(q, sth)
            raw = q.get("hash", "").replace(" ", "+")  # an unescaped '+' arrives as a space
            try:
                wanted = base64.b64decode(raw, validate=True)
            except ValueError:
                raise BadRequest("hash is not base64") from None
            with self._lock:
                index = view.tree.index_of(wanted)
                if index is None or index >= size:
                    raise BadRequest(f"no leaf with this hash in the tree of size {size}", 404)
                proof = view.tree.inclusion_proof(index, size)
            return _json({"leaf_index": index, "audit_path": [_b64(h) for h in proof]}), 0
        if endpoint == "get-entry-and-proof":
            index, size = _int(q, "leaf_index"), self._tree_size(q, sth)
            if index >= size:
                raise BadRequest(f"leaf_index {index} is not below tree_size {size}")
            with self._lock:
                leaf, extra = view.leaves[index], self._extras[index]
                proof = view.tree.inclusion_proof(index, size)
            if index in self.faults.tampered:
                leaf = _tamper(leaf, self._ext_len)
            body = {
                "leaf_input": _b64(leaf),
                "extra_data": _b64(extra),
                "audit_path": [_b64(h) for h in proof],
            }
            return _json(body), 1
        raise BadRequest(f"unknown endpoint {endpoint!r}", 404)

    @staticmethod
    def _tree_size(q: Mapping[str, str], sth: SignedTreeHead) -> int:
        size = _int(q, "tree_size")
        if not 1 <= size <= sth.tree_size:
            raise BadRequest(f"tree_size {size} is not in [1, {sth.tree_size}]")
        return size

    # ----------------------------------------------------------------- static-ct-api

    def _dispatch_static(self, path: str) -> tuple[Answer, int]:
        view = self._view()
        if path == "checkpoint":
            return Answer(200, self._note(view), content_type="text/plain; charset=utf-8"), 0
        if path.startswith("issuer/"):
            fingerprint = path.removeprefix("issuer/")
            der = self._issuers.get(bytes.fromhex(fingerprint)) if _is_hex64(fingerprint) else None
            if der is None:
                raise BadRequest(f"no issuer {fingerprint}", 404)
            if self.faults.corrupt_issuers:
                der = der[:-1] + bytes([der[-1] ^ 0x01])
            return Answer(200, der, content_type="application/pkix-cert"), 0
        try:
            tile = parse_tile_path(path)
        except TileError:
            raise BadRequest(f"no such resource {path!r}", 404) from None
        if not self._tile_served(tile, view.sth.tree_size):
            raise BadRequest(f"{tile} is not served at tree size {view.sth.tree_size}", 404)
        if tile.data:
            return Answer(200, self._data_tile(view, tile), content_type=_OCTETS), tile.width
        with self._lock:
            body = encode_hash_tile(_tile_hashes(view.tree, tile))
        return Answer(200, body, content_type=_OCTETS), 0

    def _tile_served(self, tile: TileRef, size: int) -> bool:
        """As static-ct-api logs do: full tiles once full; a partial tile only at the width a
        published (or the served rolled-back) tree size gives it, and only until it is full."""
        have = tile_width(tile.level, tile.index, size)
        if not tile.partial or have == TILE_WIDTH:
            return tile.width == have
        shift = TILE_HEIGHT * tile.level
        low = (tile.start + tile.width) << shift  # the sizes giving this tile that width
        high = low + (1 << shift)
        rollback = self.faults.rollback_to
        if rollback is not None and low <= rollback < high:
            return True
        with self._lock:
            at = bisect.bisect_left(self._published, low)
            return at < len(self._published) and self._published[at] < high

    def _untouched(self, start: int, end: int) -> bool:
        """No tampered or bad_base64 index in [start, end): served as stored."""
        faults = self.faults
        span = range(start, end)
        return faults.tampered.isdisjoint(span) and faults.bad_base64.isdisjoint(span)

    def _data_tile(self, view: _View, tile: TileRef) -> bytes:
        store = self._replay
        if store is not None and view.leaves is store and self._untouched(tile.start, tile.start + tile.width):
            with self._lock:
                cached = None if tile.partial else self._tile_cache.get(tile.index)
                if cached is not None:
                    return cached[0]
                body = store.data_tile(tile.start, tile.start + tile.width, self._fingerprint)
                if not tile.partial:
                    if len(self._tile_cache) >= _TILE_CACHE:
                        del self._tile_cache[min(self._tile_cache)]
                    self._tile_cache[tile.index] = [body]
                return body
        with self._lock:
            leaves = view.leaves[tile.start : tile.start + tile.width]
            extras = self._extras[tile.start : tile.start + tile.width]
        tampered = self.faults.tampered
        out = bytearray()
        for i, (leaf, extra) in enumerate(zip(leaves, extras), tile.start):
            if i in tampered:
                leaf = _tamper(leaf, self._ext_len)
            # leaf_input = 0x00 0x00 || TimestampedEntry; byte 11 is the low byte of entry_type.
            chain = parse_extra_data("x509" if leaf[11] == 0 else "precert", extra)
            fingerprints = [self._fingerprint(der) for der in chain.chain]
            out += encode_tile_leaf(leaf[2:], fingerprints, chain.pre_certificate)
        return bytes(out)

    def _fingerprint(self, der: bytes) -> bytes:
        found = self._fingerprints.get(der)  # chain certificates repeat: hash each once
        if found is None:
            found = self._fingerprints[der] = hashlib.sha256(der).digest()
        return found


def _tile_hashes(tree: MerkleTree, tile: TileRef) -> list[bytes]:
    # MerkleTree memoises every complete node; its private accessor is the cheap way to read
    # the level-8L nodes a hash tile holds (callers check the tile is complete in the tree).
    level = TILE_HEIGHT * tile.level
    return [bytes(tree._node(level, i)) for i in range(tile.start, tile.start + tile.width)]


def _is_hex64(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _raise(err: Exception) -> Any:
    raise err


def _int(q: Mapping[str, str], name: str) -> int:
    raw = q.get(name)
    if raw is None:
        raise BadRequest(f"missing parameter {name}")
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"parameter {name}={raw!r} is not a non-negative integer")
    return int(raw)


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    disable_nagle_algorithm = True  # else headers and body wait ~40 ms on delayed ACKs
    server: _HTTPServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        slug, _, rest = parts.path.lstrip("/").partition("/")
        log = self.server.logs.get(slug)
        endpoint = rest.removeprefix("ct/v1/")
        if log is not None and endpoint != rest and "/" not in endpoint:
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            self._send(log.answer(endpoint, query))
        elif log is not None and log.tiled and endpoint == rest:
            accept = self.headers.get("Accept-Encoding", "")
            self._send(log.answer_static(rest, accept_gzip="gzip" in accept.lower()))
        else:
            self._send(_text(404, "not found"))

    def _send(self, answer: Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            if answer.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(answer.body) + answer.padding))
            for name, value in answer.headers:
                self.send_header(name, value)
            self.end_headers()
            if answer.reset:
                self.wfile.write(answer.body[: len(answer.body) // 2])
                self._reset()
                return
            self._write(answer.body, answer.chunked)
            left = answer.padding
            block = b" " * min(left, 1 << 20)
            while left > 0:
                self._write(block[:left], answer.chunked)
                left -= len(block)
            if answer.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (a timeout): nothing to do

    def _write(self, data: bytes, chunked: bool) -> None:
        if chunked and data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        elif data:
            self.wfile.write(data)

    def _reset(self) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0), as a crashing peer would."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.wfile.close()
        self.rfile.close()
        self.connection.close()
        self.wfile = io.BytesIO()  # what http.server flushes after do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a benchmark makes thousands of requests: no access log on stderr


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    logs: dict[str, LocalCTLog]


class LogServer:
    """Several local logs behind one HTTP server on 127.0.0.1 (`port=0`: a free port).

    The port is bound at construction, so URLs and the log list are known before
    `start()`. Logs with `rate > 0` grow and publish about every `publish_interval`
    seconds while the server runs; logs with rate 0 change only through their methods.
    """

    def __init__(self, port: int = 0, *, publish_interval: float = 1.0) -> None:
        self._httpd = _HTTPServer((HOST, port), _Handler)
        self._httpd.logs = {}
        self._logs: list[LocalCTLog] = []
        self._lock = threading.Lock()
        self._interval = publish_interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def logs(self) -> tuple[LocalCTLog, ...]:
        with self._lock:
            return tuple(self._logs)

    def add_log(
        self,
        name: str,
        *,
        seed: int | None = None,
        initial_size: int = 0,
        rate: float = 0.0,
        faults: Faults | None = None,
        tiled: bool = False,
        replay: bool = False,
        operator: str = OPERATOR,
        pool_size: int = DEFAULT_POOL_SIZE,
        history: tuple[float, float] | None = None,
        history_disorder: float = 0.0,
    ) -> LocalCTLog:
        """Create, fill (`initial_size` entries, published) and host a log named `name`;
        `tiled` makes it a static-ct-api log (checkpoint origin `127.0.0.1:<port>/<slug>`).
        `replay` makes it grow from the process's replay pool of `pool_size` entries (cheap; see
        LocalCTLog; a larger pool repeats certificates less often); `operator` names its operator in `log_list()`.

        `history` = (hours, rate) starts the log with that many hours of backdated entries,
        `rate` per second of history (round(hours * 3600 * rate) entries, via `grow_history`,
        seeded by the log's seed), each timestamp moved by up to `history_disorder` seconds;
        the window ends `history_disorder` seconds before now, so no timestamp lies in the
        future. The `initial_size` entries follow, stamped now.

        `seed` defaults to the log's position (1, 2, ...), so logs differ. Raises
        ValueError if another log already has the same slug, or on a negative history.
        """
        with self._lock:
            position = len(self._logs) + 1
        log = LocalCTLog(
            name,
            seed=position if seed is None else seed,
            faults=faults,
            rate=rate,
            tiled=tiled,
            origin=f"{HOST}:{self.port}/{slugify(name)}",
            replay=replay,
            operator=operator,
            pool_size=pool_size,
        )
        if history is not None:
            hours, per_second = history
            if hours < 0 or per_second < 0 or history_disorder < 0:
                raise ValueError(f"history {history} and history_disorder {history_disorder} must not be negative")
            disorder_ms = round(history_disorder * 1000)
            end_ms = _now_ms() - disorder_ms
            log.grow_history(
                round(hours * 3600 * per_second),
                start_ms=end_ms - round(hours * 3_600_000),
                end_ms=end_ms,
                disorder_ms=disorder_ms,
                seed=position if seed is None else seed,
            )
        if initial_size:
            log.grow(initial_size)
        log.publish()
        with self._lock:
            if log.slug in self._httpd.logs:
                raise ValueError(f"a log with slug {log.slug!r} already exists")
            self._httpd.logs[log.slug] = log
            self._logs.append(log)
        return log

    def url_of(self, log: LocalCTLog) -> str:
        """The log's RFC 6962 base URL, or a tiled log's submission and monitoring prefix;
        ending with '/'."""
        return f"http://{HOST}:{self.port}/{log.slug}/"

    def start(self) -> LogServer:
        """Serve and grow in background threads; idempotent. Raises RuntimeError after stop()."""
        if self._threads:
            return self
        if self._closed:
            raise RuntimeError("this LogServer was stopped; make a new one")
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="ctlog-http",
                daemon=True,
            ),
            threading.Thread(target=self._grow_forever, name="ctlog-growth", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and growing, and close the socket (for good); idempotent."""
        self._stop.set()
        if self._threads:
            self._httpd.shutdown()
            for thread in self._threads:
                thread.join()
            self._threads = []
        if not self._closed:
            self._closed = True
            self._httpd.server_close()

    def __enter__(self) -> LogServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _grow_forever(self) -> None:
        # A log's first tick starts its clock; later ticks grow it by rate x elapsed time.
        next_tick = time.monotonic()
        while True:
            for log in self.logs:
                log.tick()
            # Keep the cadence even when growing took a good part of the interval.
            next_tick = max(next_tick + self._interval, time.monotonic())
            if self._stop.wait(next_tick - time.monotonic()):
                return

    def log_list(self) -> dict[str, Any]:
        """A Google log list v3 describing this server's logs, all `usable`; tiled logs under
        `tiled_logs` with submission and monitoring URL (the same prefix) and mmd 60. Logs are
        grouped by operator, operators in the order their first log was added (OPERATOR alone,
        with no logs, for an empty server)."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        # Generous: certificates expire 90 days after issuance, whatever the clock says.
        start = dt.datetime(now.year - 1, 1, 1, tzinfo=dt.UTC)
        end = dt.datetime(now.year + 2, 1, 1, tzinfo=dt.UTC)

        def entry(log: LocalCTLog) -> dict[str, Any]:
            url = self.url_of(log)
            where = {"submission_url": url, "monitoring_url": url} if log.tiled else {"url": url}
            return {
                "description": log.description,
                "log_id": log.log_id_b64,
                "key": log.key_b64,
                **where,
                "mmd": 60 if log.tiled else 86400,
                "state": {"usable": {"timestamp": _iso(log.created)}},
                "temporal_interval": {"start_inclusive": _iso(start), "end_exclusive": _iso(end)},
            }

        operators: dict[str, list[LocalCTLog]] = {}
        for log in self.logs:
            operators.setdefault(log.operator, []).append(log)
        return {
            "version": "1.0",
            "log_list_timestamp": _iso(now),
            "operators": [
                {
                    "name": name,
                    "email": [_operator_email(name)],
                    "logs": [entry(log) for log in logs if not log.tiled],
                    "tiled_logs": [entry(log) for log in logs if log.tiled],
                }
                for name, logs in (operators or {OPERATOR: []}).items()
            ],
        }

    def write_log_list(self, path: str | Path) -> Path:
        """Write `log_list()` to `path` atomically (readers never see half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.log_list(), indent=2) + "\n")
        tmp.replace(path)
        return path


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _operator_email(operator: str) -> str:
    """A contact address for a local operator: ct-airflow-local@example.org for OPERATOR."""
    return f"{slugify(operator) or 'operator'}@example.org" if operator != OPERATOR else "ct-airflow-local@example.org"


# --------------------------------------------------------------------------- CLI

# `--phishing-every N`: every Nth certificate of a log is issued for phishing-style names,
# made from these few brands and templates (nothing taken from a labelled data set).
_PHISHING_BRANDS = (
    "paypal", "microsoft", "amazon", "netflix", "coinbase", "binance", "wellsfargo", "dropbox",
    "docusign", "facebook",
)  # fmt: skip
_PHISHING_LURES = (
    "secure-login", "verify-account", "account-update", "signin", "login-verify",
    "support-center", "password-reset", "billing",
)  # fmt: skip
_PHISHING_TLDS = ("top", "xyz", "icu", "click", "buzz", "live", "online", "info", "shop", "cfd")
_PHISHING_FILLER = ("maple", "harbor", "orbit", "cedar", "falcon", "summit", "pixel", "rocket", "river", "stone")
_LEET = {"a": "4", "o": "0", "l": "1", "i": "1", "e": "3", "s": "5"}
# Latin letters and their Cyrillic look-alikes (а о е р с і х).
_CONFUSABLES = {"a": "\u0430", "o": "\u043e", "e": "\u0435", "p": "\u0440", "c": "\u0441", "i": "\u0456", "x": "\u0445"}


def _typosquat(rng: random.Random, brand: str) -> str:
    spots = [i for i, ch in enumerate(brand) if ch in _LEET]
    if spots and rng.random() < 0.7:  # a digit for a letter: paypa1
        i = rng.choice(spots)
        return brand[:i] + _LEET[brand[i]] + brand[i + 1 :]
    i = rng.randrange(1, len(brand) - 1)  # two letters swapped: amaozn
    return brand[:i] + brand[i + 1] + brand[i] + brand[i + 2 :]


def _homoglyph(rng: random.Random, brand: str) -> str:
    """The brand with one letter replaced by its Cyrillic look-alike, as an A-label."""
    i = rng.choice([i for i, ch in enumerate(brand) if ch in _CONFUSABLES])
    return (brand[:i] + _CONFUSABLES[brand[i]] + brand[i + 1 :]).encode("idna").decode("ascii")


def phishing_names(rng: random.Random) -> list[str]:
    """DNS names of one phishing-style certificate, from one of four templates: the brand in
    a subdomain of an unrelated domain under an abused TLD (paypal.com.secure-login.
    maple12-orbit.top), a typosquat with a lure (paypa1-login7.xyz), a homoglyph IDN
    (xn--pypal-4ve.com) or the brand plus lure keywords (paypal-verify-account-cedar42.icu)."""
    brand = rng.choice(_PHISHING_BRANDS)
    lure = rng.choice(_PHISHING_LURES)
    tld = rng.choice(_PHISHING_TLDS)
    tag = f"{rng.choice(_PHISHING_FILLER)}{rng.randrange(10, 9999)}"
    kind = rng.randrange(4)
    if kind == 0:
        domain = f"{tag}-{rng.choice(_PHISHING_FILLER)}.{tld}"
        return [f"{brand}.com.{lure}.{domain}", f"{brand}.{domain}"]
    if kind == 1:
        domain = f"{_typosquat(rng, brand)}-{lure.split('-')[0]}{rng.randrange(1, 99)}.{tld}"
        return [domain, f"www.{domain}"]
    if kind == 2:
        domain = f"{_homoglyph(rng, brand)}.{rng.choice(('com', tld))}"
        return [domain, f"{lure}.{domain}"]
    domain = f"{brand}-{lure}-{tag}.{tld}"
    return [domain, f"www.{domain}"]


_WATCHED_HOSTS = ("www", "mail", "vpn", "shop", "login", "api", "portal", "cdn")


def watched_names(rng: random.Random, domain: str) -> list[str]:
    """DNS names of one certificate for a domain someone watches: a host under it, the domain
    with its www, or a wildcard with the domain (which covers every host one label under it)."""
    kind = rng.randrange(3)
    if kind == 0:
        return [f"{rng.choice(_WATCHED_HOSTS)}{rng.randrange(1, 99)}.{domain}"]
    if kind == 1:
        return [domain, f"www.{domain}"]
    return [f"*.{domain}", domain]


class _PlantingGrowth:
    """The CLI's growth when `--phishing-every N` or `--watched-every M` is on, in place of
    LogServer's: each log grows by `rate` entries per second (published about every second),
    and each entry whose index + 1 is a multiple of N is a certificate for `phishing_names`,
    of M one for `watched_names` of `watched_domain` (N first where both fall on one entry;
    a precertificate's final certificate may follow later, as for any). Each planted
    certificate is appended to `planted` (JSON lines: log, index, names, kind) before it is
    published."""

    def __init__(
        self, logs: Sequence[LocalCTLog], rate: float, every: int, seed: int, planted: Path | None,
        watched_domain: str = "", watched_every: int = 0,
    ) -> None:
        self.logs = list(logs)
        self.rate = rate
        self._plants: list[tuple[str, int, Callable[[random.Random], list[str]]]] = []
        if every > 0:
            self._plants.append(("phishing", every, phishing_names))
        if watched_every > 0 and watched_domain:
            self._plants.append(("watched", watched_every, lambda rng: watched_names(rng, watched_domain)))
        self._rngs = {log.slug: random.Random(f"phishing:{seed}:{log.slug}") for log in self.logs}
        self._carry = {log.slug: 0.0 for log in self.logs}
        self._planted = open(planted, "a", encoding="utf-8") if planted else None  # noqa: SIM115

    def grow(self, log: LocalCTLog, n: int) -> None:
        target = log.size + n
        while log.size < target:
            size = log.size
            # The next planted index: the first at or after `size` that is a multiple's last.
            planted_at, kind, make = min(((size // every + 1) * every - 1, kind, make)
                                         for kind, every, make in self._plants)
            if planted_at >= target:
                log.grow(target - size)
                return
            if planted_at > size:
                log.grow(planted_at - size)
            names = make(self._rngs[log.slug])
            index = log.submit(names)
            if self._planted is not None:
                record = {"log": log.slug, "index": index, "names": names, "kind": kind}
                self._planted.write(json.dumps(record) + "\n")
                self._planted.flush()

    def run(self, stop: threading.Event, interval: float = 1.0) -> None:
        last = time.monotonic()
        while not stop.wait(interval):
            now = time.monotonic()
            elapsed, last = min(now - last, _MAX_BACKLOG_S), now
            for log in self.logs:
                due = self.rate * elapsed + self._carry[log.slug]
                self._carry[log.slug] = due - int(due)
                self.grow(log, int(due))
                log.publish()

    def close(self) -> None:
        if self._planted is not None:
            self._planted.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.testing.ctlog", description=(__doc__ or "").split("\n")[0]
    )
    add = parser.add_argument
    add("--logs", type=int, default=1, help="number of logs (default 1)")
    add("--tiled", type=int, default=0, help="how many of the logs are static-ct-api (tiled) logs")
    add("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    add("--log-list", type=Path, required=True, help="where to write the log list JSON")
    add("--initial-size", type=int, default=0, help="entries per log at start")
    add("--rate", type=float, default=0.0, help="entries per second per log")
    add("--cap", type=int, default=Faults.cap, help="most entries per get-entries answer")
    add("--seed", type=int, default=0, help="log i (from 1) uses seed + i")
    add("--phishing-every", type=int, default=0, metavar="N",
        help="every Nth certificate of each log has phishing-style names (default 0: none; "
             "live growth only, the history has none)")
    add("--watched-domain", default="", metavar="DOMAIN",
        help="with --watched-every: the domain the planted certificates are for")
    add("--watched-every", type=int, default=0, metavar="M",
        help="every Mth certificate of each log is for a name under --watched-domain (a host, "
             "the domain and its www, or a wildcard; default 0: none)")  # fmt: skip
    add("--planted", type=Path, default=None, metavar="PATH",
        help="with --phishing-every or --watched-every: append each planted certificate to PATH "
             "(JSON lines: log slug, index, names, kind)")  # fmt: skip
    add("--history-hours", type=float, default=0.0, metavar="H",
        help="each log starts with H hours of backdated history ending now, published "
             "before live growth (default 0: none)")  # fmt: skip
    add("--history-rate", type=float, default=1.0, metavar="R",
        help="entries per second of history: H * 3600 * R entries per log (default 1.0)")
    add("--disorder-seconds", type=float, default=0.0, metavar="S",
        help="move each history timestamp by up to S seconds either way; the history then "
             "ends S seconds before now, so none lies in the future (default 0)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.logs < 1 or args.initial_size < 0 or args.rate < 0 or args.cap < 1:
        parser.error("--logs and --cap must be >= 1, --initial-size and --rate >= 0")
    if args.history_hours < 0 or args.history_rate < 0 or args.disorder_seconds < 0:
        parser.error("--history-hours, --history-rate and --disorder-seconds must be >= 0")
    if not 0 <= args.tiled <= args.logs:
        parser.error("--tiled must be between 0 and --logs")
    if args.phishing_every < 0 or args.watched_every < 0:
        parser.error("--phishing-every and --watched-every must be >= 0")
    if args.watched_every and not args.watched_domain:
        parser.error("--watched-every needs --watched-domain")

    stop = threading.Event()
    # SIGTERM (docker, make) must stop as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = LogServer(args.port)
    planting = args.phishing_every > 0 or args.watched_every > 0
    classic = args.logs - args.tiled
    for i in range(1, args.logs + 1):
        tiled = i > classic
        server.add_log(
            f"Local Tiled Log {i - classic}" if tiled else f"Local Test Log {i}",
            tiled=tiled,
            seed=args.seed + i,
            initial_size=0 if planting else args.initial_size,
            rate=0.0 if planting else args.rate,
            faults=Faults(cap=args.cap),
            history=(args.history_hours, args.history_rate) if args.history_hours > 0 else None,
            history_disorder=args.disorder_seconds,
        )
    growth = None
    if planting:
        if args.planted:
            args.planted.parent.mkdir(parents=True, exist_ok=True)
        growth = _PlantingGrowth(server.logs, args.rate, args.phishing_every, args.seed, args.planted,
                                 args.watched_domain, args.watched_every)
        for log in server.logs:
            growth.grow(log, args.initial_size)
            log.publish()
    server.write_log_list(args.log_list)
    with server:
        for log in server.logs:
            print(f"{log.description} {server.url_of(log)}", flush=True)
        grower = None
        if growth is not None and args.rate > 0:
            grower = threading.Thread(target=growth.run, args=(stop,), name="ctlog-planting", daemon=True)
            grower.start()
        while not stop.wait(0.5):
            pass
        if grower is not None:
            grower.join()
    if growth is not None:
        growth.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
