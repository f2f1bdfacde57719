"""RFC 6962 leaf and extra_data parsing against real log entries, plus malformed inputs."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re

import pytest

from ctlib.ct.leaf import (
    LeafError,
    encode_precert_chain_entry,
    encode_precert_leaf,
    encode_x509_chain,
    encode_x509_leaf,
    parse_extra_data,
    parse_merkle_tree_leaf,
    parse_timestamped_entry,
)
from tests.paths import CTDATA
from tests.support.real_entries import REAL, REAL_IDS, RealEntry


def test_facts_cover_every_real_entries_file() -> None:
    files = {f"rfc6962/{p.name}" for p in (CTDATA / "rfc6962").glob("*get-entr*")}
    assert files == {e.source for e in REAL}
    assert len(REAL) == 11
    assert sum(e.entry_type == "precert" for e in REAL) == 2


@pytest.mark.parametrize("entry", REAL, ids=REAL_IDS)
def test_real_entry_parses_to_the_expected_facts(entry: RealEntry) -> None:
    leaf = parse_merkle_tree_leaf(entry.leaf_input)
    extra = parse_extra_data(leaf.entry_type, entry.extra_data)
    assert leaf.timestamp_ms == entry.facts["timestamp_ms"]
    assert leaf.entry_type == entry.entry_type
    assert len(leaf.extensions) == entry.facts["extensions_len"]
    assert len(extra.chain) == entry.facts["chain_len"]
    expected_hash = base64.b64decode(entry.facts["leaf_hash_b64"])
    assert hashlib.sha256(b"\x00" + entry.leaf_input).digest() == expected_hash
    if leaf.entry_type == "x509":
        assert leaf.cert_der and leaf.cert_der[0] == 0x30
        assert leaf.tbs_der is None and leaf.issuer_key_hash is None and extra.pre_certificate is None
    else:
        assert leaf.issuer_key_hash == base64.b64decode(entry.facts["issuer_key_hash_b64"])
        assert leaf.tbs_der and leaf.tbs_der[0] == 0x30 and leaf.cert_der is None
        assert extra.pre_certificate and extra.pre_certificate[0] == 0x30
    assert all(c[0] == 0x30 for c in extra.chain)


@pytest.mark.parametrize("entry", REAL, ids=REAL_IDS)
def test_encoders_rebuild_real_entries_byte_for_byte(entry: RealEntry) -> None:
    leaf = parse_merkle_tree_leaf(entry.leaf_input)
    extra = parse_extra_data(leaf.entry_type, entry.extra_data)
    if leaf.entry_type == "x509":
        assert leaf.cert_der is not None
        assert encode_x509_leaf(leaf.timestamp_ms, leaf.cert_der, leaf.extensions) == entry.leaf_input
        assert encode_x509_chain(extra.chain) == entry.extra_data
    else:
        assert leaf.issuer_key_hash is not None and leaf.tbs_der is not None
        assert extra.pre_certificate is not None
        rebuilt = encode_precert_leaf(leaf.timestamp_ms, leaf.issuer_key_hash, leaf.tbs_der, leaf.extensions)
        assert rebuilt == entry.leaf_input
        assert encode_precert_chain_entry(extra.pre_certificate, extra.chain) == entry.extra_data


def test_round_trip_with_extensions_and_empty_chain() -> None:
    ext = b"\x00\x00\x05\x00\x00\x00\x04\xd2"  # a static-ct-api leaf_index extension
    x509_leaf = parse_merkle_tree_leaf(encode_x509_leaf(2**63, b"\x30\x00", ext))
    assert (x509_leaf.timestamp_ms, x509_leaf.entry_type, x509_leaf.cert_der) == (2**63, "x509", b"\x30\x00")
    assert x509_leaf.extensions == ext
    precert = parse_merkle_tree_leaf(encode_precert_leaf(7, b"k" * 32, b"\x30\x01\x00", ext))
    assert (precert.issuer_key_hash, precert.tbs_der, precert.extensions) == (b"k" * 32, b"\x30\x01\x00", ext)
    assert parse_extra_data("x509", encode_x509_chain([])).chain == ()
    chain_entry = parse_extra_data("precert", encode_precert_chain_entry(b"\x30\x00", [b"a", b"bc"]))
    assert chain_entry.pre_certificate == b"\x30\x00" and chain_entry.chain == (b"a", b"bc")


def test_timestamped_entries_parse_back_to_back_from_an_offset() -> None:
    first = encode_x509_leaf(1, b"first")[2:]
    second = encode_precert_leaf(2, b"h" * 32, b"tbs", b"xy")[2:]
    blob = b"pad" + first + second
    leaf1, end1 = parse_timestamped_entry(blob, 3)
    leaf2, end2 = parse_timestamped_entry(blob, end1)
    assert (leaf1.cert_der, end1) == (b"first", 3 + len(first))
    assert (leaf2.tbs_der, leaf2.extensions, end2) == (b"tbs", b"xy", len(blob))


def _parse_any(leaf_input: bytes, extra_data: bytes) -> None:
    leaf = parse_merkle_tree_leaf(leaf_input)
    parse_extra_data(leaf.entry_type, extra_data)


@pytest.mark.parametrize("entry_id", ["ctgo_get-entries_precert_and_x509.json#0", "pilot_get-entries_0-3.json#0"])
def test_every_truncation_raises_leaf_error(entry_id: str) -> None:
    entry = REAL[REAL_IDS.index(entry_id)]
    leaf = parse_merkle_tree_leaf(entry.leaf_input)
    for cut in range(len(entry.leaf_input)):
        with pytest.raises(LeafError):
            parse_merkle_tree_leaf(entry.leaf_input[:cut])
    for cut in range(len(entry.extra_data)):
        with pytest.raises(LeafError):
            parse_extra_data(leaf.entry_type, entry.extra_data[:cut])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated MerkleTreeLeaf header"),
        (b"\x01\x00" + b"\x00" * 20, "unsupported MerkleTreeLeaf version 1"),
        (b"\x00\x01" + b"\x00" * 20, "unknown MerkleLeafType 1"),
        (b"\x00\x00" + b"\x00" * 9, "truncated TimestampedEntry at byte 2"),
        (b"\x00\x00" + b"\x00" * 8 + b"\x00\x02", "unknown LogEntryType 2 at byte 10"),
        (b"\x00\x00" + b"\x00" * 8 + b"\x00\x00\x00\x00", "truncated ASN.1Cert length at byte 12"),
        (b"\x00\x00" + b"\x00" * 8 + b"\x00\x00\x00\x00\x00\x00\x00", "empty ASN.1Cert at byte 12"),
        (b"\x00\x00" + b"\x00" * 8 + b"\x00\x00\x00\x00\x09ab", "truncated ASN.1Cert at byte 15: length 9, 2 bytes left"),
        (b"\x00\x00" + b"\x00" * 8 + b"\x00\x01" + b"k" * 31, "truncated issuer_key_hash at byte 12"),
        (encode_x509_leaf(1, b"c")[:-1], "truncated CtExtensions length"),
        (encode_x509_leaf(1, b"c") + b"\x00", "1 trailing bytes after MerkleTreeLeaf at byte 18"),
    ],
)
def test_malformed_leaf_messages_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(LeafError, match=re.escape(message)):
        parse_merkle_tree_leaf(data)


def test_malformed_extra_data_messages() -> None:
    with pytest.raises(LeafError, match="trailing bytes after extra_data"):
        parse_extra_data("x509", encode_x509_chain([b"a"]) + b"\x00")
    with pytest.raises(LeafError, match="chain certificate.*inside certificate_chain"):
        parse_extra_data("x509", b"\x00\x00\x04\x00\x00\x09a")  # inner length overruns the list
    with pytest.raises(LeafError, match="empty pre_certificate"):
        parse_extra_data("precert", b"\x00\x00\x00\x00\x00\x00")
    with pytest.raises(LeafError, match="unknown entry type"):
        parse_extra_data("v2", b"")  # type: ignore[arg-type]


def test_encoders_reject_what_they_cannot_encode() -> None:
    with pytest.raises(LeafError, match="issuer_key_hash must be 32 bytes"):
        encode_precert_leaf(1, b"short", b"tbs")
    with pytest.raises(LeafError, match="CtExtensions too long"):
        encode_x509_leaf(1, b"c", b"\x00" * 65536)
    with pytest.raises(LeafError, match="empty ASN.1Cert"):
        encode_x509_leaf(1, b"")
    with pytest.raises(LeafError, match="uint64"):
        encode_x509_leaf(-1, b"c")


def test_garbage_and_mutations_raise_only_leaf_error() -> None:
    rng = random.Random(6962)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(80))) for _ in range(2000)]
    for entry in REAL:
        for _ in range(100):
            leaf = bytearray(entry.leaf_input)
            extra = bytearray(entry.extra_data)
            for buf in (leaf, extra):
                buf[rng.randrange(min(len(buf), 20))] = rng.randrange(256)  # hit the headers
            samples.append(bytes(leaf))
            samples.append(bytes(extra))
    for sample in samples:
        for entry_type in ("x509", "precert"):
            try:
                parse_extra_data(entry_type, sample)  # type: ignore[arg-type]
            except LeafError:
                pass
        try:
            parse_merkle_tree_leaf(sample)
        except LeafError:
            pass
