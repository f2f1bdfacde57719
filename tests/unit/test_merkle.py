"""ctlib.ct.merkle against transparency-dev/merkle known answers, the RFC 6962 reference
tree, real Pilot/Icarus data, and a brute-force reference implementation."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest

from ctlib.ct.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleError,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.paths import CTDATA

MERKLE = CTDATA / "merkle"
RFC6962 = CTDATA / "rfc6962"


def b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def reference_mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 2.1 MTH, literally."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(reference_mth(hashes[:k]), reference_mth(hashes[k:]))


def leaves(n: int, seed: int = 0) -> list[bytes]:
    rnd = random.Random(seed)
    return [leaf_hash(rnd.randbytes(rnd.randrange(8))) for _ in range(n)]


# --------------------------------------------------------------------------- known answers

INCLUSION_VECTORS = sorted((MERKLE / "inclusion").rglob("*.json"))
CONSISTENCY_VECTORS = sorted((MERKLE / "consistency").rglob("*.json"))


def _id(p: Path) -> str:
    return str(p.relative_to(MERKLE))


def test_vector_counts():
    # SOURCES.md promises 98 of each; a silently empty glob would pass everything.
    assert len(INCLUSION_VECTORS) == 98
    assert len(CONSISTENCY_VECTORS) == 98


@pytest.mark.parametrize("path", INCLUSION_VECTORS, ids=_id)
def test_inclusion_vector(path: Path):
    v = load(path)
    args = (
        b64(v["leafHash"]),
        v["leafIdx"],
        v["treeSize"],
        [b64(h) for h in v["proof"] or []],
        b64(v["root"]),
    )
    if v["wantErr"]:
        with pytest.raises(MerkleError):
            verify_inclusion(*args)
    else:
        assert verify_inclusion(*args) is None


@pytest.mark.parametrize("path", CONSISTENCY_VECTORS, ids=_id)
def test_consistency_vector(path: Path):
    v = load(path)
    args = (
        v["size1"],
        v["size2"],
        [b64(h) for h in v["proof"] or []],
        b64(v["root1"]),
        b64(v["root2"]),
    )
    if v["wantErr"]:
        with pytest.raises(MerkleError):
            verify_consistency(*args)
    else:
        assert verify_consistency(*args) is None


def test_rfc6962_reference_tree():
    ref = load(MERKLE / "rfc6962_reference_tree.json")
    inputs = [bytes.fromhex(x) for x in ref["leaf_inputs_hex"]]
    hashes = [leaf_hash(x) for x in inputs]
    assert [h.hex() for h in hashes] == ref["node_hashes_hex_by_level"][0]
    for level, want in enumerate(ref["node_hashes_hex_by_level"][1:], start=1):
        width = 1 << level
        got = [root_hash(hashes[i : i + width]).hex() for i in range(0, len(hashes), width)]
        assert got == want, f"level {level}"
    tree = MerkleTree(hashes)
    for size, want in enumerate(ref["root_hashes_hex_by_tree_size"]):
        assert root_hash(hashes[:size]).hex() == want
        assert tree.root(size).hex() == want
        assert CompactRange.from_leaf_hashes(0, hashes[:size]).root().hex() == want
    assert tree.root().hex() == ref["root_hashes_hex_by_tree_size"][-1]
    assert EMPTY_ROOT.hex() == ref["root_hashes_hex_by_tree_size"][0]


# --------------------------------------------------------------------------- real logs


def test_pilot_first_four_entries_root():
    entries = load(RFC6962 / "pilot_get-entries_0-3.json")["entries"]
    hashes = [leaf_hash(b64(e["leaf_input"])) for e in entries]
    facts = load(CTDATA / "expected_decoded_facts.json")
    assert [base64.b64encode(h).decode() for h in hashes] == [
        f["leaf_hash_b64"] for f in facts["rfc6962/pilot_get-entries_0-3.json"]
    ]
    assert root_hash(hashes) == b64(facts["pilot_entries_0_3_computed_root"])


def _icarus_roots() -> tuple[bytes, bytes]:
    small = load(RFC6962 / "icarus_get-sth_size129596132.json")
    big = load(RFC6962 / "icarus_get-sth_size129721434.json")
    assert (small["tree_size"], big["tree_size"]) == (129596132, 129721434)
    return b64(small["sha256_root_hash"]), b64(big["sha256_root_hash"])


def test_icarus_consistency_proof():
    root1, root2 = _icarus_roots()
    body = load(RFC6962 / "icarus_get-sth-consistency_129596132_129721434.json")
    proof = [b64(h) for h in body["consistency"]]
    assert len(proof) == 24
    verify_consistency(129596132, 129721434, proof, root1, root2)

    def flip(b: bytes, i: int) -> bytes:
        return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1 :]

    for i in range(len(proof)):
        bad = proof[:i] + [flip(proof[i], i % 32)] + proof[i + 1 :]
        with pytest.raises(MerkleError):
            verify_consistency(129596132, 129721434, bad, root1, root2)
    with pytest.raises(MerkleError):
        verify_consistency(129596132, 129721434, proof, flip(root1, 0), root2)
    with pytest.raises(MerkleError):
        verify_consistency(129596132, 129721434, proof, root1, flip(root2, 31))
    with pytest.raises(MerkleError):
        verify_consistency(129596131, 129721434, proof, root1, root2)
    # A size whose proof has another shape fails. (Neighbouring sizes with the same
    # shape give the same root: proofs do not bind the size; the signed STH does.)
    with pytest.raises(MerkleError):
        verify_consistency(129596132, 129721434 + (1 << 27), proof, root1, root2)
    with pytest.raises(MerkleError):
        verify_consistency(129596132, 129721434, proof[:-1], root1, root2)
    with pytest.raises(MerkleError, match="129596132"):
        verify_consistency(129596132, 129721434, proof, root2, root1)


def test_icarus_audit_path():
    _, root = _icarus_roots()
    body = load(RFC6962 / "icarus_get-entry-and-proof_leaf120000000_tree129721434.json")
    lh = leaf_hash(b64(body["leaf_input"]))
    assert lh == b64("rchYy6UmVO5S3evJlutJZUx/ytdFfHxKdoJ4XAwx39w=")
    path = [b64(h) for h in body["audit_path"]]
    assert len(path) == 27
    verify_inclusion(lh, 120000000, 129721434, path, root)

    with pytest.raises(MerkleError):
        verify_inclusion(lh, 120000001, 129721434, path, root)
    # Only sizes that change the proof's shape are caught; the STH binds the size.
    with pytest.raises(MerkleError):
        verify_inclusion(lh, 120000000, 120000001, path, root)
    with pytest.raises(MerkleError):
        verify_inclusion(leaf_hash(b64(body["leaf_input"]) + b"\x00"), 120000000, 129721434, path, root)
    for i in range(len(path)):
        bad = list(path)
        bad[i] = bytes([bad[i][0] ^ 0x80]) + bad[i][1:]
        with pytest.raises(MerkleError, match="120000000"):
            verify_inclusion(lh, 120000000, 129721434, bad, root)
    with pytest.raises(MerkleError):
        verify_inclusion(lh, 120000000, 129721434, path[:-1], root)
    with pytest.raises(MerkleError):
        verify_inclusion(lh, 120000000, 129721434, path + [path[0]], root)


# --------------------------------------------------------------------------- MerkleTree


def test_tree_roots_and_proofs_exhaustive():
    hashes = leaves(70)
    tree = MerkleTree()
    for h in hashes:
        tree.append(h)
    assert len(tree) == 70
    roots = [reference_mth(hashes[:n]) for n in range(71)]
    for size in range(71):
        assert tree.root(size) == roots[size]
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            verify_inclusion(hashes[index], index, size, proof, roots[size])
            if size > 1:
                with pytest.raises(MerkleError):
                    verify_inclusion(hashes[index], index, size, proof, roots[size - 1])
        for size1 in range(1, size + 1):
            proof = tree.consistency_proof(size1, size)
            verify_consistency(size1, size, proof, roots[size1], roots[size])
            if size1 < size:
                wrong = bytes([roots[size][0] ^ 1]) + roots[size][1:]
                with pytest.raises(MerkleError):
                    verify_consistency(size1, size, proof, roots[size1], wrong)
                with pytest.raises(MerkleError):
                    verify_consistency(size1, size, proof, wrong, roots[size])


def test_tree_append_extend_and_init_agree():
    hashes = leaves(300, seed=1)
    a = MerkleTree(hashes)
    b = MerkleTree()
    b.extend(hashes[:1])
    b.extend(hashes[1:77])
    for h in hashes[77:200]:
        b.append(h)
    b.extend(iter(hashes[200:]))
    b.extend([])
    assert len(a) == len(b) == 300
    for size in (0, 1, 2, 3, 64, 77, 128, 199, 255, 256, 257, 300):
        assert a.root(size) == b.root(size) == reference_mth(hashes[:size])
    assert a.root() == a.root(300)


def test_tree_random_large_sizes():
    rnd = random.Random(7)
    hashes = leaves(5000, seed=2)
    tree = MerkleTree(hashes)
    for _ in range(200):
        size2 = rnd.randint(1, 5000)
        size1 = rnd.randint(1, size2)
        index = rnd.randrange(size2)
        r1, r2 = tree.root(size1), tree.root(size2)
        verify_consistency(size1, size2, tree.consistency_proof(size1, size2), r1, r2)
        verify_inclusion(hashes[index], index, size2, tree.inclusion_proof(index, size2), r2)
    assert tree.root(4097) == reference_mth(hashes[:4097])


def test_tree_lookup():
    hashes = leaves(40, seed=3)
    hashes[30] = hashes[12]  # a duplicate: first occurrence wins
    tree = MerkleTree(hashes)
    assert tree.leaf_hash_at(0) == hashes[0]
    assert tree.leaf_hash_at(39) == hashes[39]
    assert tree.index_of(hashes[12]) == 12
    assert tree.index_of(hashes[39]) == 39
    assert tree.index_of(leaf_hash(b"not there")) is None
    # A match straddling two stored hashes is not a leaf.
    assert tree.index_of(hashes[5][16:] + hashes[6][:16]) is None
    assert tree.index_of(b"short") is None
    for bad in (-1, 40, True):
        with pytest.raises(MerkleError):
            tree.leaf_hash_at(bad)


def test_tree_argument_errors():
    tree = MerkleTree(leaves(10))
    with pytest.raises(MerkleError):
        tree.append(b"\x00" * 31)
    with pytest.raises(MerkleError):
        tree.extend([b"\x00" * 32, b"\x00" * 33])
    assert len(tree) == 10  # a failed extend adds nothing
    with pytest.raises(MerkleError):
        tree.root(11)
    with pytest.raises(MerkleError):
        tree.root(-1)
    with pytest.raises(MerkleError):
        tree.inclusion_proof(10, 10)
    with pytest.raises(MerkleError):
        tree.inclusion_proof(0, 0)
    with pytest.raises(MerkleError):
        tree.inclusion_proof(0, 11)
    with pytest.raises(MerkleError):
        tree.consistency_proof(5, 4)
    with pytest.raises(MerkleError):
        tree.consistency_proof(1, 11)
    assert tree.consistency_proof(4, 4) == []
    assert tree.consistency_proof(0, 4) == []
    assert MerkleTree().root() == EMPTY_ROOT


# --------------------------------------------------------------------------- CompactRange


def test_compact_range_parallel_slices():
    hashes = leaves(351, seed=4)
    parts = [
        CompactRange.from_leaf_hashes(0, hashes[:100]),
        CompactRange.from_leaf_hashes(100, hashes[100:350]),
        CompactRange.from_leaf_hashes(350, hashes[350:351]),
    ]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    assert (merged.begin, merged.end) == (0, 351)
    assert merged.root() == root_hash(hashes) == reference_mth(hashes)
    assert merged == CompactRange.from_leaf_hashes(0, hashes)
    # Merging is associative: right-hand slices may be combined first.
    assert parts[0].merge(parts[1].merge(parts[2])) == merged


def test_compact_range_random_splits():
    rnd = random.Random(5)
    hashes = leaves(260, seed=5)
    for _ in range(300):
        end = rnd.randint(0, 260)
        cuts = sorted(rnd.sample(range(end + 1), rnd.randint(0, min(6, end + 1))))
        bounds = [0, *cuts, end]
        rng = CompactRange.empty()
        for a, b in zip(bounds, bounds[1:]):
            rng = rng.merge(CompactRange.from_leaf_hashes(a, hashes[a:b]))
        assert rng.root() == reference_mth(hashes[:end])
        assert rng == CompactRange.from_leaf_hashes(0, hashes[:end])
        # Interior ranges (begin > 0) merge to the directly computed range too.
        lo = rnd.randint(0, end)
        mid = rnd.randint(lo, end)
        inner = CompactRange.from_leaf_hashes(lo, hashes[lo:mid]).merge(
            CompactRange.from_leaf_hashes(mid, hashes[mid:end])
        )
        assert inner == CompactRange.from_leaf_hashes(lo, hashes[lo:end])


def test_compact_range_exhaustive_small():
    hashes = leaves(33, seed=6)
    for begin in range(34):
        for mid in range(begin, 34):
            for end in range(mid, 34):
                got = CompactRange.from_leaf_hashes(begin, hashes[begin:mid]).merge(
                    CompactRange.from_leaf_hashes(mid, hashes[mid:end])
                )
                assert got == CompactRange.from_leaf_hashes(begin, hashes[begin:end])
        assert CompactRange.from_leaf_hashes(0, hashes[:begin]).root() == reference_mth(hashes[:begin])


def test_compact_range_nodes_are_maximal_subtrees():
    hashes = leaves(16, seed=8)
    rng = CompactRange.from_leaf_hashes(3, hashes[3:13])
    # [3,13) = [3,4) [4,8) [8,12) [12,13)
    assert rng.nodes() == [(0, 3), (2, 1), (2, 2), (0, 12)]
    assert rng.hashes == (hashes[3], root_hash(hashes[4:8]), root_hash(hashes[8:12]), hashes[12])


def test_compact_range_errors():
    hashes = leaves(10)
    a = CompactRange.from_leaf_hashes(0, hashes[:4])
    c = CompactRange.from_leaf_hashes(5, hashes[5:])
    with pytest.raises(MerkleError, match=r"\[0, 4\).*\[5, 10\)"):
        a.merge(c)
    with pytest.raises(MerkleError, match="does not start at 0"):
        c.root()
    assert CompactRange.empty().root() == EMPTY_ROOT
    assert CompactRange.empty(7).merge(CompactRange.empty(7)) == CompactRange.empty(7)
    with pytest.raises(MerkleError):
        CompactRange(0, 3, (hashes[0],))  # [0,3) needs two hashes
    with pytest.raises(MerkleError):
        CompactRange(4, 3, ())
    with pytest.raises(MerkleError):
        CompactRange(0, 1, (b"\x00" * 31,))
    with pytest.raises(MerkleError):
        CompactRange.from_leaf_hashes(0, [b"x"])


def test_compact_range_json_round_trip():
    hashes = leaves(100, seed=9)
    rng = CompactRange.from_leaf_hashes(13, hashes[13:77])
    obj = json.loads(json.dumps(rng.to_json()))
    assert obj["begin"] == 13 and obj["end"] == 77
    assert all(h == h.lower() and len(h) == 64 for h in obj["hashes"])
    assert CompactRange.from_json(obj) == rng

    bad_cases = [
        {**obj, "hashes": obj["hashes"][:-1]},
        {**obj, "hashes": [obj["hashes"][0].upper(), *obj["hashes"][1:]]},
        {**obj, "hashes": ["zz" * 32, *obj["hashes"][1:]]},
        {**obj, "end": 80},
        {**obj, "begin": -1},
        {**obj, "begin": "13"},
        {"begin": 0, "end": 0},
        [],
    ]
    for bad in bad_cases:
        with pytest.raises(MerkleError):
            CompactRange.from_json(bad)


def test_hash_primitives():
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert root_hash([]) == EMPTY_ROOT
    with pytest.raises(MerkleError):
        root_hash([b"\x00" * 20])
