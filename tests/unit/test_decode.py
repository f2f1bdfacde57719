"""decode_entries on real log entries, synthetic precert pairs and broken entries."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtensionOID

import ctlib.decode.entries as decode_module
from ctlib.ct.types import RawEntry
from ctlib.decode.entries import ChainCache, DecodedBatch, LogRef, decode_entries
from ctlib.ct.leaf import (
    encode_precert_chain_entry,
    encode_precert_leaf,
    encode_x509_chain,
    encode_x509_leaf,
    parse_extra_data,
    parse_merkle_tree_leaf,
)
from ctlib.lake.layout import CERTS_SCHEMA, ERRORS_SCHEMA
from ctlib.decode.x509 import PRECERT_SIGNING_EKU
from tests.support.certs import DER, PrecertPair, leaf_builder, make_ca, make_precert_pair
from tests.support.real_entries import REAL, RealEntry

LOG = LogRef(log_id="pLkJkLQYWBSHuxOizGdwCjw1mAT5G9+443fNDsgN3BA=", slug="pilot")
INGESTED = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
MISMATCHED = "rfc6962/scrape-ct-log_get-entries_precert_MISMATCHED-NEGATIVE.json"


def raw(entries: list[RealEntry], first_index: int = 1000) -> list[RawEntry]:
    return [RawEntry(first_index + i, e.leaf_input, e.extra_data) for i, e in enumerate(entries)]


def decode(entries: list[RawEntry], **kwargs) -> DecodedBatch:
    return decode_entries(LOG, entries, INGESTED, **kwargs)


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def test_every_real_entry_decodes_to_its_facts() -> None:
    good = [e for e in REAL if e.source != MISMATCHED]
    batch = decode(raw(good))
    assert batch.errors.num_rows == 0, rows(batch.errors)
    assert batch.certs.schema == CERTS_SCHEMA
    assert batch.certs.num_rows == len(good) == 10
    for row, entry in zip(rows(batch.certs), good, strict=True):
        facts = entry.facts
        assert row["leaf_hash"] == base64.b64decode(facts["leaf_hash_b64"]).hex()
        assert row["timestamp"] == datetime.fromtimestamp(facts["timestamp_ms"] / 1000, UTC)
        assert row["timestamp"] == datetime.fromisoformat(facts["timestamp"].replace("Z", "+00:00"))
        assert row["entry_type"] == entry.entry_type
        assert ([row["subject_cn"]] if row["subject_cn"] is not None else []) == facts["subject_cn"]
        assert row["dns_names"] == facts["san_dns"]
        assert row["ip_addresses"] == facts["san_ip"]
        assert row["issuer"] == facts["issuer"]
        assert row["serial"] == facts["serial_hex"]
        assert row["not_before"] == datetime.fromisoformat(facts["not_before"])
        assert row["not_after"] == datetime.fromisoformat(facts["not_after"])
        assert len(row["chain_sha256"]) == facts["chain_len"]
        assert (row["log_id"], row["log_slug"]) == (LOG.log_id, LOG.slug)
        assert row["ingested_at"] == INGESTED
        assert row["cert_der"] is None


def test_hashes_of_a_real_precert_and_x509_entry() -> None:
    entries = [e for e in REAL if e.source == "rfc6962/ctgo_get-entries_precert_and_x509.json"]
    batch = decode(raw(entries, first_index=0), store_der=True)
    precert, cert = rows(batch.certs)
    for row, entry in ((precert, entries[0]), (cert, entries[1])):
        leaf = parse_merkle_tree_leaf(entry.leaf_input)
        extra = parse_extra_data(leaf.entry_type, entry.extra_data)
        der = extra.pre_certificate if leaf.entry_type == "precert" else leaf.cert_der
        assert row["cert_der"] == der
        assert row["cert_sha256"] == hashlib.sha256(der).hexdigest()
        assert row["chain_sha256"] == [hashlib.sha256(c).hexdigest() for c in extra.chain]
    assert precert["tbs_sha256"] == hashlib.sha256(parse_merkle_tree_leaf(entries[0].leaf_input).tbs_der).hexdigest()
    assert precert["subject_cn"] == "sdfedsf.trust" and precert["is_ca"] is False
    assert (cert["index"], cert["issuer_cn"], cert["is_ca"]) == (1, "GlobalSign Extended Validation CA - G2 TEST", None)
    assert (cert["key_type"], cert["key_bits"], cert["signature_algorithm"]) == ("RSA", 2048, "sha1WithRSAEncryption")


def test_mismatched_precert_lands_in_errors() -> None:
    (entry,) = [e for e in REAL if e.source == MISMATCHED]
    batch = decode(raw([entry], first_index=77))
    assert batch.certs.num_rows == 0
    assert batch.errors.schema == ERRORS_SCHEMA
    (error,) = rows(batch.errors)
    reason = error["reason"]
    assert reason.startswith("pilot index 77: ")
    assert "issuer_key_hash d241053c" in reason and "does not match SHA-256 of chain[0] SPKI" in reason
    assert "pre_certificate serial 6100004b1d76c7bad60db4e1b1000200004b1d does not match" in reason
    assert "TBS serial 4400004e9685f6e73ca1cdd053000200004e96" in reason
    assert error["timestamp"] == datetime(2018, 7, 24, 22, 39, 46, 235000, tzinfo=UTC)
    assert base64.b64decode(error["leaf_input_b64"]) == entry.leaf_input
    assert base64.b64decode(error["extra_data_b64"]) == entry.extra_data
    assert (error["index"], error["ingested_at"]) == (77, INGESTED)
    assert batch.leaf_hashes == [base64.b64decode(entry.facts["leaf_hash_b64"])]


def test_no_cn_certificate() -> None:
    (entry,) = [e for e in REAL if "no-CN" in e.source]
    (row,) = rows(decode(raw([entry])).certs)
    assert row["subject_cn"] is None and row["dns_names"] == [] and row["ip_addresses"] == []
    assert row["subject"] == "L=Erw Wen,ST=Wales,O=Certificate Transparency,C=GB"
    assert row["issuer_cn"] is None and row["issuer_org"] == "Certificate Transparency CA"


def test_broken_entries_never_stop_the_batch() -> None:
    good = REAL[0]
    x509_leaf = parse_merkle_tree_leaf(good.leaf_input)
    assert x509_leaf.cert_der is not None
    entries = [
        RawEntry(10, good.leaf_input, good.extra_data),
        RawEntry(11, good.leaf_input[:40], good.extra_data),  # truncated leaf
        RawEntry(12, good.leaf_input, good.extra_data[:-1]),  # truncated chain
        RawEntry(13, encode_x509_leaf(5, b"\x30\x03\x02\x01\x01"), encode_x509_chain([])),  # not a certificate
        RawEntry(14, b"", b""),
        RawEntry(16, encode_x509_leaf(2**64 - 1, x509_leaf.cert_der), good.extra_data),  # uint64, not int64
        RawEntry(15, good.leaf_input, good.extra_data),
    ]
    batch = decode(entries)
    assert batch.certs["index"].to_pylist() == [10, 15]  # input order, 16 comes after 15
    errors = {r["index"]: r for r in rows(batch.errors)}
    assert sorted(errors) == [11, 12, 13, 14, 16]
    assert errors[16]["reason"] == f"pilot index 16: malformed entry: timestamp {2**64 - 1} is out of range"
    assert errors[16]["timestamp"] is None
    assert errors[11]["reason"].startswith("pilot index 11: malformed entry: truncated ASN.1Cert at byte 15")
    assert errors[11]["timestamp"] is None  # the leaf itself did not parse
    assert "certificate_chain" in errors[12]["reason"]
    assert errors[12]["timestamp"] == datetime.fromtimestamp(x509_leaf.timestamp_ms / 1000, UTC)
    assert errors[13]["reason"].startswith("pilot index 13: cannot decode certificate")
    assert errors[13]["timestamp"] == datetime.fromtimestamp(0.005, UTC)
    assert errors[14]["reason"] == "pilot index 14: malformed entry: truncated MerkleTreeLeaf header: 0 bytes"
    # One leaf hash per entry, in input order, errors included.
    assert batch.leaf_hashes == [hashlib.sha256(b"\x00" + e.leaf_input).digest() for e in entries]


def test_malformed_unused_extension_keeps_the_row_malformed_san_is_an_error() -> None:
    ca = make_ca()
    bad_key_usage = x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, b"\x04\x00")  # not a BIT STRING
    bad_san = x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x82\x01\xff")  # not IA5
    kept = (leaf_builder(ca, serial=9, cn="lazy.example", dns=["lazy.example"])
            .add_extension(bad_key_usage, critical=False).sign(ca.key, hashes.SHA256()).public_bytes(DER))
    template = x509.load_der_x509_certificate(kept)
    lost = (
        x509.CertificateBuilder().subject_name(template.subject).issuer_name(template.issuer)
        .public_key(template.public_key()).serial_number(10)
        .not_valid_before(template.not_valid_before_utc).not_valid_after(template.not_valid_after_utc)
        .add_extension(bad_san, critical=False).sign(ca.key, hashes.SHA256()).public_bytes(DER)
    )
    batch = decode([RawEntry(3, encode_x509_leaf(1, kept), encode_x509_chain([ca.der])),
                    RawEntry(4, encode_x509_leaf(1, lost), encode_x509_chain([ca.der]))])
    # keyUsage is not a column: its damage does not hide the certificate's names.
    (row,) = rows(batch.certs)
    assert (row["index"], row["dns_names"], row["subject_cn"]) == (3, ["lazy.example"], "lazy.example")
    (error,) = rows(batch.errors)
    assert error["reason"].startswith("pilot index 4: cannot decode certificate:")
    assert "dNSName is not an IA5String" in error["reason"]


def _precert_entry(pair: PrecertPair, index: int, chain: list[bytes], key_hash: bytes | None = None) -> RawEntry:
    leaf = encode_precert_leaf(1_700_000_000_000, key_hash or pair.ca.key_hash, pair.tbs_der)
    return RawEntry(index, leaf, encode_precert_chain_entry(pair.precert_der, chain))


def test_precert_and_final_certificate_rows_share_tbs_sha256() -> None:
    pair = make_precert_pair()
    entries = [
        _precert_entry(pair, 0, [pair.ca.der]),
        RawEntry(1, encode_x509_leaf(1_700_000_000_001, pair.final_der), encode_x509_chain([pair.ca.der])),
    ]
    batch = decode(entries)
    assert batch.errors.num_rows == 0, rows(batch.errors)
    precert, final = rows(batch.certs)
    assert precert["tbs_sha256"] == final["tbs_sha256"] == hashlib.sha256(pair.tbs_der).hexdigest()
    assert precert["cert_sha256"] == hashlib.sha256(pair.precert_der).hexdigest()
    assert final["cert_sha256"] == hashlib.sha256(pair.final_der).hexdigest()
    same = ("serial", "subject", "issuer", "dns_names", "not_before", "not_after", "key_type", "key_bits")
    assert {k: precert[k] for k in same} == {k: final[k] for k in same}
    assert precert["serial"] == "1234abcd" and precert["key_type"] == "EC" and precert["key_bits"] == 256


def test_precert_signing_certificate_chains() -> None:
    ca = make_ca()
    psc = make_ca("Precert Signer", issuer=ca, eku=[PRECERT_SIGNING_EKU])
    pair = make_precert_pair(ca)
    batch = decode(
        [
            _precert_entry(pair, 0, [psc.der, ca.der]),  # hash names chain[1], the real issuer
            _precert_entry(pair, 1, [psc.der, ca.der], key_hash=psc.key_hash),  # names the signer: wrong
            _precert_entry(pair, 2, [psc.der]),  # signer without the issuer after it
            _precert_entry(pair, 3, []),
            _precert_entry(pair, 4, [ca.der], key_hash=b"\x00" * 32),
        ]
    )
    assert batch.certs["index"].to_pylist() == [0]
    reasons = {r["index"]: r["reason"] for r in rows(batch.errors)}
    assert "does not match SHA-256 of chain[1] SPKI" in reasons[1]
    assert "chain[0] is a Precertificate Signing Certificate but chain[1] is missing" in reasons[2]
    assert "empty precertificate_chain" in reasons[3]
    assert "does not match SHA-256 of chain[0] SPKI" in reasons[4] and "serial" not in reasons[4]


def test_undecodable_chain_certificate_of_a_precert() -> None:
    pair = make_precert_pair()
    (error,) = rows(decode([_precert_entry(pair, 5, [b"\x30\x80junk"])]).errors)
    assert error["reason"].startswith("pilot index 5: cannot decode chain[0]: ")


def test_precert_serial_mismatch_alone() -> None:
    ca = make_ca()
    pair = make_precert_pair(ca, serial=0x1111)
    other = make_precert_pair(ca, serial=0x2222)
    entry = RawEntry(
        0,
        encode_precert_leaf(1, ca.key_hash, pair.tbs_der),
        encode_precert_chain_entry(other.precert_der, [ca.der]),
    )
    (error,) = rows(decode([entry]).errors)
    assert error["reason"] == (
        "pilot index 0: precert entry inconsistent with its extra_data: "
        "pre_certificate serial 2222 does not match TBS serial 1111"
    )


def test_chain_certificates_are_hashed_not_parsed_for_x509_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(der: bytes):
        raise AssertionError("chain certificate parsed with cryptography")

    monkeypatch.setattr(decode_module, "load_certificate", refuse)
    x509_entries = [e for e in REAL if e.entry_type == "x509"]
    batch = decode(raw(x509_entries))
    assert batch.errors.num_rows == 0 and batch.certs.num_rows == len(x509_entries)


def test_chain_cache_is_shared_and_bounded() -> None:
    good = [e for e in REAL if e.source != MISMATCHED]
    cache = ChainCache(max_entries=3)
    first = decode(raw(good), chain_cache=cache)
    assert 0 < len(cache) <= 6  # two maps, each bounded at 3
    second = decode(raw(good), chain_cache=cache)
    assert first.certs.equals(second.certs)
    unbounded = ChainCache()
    decode(raw(good * 3), chain_cache=unbounded)
    distinct = {c for e in good for c in parse_extra_data(e.entry_type, e.extra_data).chain}  # type: ignore[arg-type]
    assert len(unbounded) == len(distinct) + 1  # + the ctgo precert's issuer, also validated
    der = next(iter(distinct))
    assert unbounded.sha256_hex(der) is unbounded.sha256_hex(bytes(bytearray(der)))  # one str per certificate


def test_empty_batch_and_timestamps() -> None:
    batch = decode([])
    assert batch.certs.num_rows == 0 and batch.errors.num_rows == 0 and batch.leaf_hashes == []
    assert batch.certs.schema == CERTS_SCHEMA and batch.errors.schema == ERRORS_SCHEMA
    other_zone = INGESTED.astimezone(timezone(timedelta(hours=5)))
    (row,) = rows(decode_entries(LOG, raw(REAL[:1]), other_zone).certs)
    assert row["ingested_at"] == INGESTED
    with pytest.raises(ValueError, match="timezone-aware"):
        decode_entries(LOG, [], datetime(2026, 1, 1))


def test_schema_column_order() -> None:
    assert CERTS_SCHEMA.names == [
        "log_id", "log_slug", "index", "leaf_hash", "timestamp", "entry_type", "cert_sha256",
        "tbs_sha256", "serial", "subject", "subject_cn", "issuer", "issuer_cn", "issuer_org",
        "not_before", "not_after", "dns_names", "ip_addresses", "is_ca", "key_type", "key_bits",
        "signature_algorithm", "chain_sha256", "ingested_at", "cert_der",
    ]  # fmt: skip
    assert CERTS_SCHEMA.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert CERTS_SCHEMA.field("not_before").type == pa.timestamp("s", tz="UTC")
    assert CERTS_SCHEMA.field("key_bits").type == pa.int32()
    assert ERRORS_SCHEMA.names == [
        "log_id", "log_slug", "index", "timestamp", "reason", "leaf_input_b64", "extra_data_b64", "ingested_at",
    ]  # fmt: skip
    assert ERRORS_SCHEMA.field("timestamp").nullable
