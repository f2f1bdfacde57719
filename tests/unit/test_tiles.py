"""ctlib.ct.tiles: tile paths, TileLeaf entries, hash tiles and proofs from tiles, on the real
Navigli 2025h2 tiles and on random trees checked against MerkleTree."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from ctlib.ct.leaf import encode_precert_leaf, encode_x509_leaf
from ctlib.ct.merkle import (
    CompactRange,
    MerkleError,
    MerkleTree,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from ctlib.ct.tiles import (
    TILE_WIDTH,
    TileError,
    TileLeaf,
    TileRef,
    TileTree,
    compact_range_from_tiles,
    consistency_proof_from_tiles,
    data_tiles,
    decode_tile_index,
    encode_hash_tile,
    encode_leaf_index_extension,
    encode_tile_index,
    encode_tile_leaf,
    inclusion_proof_from_tiles,
    leaf_index_of,
    node_hash_from_tiles,
    parse_ct_extensions,
    parse_data_tile,
    parse_hash_tile,
    parse_tile_leaf,
    parse_tile_path,
    tile_width,
)
from ctlib.decode.x509 import tbs_fields
from tests.support.navigli import FACTS, NAVIGLI, navigli_leaves


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("index", "text"),
    [(0, "000"), (5, "005"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067"),
     (2**64 - 1, "x018/x446/x744/x073/x709/x551/615")],
)  # fmt: skip
def test_tile_index_encoding(index: int, text: str) -> None:
    assert encode_tile_index(index) == text
    assert decode_tile_index(text) == index


def test_tile_index_round_trips_and_rejects_other_spellings() -> None:
    rng = random.Random(1)
    for index in [rng.randrange(10**k) for k in range(1, 19) for _ in range(20)]:
        assert decode_tile_index(encode_tile_index(index)) == index
    for bad in ("5", "05", "0005", "x000/005", "x001", "001/002", "x01/002", "x001/x002", "", "x1a0/000"):
        with pytest.raises(TileError):
            decode_tile_index(bad)
    for bad in (-1, 2**64, True, "5"):
        with pytest.raises(TileError):
            encode_tile_index(bad)


def test_tile_refs_and_their_paths() -> None:
    assert TileRef(0, 1234067).path == "tile/0/x001/x234/067"
    assert TileRef(2, 5, 17).path == "tile/2/005.p/17"
    assert TileRef(0, 1000, 255, data=True).path == "tile/data/x001/000.p/255"
    assert TileRef(0, 3, 10, data=True).full() == TileRef(0, 3, data=True)
    assert TileRef(1, 2).start == 512 and not TileRef(1, 2).partial and TileRef(1, 2, 1).partial
    for ref in (TileRef(0, 0), TileRef(63, 10**9, 1), TileRef(0, 7, 200, data=True), TileRef(5, 999)):
        assert parse_tile_path(ref.path) == ref
    bad_paths = (
        "tile/0/005.p/0", "tile/0/005.p/256", "tile/0/005.p/010", "tile/01/005", "tile/64/005",
        "tile/data/5", "/tile/0/005", "tile/0/005/", "tile/entries/005", "tile/0/x000/005", "checkpoint",
    )  # fmt: skip
    for bad in bad_paths:
        with pytest.raises(TileError):
            parse_tile_path(bad)
    for fields in ((-1, 0), (64, 0), (0, 0, 0), (0, 0, 257), (1, 0, 256, True)):
        with pytest.raises(TileError):
            TileRef(*fields)


def test_tile_widths_follow_the_spec_examples() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
    # level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
    # 17, and one partial level 2 tile of width 1"; size 256: a level-1 tile of width 1.
    assert [tile_width(0, n, 70_000) for n in (0, 272, 273, 274)] == [256, 256, 112, 0]
    assert [tile_width(1, n, 70_000) for n in (0, 1, 2)] == [256, 17, 0]
    assert [tile_width(2, 0, 70_000), tile_width(3, 0, 70_000)] == [1, 0]
    assert [tile_width(0, 0, 256), tile_width(1, 0, 256), tile_width(0, 1, 256)] == [256, 1, 0]


def test_data_tiles_covering_a_range() -> None:
    def d(index: int, width: int = TILE_WIDTH) -> TileRef:
        return TileRef(0, index, width, data=True)

    assert data_tiles(250, 600) == [d(0), d(1), d(2, 88)]
    assert data_tiles(250, 600, tree_size=1000) == [d(0), d(1), d(2)]
    assert data_tiles(256, 512) == [d(1)]
    assert data_tiles(511, 513) == [d(1), d(2, 1)]
    assert data_tiles(0, 10) == [d(0, 10)]
    assert data_tiles(7, 7) == []
    for args in ((5, 4), (0, 10, 9), (-1, 3)):
        with pytest.raises(MerkleError):
            data_tiles(*args)


# --------------------------------------------------------------------------- TileLeaf


def test_leaf_index_extension() -> None:
    ext = encode_leaf_index_extension(0x0102030405)
    assert ext == bytes.fromhex("00 0005 0102030405")
    assert len(ext) == 8 and leaf_index_of(ext) == 0x0102030405
    assert leaf_index_of(bytes.fromhex("07 0001 ff") + ext) == 0x0102030405  # order is free
    assert parse_ct_extensions(b"") == {}
    bad = {
        b"": "no leaf_index",
        bytes.fromhex("00 0004 01020304"): "4 bytes",
        ext + ext: "twice",
        ext[:-1]: "truncated",
        b"\x00\x00": "truncated",
    }
    for extensions, message in bad.items():
        with pytest.raises(TileError, match=message):
            leaf_index_of(extensions)
    with pytest.raises(TileError):
        encode_leaf_index_extension(1 << 40)


def _fp(n: int) -> bytes:
    return hashlib.sha256(bytes([n])).digest()


def test_tile_leaves_round_trip() -> None:
    x509_te = encode_x509_leaf(1_700_000_000_000, b"\x30\x03cert", encode_leaf_index_extension(256))[2:]
    precert_leaf = encode_precert_leaf(1_700_000_000_001, _fp(9), b"\x30\x02tb", encode_leaf_index_extension(257))
    precert_te = precert_leaf[2:]
    tile = encode_tile_leaf(x509_te, [_fp(1), _fp(2)]) + encode_tile_leaf(precert_te, [_fp(3)], b"\x30\x01p")
    x509, precert = parse_data_tile(tile, 1, 2)
    assert (x509.leaf_index, x509.timestamped_entry, x509.chain, x509.pre_certificate) == (
        256, x509_te, (_fp(1), _fp(2)), None
    )
    assert x509.entry.cert_der == b"\x30\x03cert" and x509.leaf_input == b"\x00\x00" + x509_te
    assert x509.leaf_hash == hashlib.sha256(b"\x00\x00\x00" + x509_te).digest()
    assert (precert.leaf_index, precert.pre_certificate, precert.chain) == (257, b"\x30\x01p", (_fp(3),))
    assert precert.entry.tbs_der == b"\x30\x02tb" and precert.entry.issuer_key_hash == _fp(9)
    leaf, end = parse_tile_leaf(tile, len(encode_tile_leaf(x509_te, [_fp(1), _fp(2)])))
    assert leaf == precert and end == len(tile)
    empty_chain = encode_tile_leaf(x509_te, [])
    assert parse_tile_leaf(empty_chain)[0].chain == ()

    with pytest.raises(TileError, match="pre_certificate"):
        encode_tile_leaf(x509_te, [], b"\x30\x00")
    with pytest.raises(TileError, match="pre_certificate"):
        encode_tile_leaf(precert_te, [])
    with pytest.raises(TileError, match="32 bytes"):
        encode_tile_leaf(x509_te, [b"short"])


def test_malformed_data_tiles_are_refused_with_the_tile_entry_and_byte() -> None:
    def te(index: int, extensions: bytes | None = None) -> bytes:
        ext = encode_leaf_index_extension(index) if extensions is None else extensions
        return encode_x509_leaf(1_700_000_000_000 + index, b"\x30\x01c", ext)[2:]

    good = b"".join(encode_tile_leaf(te(512 + i), [_fp(i)]) for i in range(3))
    assert [leaf.leaf_index for leaf in parse_data_tile(good, 2, 3)] == [512, 513, 514]
    cases = {
        "truncated": (good[:-5], 3),
        "3 entries, want 4": (good, 4),
        "bytes after its 2 entries": (good, 2),
        "carries leaf_index 7": (encode_tile_leaf(te(7), []), 1),
        "no leaf_index": (encode_tile_leaf(te(512, b""), []), 1),
        "length 31, not a multiple of 32": (te(512) + b"\x00\x1f" + bytes(31), 1),
        "unknown LogEntryType": (good[:8] + b"\x00\x09" + good[10:], 3),
    }
    for message, (data, width) in cases.items():
        with pytest.raises(TileError, match=message) as caught:
            parse_data_tile(data, 2, width)
        assert "tile/data/002" in str(caught.value)
    with pytest.raises(TileError, match="entry 514"):
        parse_data_tile(good[:-5], 2, 3)


def test_hash_tiles() -> None:
    hashes = [_fp(i) for i in range(5)]
    assert parse_hash_tile(encode_hash_tile(hashes), 5) == hashes
    with pytest.raises(TileError, match="want 192"):
        parse_hash_tile(encode_hash_tile(hashes), 6)
    for bad in ([], [b"x" * 31], [_fp(0)] * 257):
        with pytest.raises(TileError):
            encode_hash_tile(bad)


# --------------------------------------------------------------------------- Navigli


def navigli_reader(requests: list[str] | None = None) -> Callable[[int, int, int], list[bytes]]:
    """Real level-0 tiles (partial 003.p/10 included); level 1 derived from them, since the
    snapshot has none (its hashes are the MTHs of full level-0 tiles, by definition)."""

    def read(level: int, index: int, width: int) -> list[bytes]:
        ref = TileRef(level, index, width)
        if requests is not None:
            requests.append(ref.path)
        if level == 0:
            return parse_hash_tile((NAVIGLI / ref.path.removeprefix("tile/")).read_bytes(), width)
        assert (level, index) == (1, 0)
        full = [parse_hash_tile((NAVIGLI / "0" / f"{n:03d}").read_bytes(), TILE_WIDTH) for n in range(width)]
        return [root_hash(tile) for tile in full]

    return read


def test_navigli_tiles_parse_and_hash_to_the_level0_tiles() -> None:
    leaves = navigli_leaves()
    assert len(leaves) == 1024 and [leaf.leaf_index for leaf in leaves] == list(range(1024))
    hashes = b"".join((NAVIGLI / "0" / f"{n:03d}").read_bytes() for n in range(4))
    assert b"".join(leaf.leaf_hash for leaf in leaves) == hashes
    partial = parse_data_tile((NAVIGLI / "data" / "003.p" / "10").read_bytes(), 3, 10)
    assert tuple(partial) == leaves[768:778]
    assert parse_hash_tile((NAVIGLI / "0" / "003.p" / "10").read_bytes(), 10) == [
        leaf.leaf_hash for leaf in partial
    ]
    assert all(leaf.entry.entry_type == "precert" and leaf.pre_certificate for leaf in leaves)
    assert all(len(leaf.chain) >= 1 for leaf in leaves)
    assert {len(leaf.entry.extensions) for leaf in leaves} == {8}


def test_navigli_entries_match_the_names_tiles_and_the_recorded_facts() -> None:
    leaves = navigli_leaves()
    names = [
        json.loads(line)
        for n in range(4)
        for line in (NAVIGLI / "names" / f"{n:03d}").read_text().splitlines()
    ]
    assert len(names) == len(leaves)
    for leaf, expected in zip(leaves, names, strict=True):
        fields = tbs_fields(leaf.entry.tbs_der)
        assert leaf.entry.timestamp_ms == expected["Timestamp"]
        assert fields.subject_cn == expected.get("Subject", {}).get("CommonName")
        assert list(fields.dns_names) == expected["DNS"]
    for sample in FACTS["samples"]:
        leaf = leaves[sample["index"]]
        fields = tbs_fields(leaf.entry.tbs_der)
        stamp = datetime.fromtimestamp(leaf.entry.timestamp_ms / 1000, UTC)
        assert stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z") == sample["timestamp"]
        assert ([fields.subject_cn] if fields.subject_cn else []) == sample["cn"]
        assert list(fields.dns_names[: len(sample["dns"])]) == sample["dns"]
        assert fields.issuer == sample["issuer"]
        assert base64.b64encode(leaf.leaf_hash).decode() == sample["leaf_hash_b64"]


def test_navigli_roots_proofs_and_nodes_from_tiles() -> None:
    root_1024 = base64.b64decode(FACTS["root_size_1024_b64"])
    root_778 = base64.b64decode(FACTS["root_size_778_b64"])
    asked: list[str] = []
    compact = compact_range_from_tiles(778, navigli_reader(asked))
    assert compact.root() == root_778
    assert [(lv, ix) for lv, ix in compact.nodes()] == [(9, 0), (8, 2), (3, 96), (1, 388)]
    assert sorted(asked) == ["tile/0/003.p/10", "tile/1/000.p/3"]  # each tile once
    assert compact_range_from_tiles(1024, navigli_reader()).root() == root_1024

    proof = consistency_proof_from_tiles(778, 1024, navigli_reader())
    verify_consistency(778, 1024, proof, root_778, root_1024)
    leaves = navigli_leaves()
    for index in (0, 1, 2, 777):
        lh = base64.b64decode(next(s for s in FACTS["samples"] if s["index"] == index)["leaf_hash_b64"])
        for size, root in ((778, root_778), (1024, root_1024)):
            verify_inclusion(lh, index, size, inclusion_proof_from_tiles(index, size, navigli_reader()), root)
    # The right edge of the 778 tree is no perfect subtree: node (10, 0) is its root.
    assert node_hash_from_tiles(10, 0, 778, navigli_reader()) == root_778
    assert node_hash_from_tiles(4, 48, 778, navigli_reader()) == root_hash(
        [leaf.leaf_hash for leaf in leaves[768:778]]
    )


# --------------------------------------------------------------------------- random trees


def build_tiles(leaf_hashes: Sequence[bytes]) -> dict[int, list[bytes]]:
    """Every complete node hash at tree levels 0, 8, 16, ... of the tree, built the tiles
    way (a level-(L+1) hash is the MTH of a full level-L tile), independently of MerkleTree."""
    levels = {0: list(leaf_hashes)}
    level = 0
    while len(levels[level]) >= TILE_WIDTH:
        below = levels[level]
        levels[level + 1] = [
            root_hash(below[i : i + TILE_WIDTH]) for i in range(0, len(below) - TILE_WIDTH + 1, TILE_WIDTH)
        ]
        level += 1
    return levels


def reader_for(levels: dict[int, list[bytes]], size: int, reads: list[tuple[int, int, int]]):
    def read(level: int, index: int, width: int) -> list[bytes]:
        # The tree of `size` must ask exactly the width that size gives the tile, never more.
        assert width == tile_width(level, index, size) >= 1, (level, index, width, size)
        reads.append((level, index, width))
        return levels[level][index * TILE_WIDTH : index * TILE_WIDTH + width]

    return read


SIZES = [1, 2, 3, 7, 8, 255, 256, 257, 300, 511, 512, 513, 768, 1000, 4096, 65535, 65536, 65537, 70_000]


@pytest.fixture(scope="module")
def random_tree() -> tuple[list[bytes], MerkleTree, dict[int, list[bytes]]]:
    rng = random.Random(2026)
    leaves = [rng.randbytes(32) for _ in range(max(SIZES))]
    return leaves, MerkleTree(leaves), build_tiles(leaves)


@pytest.mark.parametrize("size", SIZES)
def test_compact_range_and_root_from_tiles_equal_the_merkle_tree(random_tree, size: int) -> None:
    leaves, tree, levels = random_tree
    reads: list[tuple[int, int, int]] = []
    compact = compact_range_from_tiles(size, reader_for(levels, size, reads))
    assert compact == CompactRange.from_leaf_hashes(0, leaves[:size])
    assert compact.root() == tree.root(size)
    assert len(reads) == len(set(reads)) <= 2 * (size.bit_length() // 8 + 1)


@pytest.mark.parametrize("size2", SIZES)
def test_consistency_and_inclusion_proofs_from_tiles_equal_the_merkle_tree(random_tree, size2: int) -> None:
    leaves, tree, levels = random_tree
    rng = random.Random(size2)
    sizes1 = {0, 1, size2, size2 - 1, size2 // 2, 256, 512, 65536} | {rng.randint(1, size2) for _ in range(8)}
    reads: list[tuple[int, int, int]] = []
    tiled = TileTree(size2, reader_for(levels, size2, reads))
    for size1 in sorted(s for s in sizes1 if 0 <= s <= size2):
        proof = tiled.consistency_proof(size1)
        assert proof == tree.consistency_proof(size1, size2), size1
        assert proof == consistency_proof_from_tiles(size1, size2, reader_for(levels, size2, []))
        if 0 < size1 < size2:
            verify_consistency(size1, size2, proof, tree.root(size1), tree.root(size2))
    for index in {0, size2 - 1, size2 // 3, rng.randrange(size2)}:
        assert tiled.inclusion_proof(index) == tree.inclusion_proof(index, size2)
    assert len(reads) == len(set(reads)), "a TileTree reads each tile once"
    for _ in range(10):
        level = rng.randrange(size2.bit_length() + 1)
        index = rng.randrange(((size2 - 1) >> level) + 1)
        begin = index << level
        want = root_hash(leaves[begin : min(size2, begin + (1 << level))])
        assert node_hash_from_tiles(level, index, size2, reader_for(levels, size2, [])) == want


def test_tile_tree_refuses_bad_readers_and_sizes(random_tree) -> None:
    _, _, levels = random_tree
    with pytest.raises(TileError, match="tile/1/000.p/1 read as 3 hashes, want 1"):
        TileTree(300, lambda level, index, width: [b"\x00" * 32] * 3).compact_range()
    with pytest.raises(TileError):
        TileTree(3, lambda level, index, width: [b"\x00" * 31] * width).compact_range()
    tiled = TileTree(300, reader_for(levels, 300, []))
    with pytest.raises(MerkleError):
        tiled.node(0, 300)
    with pytest.raises(MerkleError):
        tiled.perfect(2, 75)  # [300, 304) is beyond the tree
    with pytest.raises(MerkleError):
        tiled.consistency_proof(301)
    with pytest.raises(MerkleError):
        tiled.inclusion_proof(300)
    assert TileTree(0, reader_for(levels, 0, [])).compact_range() == CompactRange.empty()
