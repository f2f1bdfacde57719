"""C2SP tlog-tiles / static-ct-api formats: tile paths, TileLeaf entries, hash tiles, and
Merkle nodes and proofs computed from tiles. Pure: no I/O (the caller passes a tile reader).

A tiled log serves its tree as tiles of height 8: the tile at level L, index N holds the up
to 256 hashes of the Merkle nodes at tree level 8L numbered 256N .. 256N+255 (level 0: leaf
hashes), and only full (perfect) subtrees are ever in a tile. Data tiles (`tile/data/N`)
hold the entries of level-0 tile N as concatenated TileLeaf structures:

    TileLeaf    = TimestampedEntry | [precert: ASN.1Cert pre_certificate<1..2^24-1>]
                  | Fingerprint chain<0..2^16-1>          (Fingerprint = SHA-256 of a DER issuer)
    CtExtensions of a static-ct-api TimestampedEntry = Extension list:
                  extension_type(1) | extension_data<0..2^16-1>; leaf_index (type 0) = uint40

The RFC 6962 leaf_input of an entry is 0x00 0x00 || TimestampedEntry, so its leaf hash is
SHA-256(0x00 || 0x00 0x00 || TimestampedEntry): `TileLeaf.leaf_input` gives those bytes.

Format errors raise TileError naming the tile, entry and byte offset; size arguments out
of range raise MerkleError, as ctlib.ct.merkle does.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ctlib.ct.leaf import LeafError, MerkleTreeLeaf, parse_timestamped_entry
from ctlib.ct.merkle import HASH_SIZE, CompactRange, MerkleError, node_hash

__all__ = [
    "LEAF_INDEX_EXTENSION",
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "ReadTile",
    "TileError",
    "TileLeaf",
    "TileRef",
    "TileTree",
    "compact_range_from_tiles",
    "consistency_proof_from_tiles",
    "data_tiles",
    "decode_tile_index",
    "encode_hash_tile",
    "encode_leaf_index_extension",
    "encode_tile_index",
    "encode_tile_leaf",
    "inclusion_proof_from_tiles",
    "leaf_index_of",
    "node_hash_from_tiles",
    "parse_ct_extensions",
    "parse_data_tile",
    "parse_hash_tile",
    "parse_tile_leaf",
    "parse_tile_path",
    "tile_width",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes (or entries) in a full tile
MAX_TILE_LEVEL = 63  # tlog-tiles; static-ct-api logs use at most 5
LEAF_INDEX_EXTENSION = 0  # static-ct-api ExtensionType leaf_index
_LEAF_INDEX_LEN = 5  # uint40
_MERKLE_LEAF_PREFIX = b"\x00\x00"  # MerkleTreeLeaf version v1, leaf_type timestamped_entry
_X509_ENTRY = 0
_PRECERT_ENTRY = 1
_U16 = struct.Struct(">H")
_EXT_HEADER = struct.Struct(">BH")  # extension_type, extension_data length
_MAX_U16 = (1 << 16) - 1
_MAX_U24 = (1 << 24) - 1
_MAX_INDEX = 1 << 64

# "000" or "x001/x234/067": 3-digit elements, every one but the last prefixed with x,
# no leading "x000" element (so each index has exactly one path).
_INDEX_RE = re.compile(r"(?:x(?!000)[0-9]{3}/(?:x[0-9]{3}/)*)?[0-9]{3}")
_TILE_PATH_RE = re.compile(
    r"tile/(?P<level>data|0|[1-9][0-9]?)/(?P<index>[x0-9/]+?)(?:\.p/(?P<width>[1-9][0-9]{0,2}))?"
)


class TileError(ValueError):
    """A tile, tile path or TileLeaf is malformed; the message says which and where."""


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# --------------------------------------------------------------------------- paths


def encode_tile_index(index: int) -> str:
    """A tile index as path elements: 5 -> "005", 1234067 -> "x001/x234/067"."""
    if not _int_in(index, 0, _MAX_INDEX - 1):
        raise TileError(f"tile index {index!r} is not an integer in [0, 2^64)")
    groups = []
    while True:
        index, rest = divmod(index, 1000)
        groups.append(f"{rest:03d}")
        if index == 0:
            break
    return "/".join(["x" + g for g in reversed(groups[1:])] + [groups[0]])


def decode_tile_index(text: str) -> int:
    """Inverse of encode_tile_index; rejects every other spelling (no "x000/" lead, no "5")."""
    if not _INDEX_RE.fullmatch(text):
        raise TileError(f"tile index {text!r} is not in the x001/x234/067 form")
    return int(text.replace("x", "").replace("/", ""))


@dataclass(frozen=True, slots=True)
class TileRef:
    """One tile: hash tile `tile/<level>/<N>` or, with data=True, data tile `tile/data/<N>`
    (which holds the entries of level-0 tile N). `width` < 256 makes it a partial tile
    (`.p/<width>`). Construction raises TileError if and only if a field is out of range."""

    level: int
    index: int
    width: int = TILE_WIDTH
    data: bool = False

    def __post_init__(self) -> None:
        if not _int_in(self.level, 0, MAX_TILE_LEVEL):
            raise TileError(f"tile level {self.level!r} is not in [0, {MAX_TILE_LEVEL}]")
        if self.data and self.level != 0:
            raise TileError(f"a data tile is at level 0, not {self.level}")
        if not _int_in(self.width, 1, TILE_WIDTH):
            raise TileError(f"tile width {self.width!r} is not in [1, {TILE_WIDTH}]")
        encode_tile_index(self.index)  # validates the index

    @property
    def partial(self) -> bool:
        return self.width < TILE_WIDTH

    @property
    def path(self) -> str:
        """The path below the monitoring prefix, e.g. "tile/data/x001/234.p/7"."""
        level = "data" if self.data else str(self.level)
        suffix = f".p/{self.width}" if self.partial else ""
        return f"tile/{level}/{encode_tile_index(self.index)}{suffix}"

    @property
    def start(self) -> int:
        """The first entry (data tiles) or first level-8L node index (hash tiles) it holds."""
        return self.index * TILE_WIDTH

    def full(self) -> TileRef:
        """The same tile at full width: what replaces a partial tile once it fills up."""
        return TileRef(self.level, self.index, TILE_WIDTH, self.data)

    def __str__(self) -> str:
        return self.path


def parse_tile_path(path: str) -> TileRef:
    """The TileRef of "tile/<L>/<N>[.p/<W>]" or "tile/data/<N>[.p/<W>]" (no leading slash).
    Raises TileError for any other string, including non-canonical spellings."""
    match = _TILE_PATH_RE.fullmatch(path)
    if match is None:
        raise TileError(f"{path!r} is not a tile path")
    width = int(match["width"]) if match["width"] else TILE_WIDTH
    if match["width"] and width >= TILE_WIDTH:
        raise TileError(f"{path!r}: a partial tile is 1 to {TILE_WIDTH - 1} wide")
    data = match["level"] == "data"
    return TileRef(0 if data else int(match["level"]), decode_tile_index(match["index"]), width, data)


def _check_size(what: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < _MAX_INDEX:
        raise MerkleError(f"{what} must be an integer in [0, 2^64), got {n!r}")


def tile_width(level: int, index: int, tree_size: int) -> int:
    """How many hashes tile (level, index) holds in a tree of `tree_size` leaves: 256 when
    full, 1..255 when partial, 0 when the tree has none of it (such a tile is never served)."""
    _check_size("tree size", tree_size)
    nodes = tree_size >> (TILE_HEIGHT * level)  # complete nodes at tree level 8*level
    return max(0, min(TILE_WIDTH, nodes - index * TILE_WIDTH))


def data_tiles(start: int, end: int, tree_size: int | None = None) -> list[TileRef]:
    """The data tiles holding entries [start, end) of a tree of `tree_size` (default: end):
    full tiles, and a partial one of the right width where the tree ends inside a tile.
    Raises MerkleError unless 0 <= start <= end <= tree_size."""
    tree_size = end if tree_size is None else tree_size
    for what, n in (("start", start), ("end", end), ("tree size", tree_size)):
        _check_size(what, n)
    if not start <= end <= tree_size:
        raise MerkleError(f"need start <= end <= tree size, got {start}, {end}, {tree_size}")
    if start == end:
        return []
    first, last = start // TILE_WIDTH, (end - 1) // TILE_WIDTH
    return [TileRef(0, n, tile_width(0, n, tree_size), data=True) for n in range(first, last + 1)]


# --------------------------------------------------------------------------- TileLeaf


def parse_ct_extensions(extensions: bytes) -> dict[int, bytes]:
    """A static-ct-api CtExtensions body as {extension_type: extension_data}.
    Raises TileError on truncation or a repeated extension type."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(extensions):
        if pos + _EXT_HEADER.size > len(extensions):
            raise TileError(f"truncated extension header at byte {pos} of CtExtensions")
        ext_type, length = _EXT_HEADER.unpack_from(extensions, pos)
        pos += _EXT_HEADER.size
        if pos + length > len(extensions):
            raise TileError(f"truncated extension {ext_type} at byte {pos} of CtExtensions")
        if ext_type in out:
            raise TileError(f"extension {ext_type} appears twice in CtExtensions")
        out[ext_type] = bytes(extensions[pos : pos + length])
        pos += length
    return out


def leaf_index_of(extensions: bytes) -> int:
    """The LeafIndex carried by a static-ct-api CtExtensions. Raises TileError if it is
    missing or not 5 bytes long."""
    found = parse_ct_extensions(extensions).get(LEAF_INDEX_EXTENSION)
    if found is None:
        raise TileError("no leaf_index extension")
    if len(found) != _LEAF_INDEX_LEN:
        raise TileError(f"leaf_index extension is {len(found)} bytes, want {_LEAF_INDEX_LEN}")
    return int.from_bytes(found, "big")


def encode_leaf_index_extension(index: int) -> bytes:
    """CtExtensions holding only leaf_index(index): the 8 bytes a static-ct-api log puts in
    every TimestampedEntry and SCT."""
    if not _int_in(index, 0, (1 << 40) - 1):
        raise TileError(f"leaf index {index!r} does not fit in uint40")
    return _EXT_HEADER.pack(LEAF_INDEX_EXTENSION, _LEAF_INDEX_LEN) + index.to_bytes(_LEAF_INDEX_LEN, "big")


@dataclass(frozen=True, slots=True)
class TileLeaf:
    """One entry of a data tile. `chain` holds the issuers' SHA-256 fingerprints, issuer first
    (the certificates themselves are served at issuer/<hex>)."""

    timestamped_entry: bytes  # exactly as logged: what the tree hashes
    entry: MerkleTreeLeaf
    leaf_index: int
    pre_certificate: bytes | None  # precert entries only
    chain: tuple[bytes, ...]

    @property
    def leaf_input(self) -> bytes:
        """The RFC 6962 MerkleTreeLeaf (get-entries leaf_input) of this entry."""
        return _MERKLE_LEAF_PREFIX + self.timestamped_entry

    @property
    def leaf_hash(self) -> bytes:
        """SHA-256(0x00 || leaf_input): its hash in the level-0 tile."""
        return hashlib.sha256(b"\x00" + _MERKLE_LEAF_PREFIX + self.timestamped_entry).digest()


def parse_tile_leaf(data: bytes, offset: int = 0) -> tuple[TileLeaf, int]:
    """Parse the TileLeaf starting at `offset`; return it and the offset just past it.
    Raises TileError (with the byte offset) if it is malformed or lacks a leaf_index."""
    data = bytes(data)
    try:
        entry, entry_end = parse_timestamped_entry(data, offset)
    except LeafError as err:
        raise TileError(f"TimestampedEntry: {err}") from None
    try:
        leaf_index = leaf_index_of(entry.extensions)
    except TileError as err:
        raise TileError(f"{err} in the TimestampedEntry at byte {offset}") from None
    pos = entry_end
    pre_certificate = None
    if entry.entry_type == "precert":
        if pos + 3 > len(data):
            raise TileError(f"truncated pre_certificate length at byte {pos}")
        length = int.from_bytes(data[pos : pos + 3], "big")
        if length == 0:
            raise TileError(f"empty pre_certificate at byte {pos}")
        if pos + 3 + length > len(data):
            left = len(data) - pos - 3
            raise TileError(f"truncated pre_certificate at byte {pos + 3}: length {length}, {left} bytes left")
        pre_certificate = data[pos + 3 : pos + 3 + length]
        pos += 3 + length
    if pos + 2 > len(data):
        raise TileError(f"truncated certificate_chain length at byte {pos}")
    (chain_len,) = _U16.unpack_from(data, pos)
    pos += 2
    if chain_len % HASH_SIZE:
        raise TileError(f"certificate_chain at byte {pos - 2} has length {chain_len}, not a multiple of 32")
    if pos + chain_len > len(data):
        raise TileError(
            f"truncated certificate_chain at byte {pos}: length {chain_len}, {len(data) - pos} bytes left"
        )
    chain = tuple(data[i : i + HASH_SIZE] for i in range(pos, pos + chain_len, HASH_SIZE))
    pos += chain_len
    return TileLeaf(data[offset:entry_end], entry, leaf_index, pre_certificate, chain), pos


def parse_data_tile(data: bytes, index: int, width: int) -> list[TileLeaf]:
    """The `width` entries of data tile `index`, checking that each one's leaf_index is its
    position (index * 256 + i) and that nothing follows the last. Raises TileError naming
    the tile, the entry and the byte offset otherwise."""
    tile = TileRef(0, index, width, data=True)
    data = bytes(data)
    leaves: list[TileLeaf] = []
    pos = 0
    while pos < len(data):
        position = tile.start + len(leaves)
        if len(leaves) == width:
            raise TileError(f"data tile {tile}: {len(data) - pos} bytes after its {width} entries")
        try:
            leaf, pos = parse_tile_leaf(data, pos)
        except TileError as err:
            raise TileError(f"data tile {tile}: entry {position}: {err}") from None
        if leaf.leaf_index != position:
            raise TileError(f"data tile {tile}: entry {position} carries leaf_index {leaf.leaf_index}")
        leaves.append(leaf)
    if len(leaves) != width:
        raise TileError(f"data tile {tile}: {len(leaves)} entries, want {width}")
    return leaves


def encode_tile_leaf(
    timestamped_entry: bytes, chain: Sequence[bytes], pre_certificate: bytes | None = None
) -> bytes:
    """A TileLeaf. `pre_certificate` must be given for a precert entry and only then;
    `chain` holds 32-byte fingerprints. The TimestampedEntry is taken as is."""
    if len(timestamped_entry) < 10:
        raise TileError(f"TimestampedEntry of {len(timestamped_entry)} bytes is truncated")
    (entry_type,) = _U16.unpack_from(timestamped_entry, 8)
    if (entry_type == _PRECERT_ENTRY) != (pre_certificate is not None):
        raise TileError("pre_certificate must be given for precert entries and only for them")
    if any(len(fp) != HASH_SIZE for fp in chain):
        raise TileError("chain fingerprints must be 32 bytes")
    if len(chain) * HASH_SIZE > _MAX_U16:
        raise TileError(f"chain of {len(chain)} fingerprints is too long")
    out = bytearray(timestamped_entry)
    if pre_certificate is not None:
        if not 0 < len(pre_certificate) <= _MAX_U24:
            raise TileError(f"pre_certificate of {len(pre_certificate)} bytes")
        out += len(pre_certificate).to_bytes(3, "big") + pre_certificate
    out += _U16.pack(len(chain) * HASH_SIZE) + b"".join(chain)
    return bytes(out)


# --------------------------------------------------------------------------- hash tiles


def parse_hash_tile(data: bytes, width: int) -> list[bytes]:
    """The `width` hashes of a hash tile. Raises TileError unless it is 32 * width bytes."""
    if len(data) != HASH_SIZE * width:
        raise TileError(f"hash tile of width {width} is {len(data)} bytes, want {HASH_SIZE * width}")
    return [bytes(data[i : i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)]


def encode_hash_tile(hashes: Iterable[bytes]) -> bytes:
    """Concatenated hashes; raises TileError on a hash that is not 32 bytes or on > 256."""
    hashes = list(hashes)
    if not 1 <= len(hashes) <= TILE_WIDTH or any(len(h) != HASH_SIZE for h in hashes):
        raise TileError(f"a hash tile holds 1 to {TILE_WIDTH} 32-byte hashes")
    return b"".join(hashes)


ReadTile = Callable[[int, int, int], Sequence[bytes]]
"""read_tile(level, index, width) -> the `width` hashes of hash tile (level, index)."""


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


class TileTree:
    """The Merkle tree of `size` leaves as seen through its hash tiles.

    Only perfect subtrees come from tiles (a node at level l is hashed up from the 2^(l%8)
    hashes below it in the tile at level l//8); the right edge of the tree is combined as
    RFC 6962 does. Each tile is read at most once, at the width the tree size gives it.
    Raises TileError if the reader returns the wrong number or size of hashes.
    """

    def __init__(self, size: int, read_tile: ReadTile) -> None:
        _check_size("tree size", size)
        self.size = size
        self._read = read_tile
        self._tiles: dict[tuple[int, int], list[bytes]] = {}
        self.tiles_read = 0

    def _tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        hashes = self._tiles.get(key)
        if hashes is None:
            width = tile_width(level, index, self.size)
            hashes = list(self._read(level, index, width))
            self.tiles_read += 1
            if len(hashes) != width or any(len(h) != HASH_SIZE for h in hashes):
                tile = TileRef(level, index, width)
                raise TileError(f"tile {tile} read as {len(hashes)} hashes, want {width}")
            self._tiles[key] = hashes
        return hashes

    def perfect(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree of leaves [index * 2^level, (index + 1) * 2^level),
        which must lie inside the tree."""
        if (index + 1) << level > self.size:
            raise MerkleError(f"node ({level}, {index}) is not a complete subtree of tree size {self.size}")
        tile_level, height = divmod(level, TILE_HEIGHT)
        first = index << height  # its first node at tree level 8 * tile_level
        tile, offset = divmod(first, TILE_WIDTH)
        hashes = self._tile(tile_level, tile)[offset : offset + (1 << height)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def subtree(self, begin: int, end: int) -> bytes:
        """MTH of leaves [begin, end) for an RFC 6962 node: begin is a multiple of a power of
        two that is >= end - begin, and end <= size."""
        if not 0 <= begin < end <= self.size:
            raise MerkleError(f"[{begin}, {end}) is not a non-empty range of tree size {self.size}")
        parts = []
        while begin < end:
            k = (end - begin).bit_length() - 1
            parts.append(self.perfect(k, begin >> k))
            begin += 1 << k
        return _fold_right(parts)

    def node(self, level: int, index: int) -> bytes:
        """The RFC 6962 hash of node (level, index): the perfect subtree when complete, else the
        MTH of its leaves that exist (the right edge of a tree whose size is no power of 2)."""
        begin = index << level
        if begin >= self.size:
            raise MerkleError(f"node ({level}, {index}) is beyond tree size {self.size}")
        return self.subtree(begin, min(self.size, begin + (1 << level)))

    def compact_range(self) -> CompactRange:
        """The compact range of [0, size): one perfect subtree per set bit of size."""
        hashes = []
        pos = 0
        for level in reversed(range(self.size.bit_length())):
            if self.size >> level & 1:
                hashes.append(self.perfect(level, pos >> level))
                pos += 1 << level
        return CompactRange(0, self.size, tuple(hashes))

    def consistency_proof(self, size1: int) -> list[bytes]:
        """The RFC 6962 2.1.2 proof from size1 to this tree's size, as MerkleTree gives it
        (empty when size1 is 0 or the size). Raises MerkleError unless 0 <= size1 <= size."""
        _check_size("size1", size1)
        if size1 > self.size:
            raise MerkleError(f"size1 {size1} is greater than size2 {self.size}")
        if size1 == 0 or size1 == self.size:
            return []
        proof: list[bytes] = []
        begin, end, m, whole = 0, self.size, size1, True
        while m != end - begin:
            k = 1 << ((end - begin - 1).bit_length() - 1)  # largest power of 2 below end-begin
            if m <= k:
                proof.append(self.subtree(begin + k, end))
                end = begin + k
            else:
                proof.append(self.subtree(begin, begin + k))
                begin, m, whole = begin + k, m - k, False
        if not whole:
            proof.append(self.subtree(begin, end))
        return proof[::-1]

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The RFC 6962 2.1.1 audit path of leaf `index`. Raises MerkleError unless index < size."""
        _check_size("leaf index", index)
        if index >= self.size:
            raise MerkleError(f"leaf index {index} is not below tree size {self.size}")
        path: list[bytes] = []
        begin, end, m = 0, self.size, index
        while end - begin > 1:
            k = 1 << ((end - begin - 1).bit_length() - 1)
            if m < k:
                path.append(self.subtree(begin + k, end))
                end = begin + k
            else:
                path.append(self.subtree(begin, begin + k))
                begin, m = begin + k, m - k
        return path[::-1]


def node_hash_from_tiles(level: int, index: int, size: int, read_tile: ReadTile) -> bytes:
    """The RFC 6962 hash of node (level, index) of the tree of `size` leaves (see TileTree.node)."""
    return TileTree(size, read_tile).node(level, index)


def compact_range_from_tiles(size: int, read_tile: ReadTile) -> CompactRange:
    """The compact range of [0, size); its root() is the tree's MTH."""
    return TileTree(size, read_tile).compact_range()


def consistency_proof_from_tiles(size1: int, size2: int, read_tile: ReadTile) -> list[bytes]:
    """The same proof as MerkleTree.consistency_proof(size1, size2), from the tiles of size2."""
    return TileTree(size2, read_tile).consistency_proof(size1)


def inclusion_proof_from_tiles(index: int, size: int, read_tile: ReadTile) -> list[bytes]:
    """The same audit path as MerkleTree.inclusion_proof(index, size)."""
    return TileTree(size, read_tile).inclusion_proof(index)
