"""RFC 6962 / RFC 9162 Merkle trees: hashing, proofs, compact ranges, verification.

Three users, three tools:

* monitors verify what a log serves: `verify_inclusion`, `verify_consistency`;
* parallel ingest tasks each hash a slice of the log into a `CompactRange` and
  merge the slices into the root of the whole prefix, to compare with a signed
  tree head without holding every leaf in one place;
* the local test log serves proofs from a `MerkleTree`.

All hashes are SHA-256 (32 bytes). Leaf indices and tree sizes are Python ints in
[0, 2**64).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NewType

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "Hash",
    "MerkleError",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

Hash = NewType("Hash", bytes)

HASH_SIZE = 32
EMPTY_ROOT = Hash(hashlib.sha256(b"").digest())  # MTH({}) per RFC 6962 2.1

_MAX_SIZE = 1 << 64
_sha256 = hashlib.sha256


class MerkleError(ValueError):
    """A proof does not verify, or a size, index, range or hash is invalid."""


def leaf_hash(leaf_input: bytes) -> Hash:
    """SHA-256(0x00 || leaf_input): the RFC 6962 hash of one log entry."""
    return Hash(_sha256(b"\x00" + leaf_input).digest())


def node_hash(left: bytes, right: bytes) -> Hash:
    """SHA-256(0x01 || left || right): the RFC 6962 hash of an interior node."""
    return Hash(_sha256(b"\x01" + left + right).digest())


def _check_hash(what: str, h: bytes) -> None:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        got = len(h) if isinstance(h, (bytes, bytearray)) else type(h).__name__
        raise MerkleError(f"{what} must be a {HASH_SIZE}-byte hash, got {got}")


def _check_size(what: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < _MAX_SIZE:
        raise MerkleError(f"{what} must be an integer in [0, 2^64), got {n!r}")


def _fold_right(hashes: Sequence[bytes | bytearray]) -> Hash:
    """Hash a canonical decomposition (perfect subtrees, largest first) into its MTH."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = _sha256(b"\x01" + left + h).digest()
    return Hash(bytes(h))


def root_hash(leaf_hashes: Sequence[bytes]) -> Hash:
    """The Merkle Tree Hash (RFC 6962 2.1) of the given leaf hashes.

    The empty tree hashes to SHA-256(b""). Raises MerkleError if and only if a
    leaf hash is not 32 bytes.
    """
    if len(leaf_hashes) == 0:
        return EMPTY_ROOT
    return CompactRange.from_leaf_hashes(0, leaf_hashes).root()


# --------------------------------------------------------------------------- proofs


def _largest_pow2_below(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2): RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_sizes(index: int, size: int) -> tuple[int, int]:
    """(inner, border) proof lengths for leaf `index` in a tree of `size` leaves.

    `inner` nodes are siblings below the point where the paths to `index` and
    `size - 1` diverge; `border` nodes are left siblings above it (one per set bit).
    """
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 0:
            seed = _sha256(b"\x01" + seed + h).digest()
        else:
            seed = _sha256(b"\x01" + h + seed).digest()
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    # Only right-hand steps: reconstructs the root of the smaller tree.
    for i, h in enumerate(proof):
        if (index >> i) & 1 == 1:
            seed = _sha256(b"\x01" + h + seed).digest()
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    for h in proof:
        seed = _sha256(b"\x01" + h + seed).digest()
    return seed


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes] | None, root: bytes
) -> None:
    """Check an RFC 9162 2.1.3 inclusion proof (audit path) of leaf `index` in a tree of `size`.

    Returns None if the proof verifies. Raises MerkleError if and only if it does
    not: index >= size, a hash (leaf, proof node or root) that is not 32 bytes,
    the wrong number of proof nodes, or a recomputed root different from `root`.
    A `None` proof counts as empty.
    """
    proof = list(proof or ())
    _check_size("tree size", size)
    _check_size("leaf index", index)
    if index >= size:
        raise MerkleError(f"leaf index {index} is not below tree size {size}")
    _check_hash(f"leaf hash (index {index}, size {size})", leaf_hash)
    _check_hash(f"root (size {size})", root)
    for i, h in enumerate(proof):
        _check_hash(f"inclusion proof node {i} (index {index}, size {size})", h)
    inner, border = _inclusion_sizes(index, size)
    if len(proof) != inner + border:
        raise MerkleError(
            f"inclusion proof for index {index} in size {size} has {len(proof)} nodes, "
            f"want {inner + border}"
        )
    got = _chain_border_right(_chain_inner(leaf_hash, proof[:inner], index), proof[inner:])
    if got != root:
        raise MerkleError(
            f"inclusion proof for index {index} in size {size} gives root {got.hex()}, "
            f"want {bytes(root).hex()}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes] | None, root1: bytes, root2: bytes
) -> None:
    """Check an RFC 9162 2.1.4.2 consistency proof between tree sizes `size1` and `size2`.

    Returns None if the proof verifies. Raises MerkleError if and only if:
    size1 == 0 (a proof from the empty tree proves nothing, so it is refused),
    size1 > size2, size1 == size2 with a non-empty proof or different roots,
    or (size1 < size2) a hash that is not 32 bytes, the wrong number of proof
    nodes, or a recomputed root1 or root2 that differs from the one given.
    When size1 == size2 the roots are compared as given, without a length check
    (the transparency-dev/merkle convention). A `None` proof counts as empty.
    """
    proof = list(proof or ())
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size1 == 0:
        raise MerkleError(f"consistency from size 0 (to size {size2}) is not checkable")
    if size1 > size2:
        raise MerkleError(f"size1 {size1} is greater than size2 {size2}")
    if size1 == size2:
        if proof:
            raise MerkleError(
                f"consistency proof between equal sizes {size1} has {len(proof)} nodes, want 0"
            )
        if not isinstance(root1, (bytes, bytearray)) or not isinstance(root2, (bytes, bytearray)):
            raise MerkleError(f"roots for size {size1} must be bytes")
        if bytes(root1) != bytes(root2):
            raise MerkleError(f"roots differ for equal sizes {size1}")
        return
    _check_hash(f"root1 (size {size1})", root1)
    _check_hash(f"root2 (size {size2})", root2)
    for i, h in enumerate(proof):
        _check_hash(f"consistency proof node {i} (sizes {size1}, {size2})", h)
    if not proof:
        raise MerkleError(f"consistency proof between sizes {size1} and {size2} is empty")

    # The proof is the suffix of the inclusion proof of leaf size1-1 in size2,
    # starting at level `shift`, preceded by the hash of the subtree at that
    # level which ends at size1 unless that subtree is the whole of size1.
    inner, border = _inclusion_sizes(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    if size1 == 1 << shift:
        seed, rest = bytes(root1), proof
    else:
        seed, rest = proof[0], proof[1:]
    if len(rest) != inner + border:
        want = inner + border + (len(proof) - len(rest))
        raise MerkleError(
            f"consistency proof between sizes {size1} and {size2} has {len(proof)} nodes, "
            f"want {want}"
        )
    mask = (size1 - 1) >> shift
    got1 = _chain_border_right(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    if got1 != root1:
        raise MerkleError(
            f"consistency proof between sizes {size1} and {size2} gives root1 {got1.hex()}, "
            f"want {bytes(root1).hex()}"
        )
    got2 = _chain_border_right(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    if got2 != root2:
        raise MerkleError(
            f"consistency proof between sizes {size1} and {size2} gives root2 {got2.hex()}, "
            f"want {bytes(root2).hex()}"
        )


# --------------------------------------------------------------------------- serving tree


class MerkleTree:
    """An append-only Merkle tree that serves roots and proofs for any size <= len(self).

    Every complete, aligned perfect subtree hash is memoised (level k holds the
    hashes of leaves [i*2^k, (i+1)*2^k)), so roots and proofs cost O(log^2 n)
    hashes and appending costs amortised O(1), worst case O(log n). Hashes are
    kept in one flat bytearray per level: about 64 bytes per leaf in total.

    One writer may append while other threads read: the size readers see is
    published only after every level has been updated.
    """

    __slots__ = ("_levels", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self.extend(leaf_hashes)

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"MerkleTree(size={self._size})"

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash. Raises MerkleError if and only if it is not 32 bytes."""
        _check_hash("leaf hash", leaf_hash)
        levels = self._levels
        levels[0] += leaf_hash
        n = self._size + 1
        k = 0
        # A carry: each level whose node count became even gains a parent.
        while (n >> k) & 1 == 0:
            lvl = levels[k]
            if k + 1 == len(levels):
                levels.append(bytearray())
            levels[k + 1] += _sha256(b"\x01" + lvl[-64:]).digest()
            k += 1
        self._size = n

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Add leaf hashes in order. Raises MerkleError if and only if one is not 32 bytes
        (then none of them is added)."""
        batch = bytearray()
        count = 0
        for h in leaf_hashes:
            _check_hash(f"leaf hash #{count}", h)
            batch += h
            count += 1
        if count == 0:
            return
        levels = self._levels
        levels[0] += batch
        n = self._size + count
        sha = _sha256
        k = 0
        while n >> (k + 1):
            if k + 1 == len(levels):
                levels.append(bytearray())
            lvl, up = levels[k], levels[k + 1]
            have, want = len(up) // HASH_SIZE, n >> (k + 1)
            up += b"".join(
                sha(b"\x01" + lvl[64 * i : 64 * i + 64]).digest() for i in range(have, want)
            )
            k += 1
        self._size = n

    def leaf_hash_at(self, index: int) -> Hash:
        """The leaf hash at `index`. Raises MerkleError if and only if index is not in [0, len)."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self._size:
            raise MerkleError(f"leaf index {index!r} is out of range for tree size {self._size}")
        return Hash(bytes(self._levels[0][32 * index : 32 * index + 32]))

    def index_of(self, leaf_hash: bytes) -> int | None:
        """The index of the first leaf with this hash, or None if there is none."""
        if len(leaf_hash) != HASH_SIZE:
            return None
        lvl0 = self._levels[0]
        end = self._size * HASH_SIZE
        # A C-speed scan (~ms per million leaves); hits off a 32-byte boundary are
        # straddling two hashes and are skipped.
        pos = lvl0.find(leaf_hash, 0, end)
        while pos != -1 and pos % HASH_SIZE:
            pos = lvl0.find(leaf_hash, pos + 1, end)
        return None if pos == -1 else pos // HASH_SIZE

    def _check_tree_size(self, what: str, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= self._size:
            raise MerkleError(f"{what} {size!r} is out of range for tree size {self._size}")

    def _node(self, level: int, index: int) -> bytearray:
        return self._levels[level][32 * index : 32 * index + 32]

    def _subtree(self, begin: int, end: int) -> Hash:
        """MTH of leaves [begin, end), where begin is a multiple of a power of two >= end - begin
        (true of every node of an RFC 6962 tree). Uses memoised perfect subtrees only."""
        parts = []
        while begin < end:
            # The largest perfect subtree that starts at begin and fits: its size is
            # the highest power of two <= end - begin (begin is aligned to it).
            k = (end - begin).bit_length() - 1
            parts.append(self._node(k, begin >> k))
            begin += 1 << k
        return _fold_right(parts)

    def root(self, size: int | None = None) -> Hash:
        """MTH of the first `size` leaves (default: all). SHA-256(b"") for size 0.
        Raises MerkleError if and only if size is not in [0, len]."""
        if size is None:
            size = self._size
        self._check_tree_size("tree size", size)
        if size == 0:
            return EMPTY_ROOT
        return self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int) -> list[Hash]:
        """The RFC 6962 2.1.1 audit path of leaf `index` in the tree of the first `size` leaves.
        Raises MerkleError if and only if size is not in [1, len] or index not in [0, size)."""
        self._check_tree_size("tree size", size)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            raise MerkleError(f"leaf index {index!r} is out of range for tree size {size}")
        # PATH(m, D[begin:end]) unrolled from the root down; collected root-first.
        path: list[bytes] = []
        begin, end, m = 0, size, index
        while end - begin > 1:
            k = _largest_pow2_below(end - begin)
            if m < k:
                path.append(self._subtree(begin + k, end))
                end = begin + k
            else:
                path.append(self._subtree(begin, begin + k))
                begin, m = begin + k, m - k
        return [Hash(bytes(h)) for h in reversed(path)]

    def consistency_proof(self, size1: int, size2: int) -> list[Hash]:
        """The RFC 6962 2.1.2 consistency proof between the first `size1` and `size2` leaves.

        Empty when size1 == size2 or size1 == 0 (nothing to prove; note that
        verify_consistency refuses size1 == 0). Raises MerkleError if and only if
        not 0 <= size1 <= size2 <= len.
        """
        self._check_tree_size("size2", size2)
        if isinstance(size1, bool) or not isinstance(size1, int) or not 0 <= size1 <= size2:
            raise MerkleError(f"size1 {size1!r} is out of range for size2 {size2}")
        if size1 == 0 or size1 == size2:
            return []
        # SUBPROOF(m, D[begin:end], b) unrolled; collected root-first.
        proof: list[bytes] = []
        begin, end, m, whole = 0, size2, size1, True
        while m != end - begin:
            k = _largest_pow2_below(end - begin)
            if m <= k:
                proof.append(self._subtree(begin + k, end))
                end = begin + k
            else:
                proof.append(self._subtree(begin, begin + k))
                begin, m, whole = begin + k, m - k, False
        if not whole:
            proof.append(self._subtree(begin, end))
        return [Hash(bytes(h)) for h in reversed(proof)]


# --------------------------------------------------------------------------- compact ranges


def _decompose(begin: int, end: int) -> list[tuple[int, int]]:
    """The canonical decomposition of [begin, end) as (level, index) nodes, left to right.

    These are the maximal perfect aligned subtrees inside the range: first growing
    (climbing away from begin), then shrinking (descending towards end).
    """
    if begin == end:
        return []
    if begin == 0:
        left_mask, right_mask = 0, end
    else:
        # Below the level where the paths to leaves begin-1 and end diverge, the
        # left part is the zero bits of begin-1 and the right part the one bits of end.
        xbegin = begin - 1
        mask = (1 << ((xbegin ^ end).bit_length() - 1)) - 1
        left_mask, right_mask = ~xbegin & mask, end & mask
    nodes = []
    pos = begin
    for level in range(left_mask.bit_length()):
        if (left_mask >> level) & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    for level in reversed(range(right_mask.bit_length())):
        if (right_mask >> level) & 1:
            nodes.append((level, pos >> level))
            pos += 1 << level
    return nodes


def _push(stack: list[tuple[int, int, bytes]], level: int, index: int, h: bytes) -> None:
    # Merge while the new top and its left neighbour are siblings; the result has
    # no adjacent siblings, which makes it exactly the canonical decomposition.
    while stack and index & 1 and stack[-1][0] == level and stack[-1][1] == index - 1:
        h = _sha256(b"\x01" + stack.pop()[2] + h).digest()
        level, index = level + 1, index >> 1
    stack.append((level, index, h))


@dataclass(frozen=True, slots=True)
class CompactRange:
    """The hashes of the maximal perfect subtrees covering leaves [begin, end), left to right.

    This is the transparency-dev/merkle `compact.Range` representation: enough to
    compute the root of [0, end) when begin == 0, and to merge with the adjacent
    range [end, x) computed elsewhere. Construction raises MerkleError if and only
    if 0 <= begin <= end < 2^64 does not hold, or `hashes` is not one 32-byte hash
    per node of the range's decomposition.
    """

    begin: int
    end: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_size("compact range begin", self.begin)
        _check_size("compact range end", self.end)
        if self.begin > self.end:
            raise MerkleError(f"compact range [{self.begin}, {self.end}) has begin > end")
        object.__setattr__(self, "hashes", tuple(bytes(h) for h in self.hashes))
        want = len(_decompose(self.begin, self.end))
        if len(self.hashes) != want:
            raise MerkleError(
                f"compact range [{self.begin}, {self.end}) has {len(self.hashes)} hashes, want {want}"
            )
        for i, h in enumerate(self.hashes):
            _check_hash(f"compact range [{self.begin}, {self.end}) hash {i}", h)

    @classmethod
    def empty(cls, at: int = 0) -> CompactRange:
        """The empty range [at, at)."""
        return cls(at, at, ())

    @classmethod
    def from_leaf_hashes(cls, begin: int, leaf_hashes: Sequence[bytes]) -> CompactRange:
        """The compact range of [begin, begin + len(leaf_hashes)).
        Raises MerkleError if and only if a leaf hash is not 32 bytes or the end overflows."""
        _check_size("compact range begin", begin)
        stack: list[tuple[int, int, bytes]] = []
        for i, h in enumerate(leaf_hashes):
            _check_hash(f"leaf hash at {begin + i}", h)
            _push(stack, 0, begin + i, bytes(h))
        return cls(begin, begin + len(leaf_hashes), tuple(h for _, _, h in stack))

    def nodes(self) -> list[tuple[int, int]]:
        """The (level, index) of each hash: level k, index i covers leaves [i*2^k, (i+1)*2^k)."""
        return _decompose(self.begin, self.end)

    def merge(self, other: CompactRange) -> CompactRange:
        """The compact range of [self.begin, other.end).
        Raises MerkleError if and only if other.begin != self.end."""
        if other.begin != self.end:
            raise MerkleError(
                f"cannot merge [{self.begin}, {self.end}) with [{other.begin}, {other.end}): "
                f"not adjacent"
            )
        stack = [(lv, ix, h) for (lv, ix), h in zip(self.nodes(), self.hashes)]
        for (lv, ix), h in zip(other.nodes(), other.hashes):
            _push(stack, lv, ix, h)
        return CompactRange(self.begin, other.end, tuple(h for _, _, h in stack))

    def root(self) -> Hash:
        """The MTH of leaves [0, end); SHA-256(b"") when end == 0.
        Raises MerkleError if and only if begin != 0."""
        if self.begin != 0:
            raise MerkleError(
                f"compact range [{self.begin}, {self.end}) does not start at 0: no root"
            )
        if not self.hashes:
            return EMPTY_ROOT
        return _fold_right(self.hashes)

    def to_json(self) -> dict:
        """{"begin": int, "end": int, "hashes": [lowercase hex, ...]}."""
        return {"begin": self.begin, "end": self.end, "hashes": [h.hex() for h in self.hashes]}

    @classmethod
    def from_json(cls, obj: dict) -> CompactRange:
        """Inverse of to_json. Raises MerkleError if and only if obj is not a valid range."""
        if not isinstance(obj, dict):
            raise MerkleError(f"compact range JSON must be an object, got {type(obj).__name__}")
        missing = [k for k in ("begin", "end", "hashes") if k not in obj]
        if missing:
            raise MerkleError(f"compact range JSON lacks {', '.join(missing)}")
        raw = obj["hashes"]
        if not isinstance(raw, list):
            raise MerkleError("compact range JSON 'hashes' must be a list")
        hashes = []
        for i, s in enumerate(raw):
            if (
                not isinstance(s, str)
                or len(s) != 2 * HASH_SIZE
                or s != s.lower()
                or not all(c in "0123456789abcdef" for c in s)
            ):
                raise MerkleError(f"compact range JSON hash {i} is not 64 lowercase hex digits")
            hashes.append(bytes.fromhex(s))
        return cls(obj["begin"], obj["end"], tuple(hashes))


def prefix_nodes(size: int) -> list[tuple[int, int]]:
    """(level, index) of the perfect subtrees covering [0, size), left to right."""
    _check_size("size", size)
    nodes, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def left_siblings(index: int, size: int, proof: Sequence[bytes]) -> list[Hash]:
    """The hashes of an inclusion proof of leaf `index` (tree size `size`) that lie to the
    left of the leaf's path, left to right: exactly the perfect subtrees covering [0, index).
    Classifies proof elements as RFC 9162's verification algorithm does; the caller still
    has to verify what it builds from them against a signed root."""
    if not 0 <= index < size:
        raise MerkleError(f"leaf index {index} is not below tree size {size}")
    fn, sn, left = index, size - 1, []
    for element in proof:
        _check_hash("proof element", element)
        if sn == 0:
            raise MerkleError(f"inclusion proof of leaf {index} in tree size {size} is too long")
        if fn & 1 or fn == sn:
            left.append(Hash(bytes(element)))
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise MerkleError(f"inclusion proof of leaf {index} in tree size {size} is too short")
    left.reverse()
    if len(left) != bin(index).count("1"):
        raise MerkleError(f"inclusion proof of leaf {index} has {len(left)} left siblings, want {bin(index).count('1')}")
    return left
