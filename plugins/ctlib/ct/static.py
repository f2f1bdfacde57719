"""Client of static-ct-api (tiled) logs: checkpoint, hash tiles, data tiles and issuers.

Every resource lives below the log's monitoring prefix (`CTLog.url`). Entries come back as
`RawEntry`s in RFC 6962 form (leaf_input = 0x00 0x00 || TimestampedEntry, extra_data =
the chain certificates fetched from `issuer/<hex>`), so the RFC 6962 decoder reads them
unchanged and their leaf hashes are the level-0 tile hashes.

Contracts:
* A checkpoint is accepted under its own origin line (static-ct-api makes it the
  submission prefix, which the log list does not keep) but only if an RFC 6962 note
  signature by that origin verifies with the log list's key; otherwise
  VerificationError("bad_signature").
* A body that does not parse (a truncated tile, a bad gzip stream, a certificate that does
  not hash to its fingerprint) is fetched again like a 5xx, up to the HTTP policy's
  attempts; then StaticResponseError names the log and the tile, entry or issuer. Entries
  are never skipped.
* A partial tile that is not served (404) is replaced by the first W hashes or entries of
  the full tile (static-ct-api lets logs delete partial tiles once they fill up) or, failing
  that, of the partial tile of the log's current verified checkpoint (a log serves only the
  partial tiles of sizes it published, and `end` may be any size up to a tree head's).
* Bodies are gunzipped when the server says so (requests does it) and also when they are
  gzip without saying so (magic 1f 8b), up to the HTTP policy's body limit.
Thread-safe: the session is, and the caches are locked.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from ctlib.ct.leaf import encode_precert_chain_entry, encode_x509_chain
from ctlib.ct.loglist import CTLog
from ctlib.ct.merkle import HASH_SIZE, CompactRange, prefix_nodes
from ctlib.ct.sth import SignatureError, parse_checkpoint, verify_checkpoint
from ctlib.ct.tiles import (
    TILE_WIDTH,
    TileError,
    TileLeaf,
    TileRef,
    TileTree,
    data_tiles,
    parse_data_tile,
    parse_hash_tile,
    tile_width,
)
from ctlib.ct.types import RawEntry, TreeHead, VerificationError
from ctlib.http import HttpError, HttpSession
from ctlib.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
_GZIP_MAGIC = b"\x1f\x8b"
_HASH_TILE_CACHE = 1024  # tiles (8 KiB each): every tile is immutable at a given width


class StaticResponseError(RuntimeError):
    """A tiled log served something unusable, again and again, or not at all (an issuer);
    the message names the log and the tile, entry or issuer."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def gunzip_if_gzip(body: bytes, limit: int, plain_len: int | None = None) -> bytes:
    """`body`, gunzipped if it is a gzip stream (magic 1f 8b) sent without Content-Encoding.
    A body of exactly `plain_len` bytes is taken as plain (a hash tile may start with 1f 8b).
    Raises TileError on a broken stream or more than `limit` bytes once decompressed."""
    if body[:2] != _GZIP_MAGIC or len(body) == plain_len:
        return body
    inflater = zlib.decompressobj(wbits=31)  # gzip container
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise TileError(f"broken gzip body: {err}") from None
    if len(out) > limit:
        raise TileError(f"gzip body inflates beyond the {limit}-byte limit")
    if not inflater.eof:
        raise TileError("truncated gzip body")
    return out


class StaticClient:
    """Reads one static-ct-api log (a ctlib.ct.types.LogClient)."""

    def __init__(self, log: CTLog, session: HttpSession, settings: Settings) -> None:
        self.log = log
        self.session = session
        self.settings = settings
        self._issuers: dict[bytes, bytes] = {}
        self._issuer_lock = threading.Lock()  # held while fetching: each issuer once
        self._hash_tiles: dict[TileRef, list[bytes]] = {}
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # ----------------------------------------------------------------- HTTP

    def _url(self, path: str) -> str:
        return f"{self.log.url}{path}"

    def _fetch(self, path: str, parse: Callable[[bytes], T], what: str) -> T:
        """GET below the prefix and parse the raw body. A body that does not parse (ValueError:
        TileError, TreeHeadFormatError, UnicodeDecodeError...) is fetched again like a 5xx, by
        the session (HttpSession.get_parsed); StaticResponseError when every answer was refused."""
        try:
            return self.session.get_parsed(self._url(path), parse, f"an unusable {what}")
        except HttpError as err:
            if err.status != 200:
                raise
            raise StaticResponseError(str(err)) from None

    def _fetch_tile(self, tile: TileRef, parse: Callable[[bytes, TileRef], list[T]]) -> list[T]:
        """The tile's first `width` items. A partial tile that is not served (404) is read
        from the full tile (logs delete partial tiles once full), else from the partial tile
        of the log's current verified checkpoint (a width no checkpoint had is never served).
        `parse(body, served)` parses the tile actually served."""

        def fetch(served: TileRef) -> list[T]:
            what = str(served) if served == tile else f"{served} (for {tile})"
            return self._fetch(served.path, lambda body: parse(body, served)[: tile.width], what)

        try:
            return fetch(tile)
        except HttpError as err:
            if err.status != 404 or not tile.partial:
                raise
            gone = err
        try:
            return fetch(tile.full())
        except HttpError as err:
            if err.status != 404:
                raise
        try:
            size = self.tree_head().size
        except HttpError:
            raise gone from None
        now = tile_width(tile.level, tile.index, size)
        if now <= tile.width:
            raise gone
        return fetch(TileRef(tile.level, tile.index, now, tile.data))

    # ----------------------------------------------------------------- resources

    def read_tile(self, level: int, index: int, width: int) -> list[bytes]:
        """The `width` hashes of hash tile (level, index); a ctlib.ct.tiles.ReadTile."""
        tile = TileRef(level, index, width)
        with self._cache_lock:
            hit = self._hash_tiles.get(tile)
        if hit is not None:
            return hit
        limit = self.session.policy.max_body_bytes

        def parse(body: bytes, served: TileRef) -> list[bytes]:
            plain = HASH_SIZE * served.width
            return parse_hash_tile(gunzip_if_gzip(body, limit, plain), served.width)

        hashes = self._fetch_tile(tile, parse)
        with self._cache_lock:
            if len(self._hash_tiles) >= _HASH_TILE_CACHE:
                self._hash_tiles.clear()
            self._hash_tiles[tile] = hashes
        return hashes

    def read_data_tile(self, index: int, width: int = TILE_WIDTH) -> list[TileLeaf]:
        """The `width` TileLeafs of data tile `index`, each checked to carry its own index."""
        limit = self.session.policy.max_body_bytes

        def parse(body: bytes, served: TileRef) -> list[TileLeaf]:
            return parse_data_tile(gunzip_if_gzip(body, limit), served.index, served.width)

        return self._fetch_tile(TileRef(0, index, width, data=True), parse)

    def issuer(self, fingerprint: bytes) -> bytes:
        """The DER issuer certificate with this SHA-256 fingerprint, fetched once per client.
        Raises StaticResponseError if the log does not serve it or serves other bytes."""
        with self._issuer_lock:
            der = self._issuers.get(fingerprint)
            if der is not None:
                return der
            hex_fp = fingerprint.hex()
            limit = self.session.policy.max_body_bytes

            def parse(body: bytes) -> bytes:
                body = gunzip_if_gzip(body, limit)
                got = hashlib.sha256(body).digest()
                if got != fingerprint:
                    raise TileError(f"served a certificate whose SHA-256 is {got.hex()}, not its fingerprint")
                return body

            try:
                der = self._fetch(f"issuer/{hex_fp}", parse, f"issuer/{hex_fp}")
            except HttpError as err:
                if err.status != 404:
                    raise
                raise StaticResponseError(
                    f"{self.log.slug}: issuer/{hex_fp} is not served (HTTP 404), "
                    "yet a TileLeaf names it"
                ) from None
            self._issuers[fingerprint] = der
            return der

    def _raw_entry(self, leaf: TileLeaf, tile: TileRef) -> RawEntry:
        try:
            chain = [self.issuer(fp) for fp in leaf.chain]
        except StaticResponseError as err:
            raise StaticResponseError(f"{err} (chain of entry {leaf.leaf_index}, {tile})") from None
        if leaf.pre_certificate is None:
            extra = encode_x509_chain(chain)
        else:
            extra = encode_precert_chain_entry(leaf.pre_certificate, chain)
        return RawEntry(index=leaf.leaf_index, leaf_input=leaf.leaf_input, extra_data=extra)

    def _tile_entries(self, tile: TileRef, start: int, end: int) -> list[RawEntry]:
        leaves = self.read_data_tile(tile.index, tile.width)
        return [self._raw_entry(leaf, tile) for leaf in leaves if start <= leaf.leaf_index < end]

    # ----------------------------------------------------------------- LogClient

    def tree_head(self) -> TreeHead:
        """The verified checkpoint (see the module contracts)."""

        def parse(body: bytes) -> bytes:
            parse_checkpoint(body)  # a truncated note is fetched again, not reported
            return body

        text = self._fetch("checkpoint", parse, "checkpoint")
        origin = parse_checkpoint(text).checkpoint.origin
        try:
            cp = verify_checkpoint(text, origin, self.log.key_der)
        except SignatureError as err:
            raise VerificationError("bad_signature", f"{self.log.slug}: {err}") from None
        assert cp.timestamp is not None  # verify_checkpoint sets it
        return TreeHead(cp.tree_size, cp.timestamp, cp.root_hash, text.decode("utf-8"))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The RFC 6962 proof between sizes first <= second, built from the hash tiles of
        tree size `second` (empty when first is 0 or second)."""
        return TileTree(second, self.read_tile).consistency_proof(first)

    def compact_range_before(self, index: int, head: TreeHead) -> CompactRange:
        """[0, index) from the hash tiles of tree size head.size (perfect subtrees only)."""
        tree = TileTree(head.size, self.read_tile)
        return CompactRange(0, index, tuple(tree.perfect(level, k) for level, k in prefix_nodes(index)))

    def compact_range_at(self, head: TreeHead) -> CompactRange:
        """[0, head.size) from the hash tiles; VerificationError("root_mismatch") unless it
        hashes to head.root_hash."""
        compact = TileTree(head.size, self.read_tile).compact_range()
        root = compact.root()
        if root != head.root_hash:
            raise VerificationError(
                "root_mismatch",
                f"{self.log.slug}: the hash tiles of tree size {head.size} give root {_b64(root)}, "
                f"the checkpoint signs {_b64(head.root_hash)}",
            )
        return compact

    def entry_timestamps(self, index: int, tree_size: int, count: int = 1) -> list[tuple[int, int]]:
        """[(leaf index, log timestamp in ms)] of every entry of the data tile holding entry
        `index`, in index order: the full tile (256 entries), or the partial last tile of the
        tree of `tree_size` (tree_size % 256 entries) when `index` is in it. One tile read
        (read_data_tile, so a partial tile no longer served is read from the full one); no
        issuer is fetched and nothing is verified. Raises ValueError unless
        0 <= index < tree_size; StaticResponseError / HttpError name the log and the tile."""
        if not 0 <= index < tree_size:
            raise ValueError(f"{self.log.slug}: entry {index} is not in a tree of size {tree_size}")
        tile = index // TILE_WIDTH
        leaves = self.read_data_tile(tile, tile_width(0, tile, tree_size))
        return [(leaf.leaf_index, leaf.entry.timestamp_ms) for leaf in leaves]

    def fetch_range(self, start: int, end: int, *, batch: int, in_flight: int) -> Iterator[list[RawEntry]]:
        """Yield the entries of [start, end) in index order, in lists of `batch` (the last
        one shorter). Reads the data tiles of tree size `end`: full tiles, and the partial
        tile `.p/<end % 256>` only when end is not a tile boundary. Up to `in_flight` tiles
        are fetched at once while the caller works on earlier ones."""
        if start >= end:
            return
        tiles = deque(data_tiles(start, end))
        batch = max(1, batch)
        workers = max(1, in_flight)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"tiles-{self.log.slug}") as pool:
            pending: deque[Future[list[RawEntry]]] = deque()
            buffer: list[RawEntry] = []
            try:
                while tiles or pending:
                    while tiles and len(pending) < 2 * workers:
                        pending.append(pool.submit(self._tile_entries, tiles.popleft(), start, end))
                    buffer.extend(pending.popleft().result())
                    while len(buffer) >= batch:
                        yield buffer[:batch]
                        del buffer[:batch]
                if buffer:
                    yield buffer
            finally:
                for future in pending:
                    future.cancel()
