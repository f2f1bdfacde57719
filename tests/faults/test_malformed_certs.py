"""Malformed certificates never crash a range: every entry lands in `certs` or in `errors`
(with a reason naming the log, the index and the cause), whatever its bytes.

Property-based: hypothesis mutates real log entries (the rfc6962 get-entries corpus of
tests.paths.CTDATA): flipped, inserted and deleted bytes, truncations, in the leaf or the
chain. Plus DER edge cases built with cryptography: no CN, no SAN, 5,000 SANs, a negative
serial (patched into the DER: cryptography refuses to build one), an unknown critical
extension, extreme validity dates, as x509 and as precert entries."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import ChainCache, LogRef, decode_entries
from ctlib.ct.leaf import encode_precert_chain_entry, encode_precert_leaf, encode_x509_chain, encode_x509_leaf
from tests.paths import CTDATA

LOG = LogRef(log_id=base64.b64encode(b"\x01" * 32).decode(), slug="fault_log")
INGESTED = datetime(2026, 3, 1, tzinfo=UTC)
DER = serialization.Encoding.DER


def _corpus() -> list[tuple[bytes, bytes]]:
    entries = []
    for path in sorted((CTDATA / "rfc6962").glob("*get-entries*.json")):
        for raw in json.loads(path.read_text())["entries"]:
            entries.append((base64.b64decode(raw["leaf_input"]), base64.b64decode(raw["extra_data"])))
    return entries


CORPUS = _corpus()


def check_batch(entries: list[RawEntry], chain_cache: ChainCache | None = None):
    """Decode; every index in exactly one table, error reasons naming log and index."""
    batch = decode_entries(LOG, entries, INGESTED, chain_cache=chain_cache)
    certs, errors = batch.certs.column("index").to_pylist(), batch.errors.column("index").to_pylist()
    assert sorted(certs + errors) == [e.index for e in entries], "each entry lands exactly once"
    assert len(batch.leaf_hashes) == len(entries)
    for index, reason in zip(errors, batch.errors.column("reason").to_pylist(), strict=True):
        assert reason.startswith(f"fault_log index {index}: ") and len(reason) > len(f"fault_log index {index}: ") + 5, reason
    return batch


def test_corpus_is_there_and_decodes():
    assert len(CORPUS) >= 8, f"no get-entries corpus under {CTDATA}"
    check_batch([RawEntry(i, leaf, extra) for i, (leaf, extra) in enumerate(CORPUS)])


def _mutate(data: bytes, op: str, at: float, payload: bytes) -> bytes:
    if not data:
        return payload
    pos = min(int(at * len(data)), len(data) - 1)
    if op == "flip":
        return data[:pos] + bytes([data[pos] ^ (payload[0] if payload else 0xFF) or 0x01]) + data[pos + 1:]
    if op == "truncate":
        return data[:pos]
    if op == "insert":
        return data[:pos] + payload + data[pos:]
    if op == "delete":
        return data[:pos] + data[pos + 1 + len(payload):]
    return data[:pos] + payload + data[pos + len(payload):]  # overwrite


MUTATION = st.tuples(
    st.sampled_from(["leaf", "extra"]),
    st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]),
    st.floats(0, 1, allow_nan=False),
    st.binary(min_size=1, max_size=8),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(CORPUS) - 1), st.lists(MUTATION, min_size=1, max_size=3)),
                min_size=1, max_size=6))
def test_mutated_real_entries_never_raise_and_always_land(specs):
    entries = []
    for index, (which, mutations) in enumerate(specs, start=5000):
        leaf, extra = CORPUS[which]
        for part, op, at, payload in mutations:
            if part == "leaf":
                leaf = _mutate(leaf, op, at, payload)
            else:
                extra = _mutate(extra, op, at, payload)
        entries.append(RawEntry(index, leaf, extra))
    good_index = 5000 + len(entries)  # an intact entry after the broken ones still decodes
    entries.append(RawEntry(good_index, *CORPUS[0]))
    batch = check_batch(entries, ChainCache())
    assert good_index in batch.certs.column("index").to_pylist()


# ----------------------------------------------------------------- DER edge cases


@pytest.fixture(scope="module")
def ca():
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fault Test CA")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime(2025, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


NEGATIVE_SERIAL_MARK = 0x11223344556677  # 7 bytes, high bit clear; patched to 0x91... below


def build(ca, *, cn: str | None = "edge.example", sans: list[str] | None = None, serial: int = 0x1234,
          critical_unknown: bool = False, not_before=datetime(2025, 6, 1, tzinfo=UTC),
          not_after=datetime(2025, 9, 1, tzinfo=UTC)) -> x509.CertificateBuilder:
    key, cert = ca
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(cert.subject)
               .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
               .serial_number(serial).not_valid_before(not_before).not_valid_after(not_after))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    if critical_unknown:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1.2"), b"\x0c\x05hello"), critical=True)
    return builder


def x509_entry(index: int, der: bytes, ca) -> RawEntry:
    return RawEntry(index, encode_x509_leaf(1_750_000_000_000, der), encode_x509_chain([ca[1].public_bytes(DER)]))


def precert_entry(index: int, builder: x509.CertificateBuilder, ca) -> RawEntry:
    key, cert = ca
    issuer_der = cert.public_bytes(DER)
    precert = builder.add_extension(x509.PrecertPoison(), critical=True).sign(key, hashes.SHA256())
    tbs = builder.sign(key, hashes.SHA256()).tbs_certificate_bytes  # the TBS without the poison
    issuer_key_hash = hashlib.sha256(cert.public_key().public_bytes(
        DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    return RawEntry(index, encode_precert_leaf(1_750_000_000_000, issuer_key_hash, tbs),
                    encode_precert_chain_entry(precert.public_bytes(DER), [issuer_der]))


def negative_serial(der: bytes) -> bytes:
    """The DER with its serial made negative by hand (the signature no longer verifies,
    which the decoder does not check)."""
    mark = b"\x02\x07" + NEGATIVE_SERIAL_MARK.to_bytes(7, "big")
    assert der.count(mark) == 1
    return der.replace(mark, b"\x02\x07\x91" + mark[3:])


EDGES = {
    "no_cn": dict(cn=None, sans=["no-cn.example"]),
    "no_san": dict(sans=None),
    "no_cn_no_san": dict(cn=None, sans=None),
    "huge_san_list": dict(sans=[f"host{i}.big-san.example" for i in range(5000)]),
    "unknown_critical_extension": dict(critical_unknown=True, sans=["crit.example"]),
    "negative_serial": dict(serial=NEGATIVE_SERIAL_MARK, sans=["neg.example"]),
    "extreme_dates": dict(not_before=datetime(1950, 1, 1, tzinfo=UTC), not_after=datetime(9999, 12, 31, tzinfo=UTC),
                          sans=["forever.example"]),
}


@pytest.mark.parametrize("kind", ["x509", "precert"])
def test_der_edge_cases_land_in_certs_or_errors_with_reasons(kind, ca):
    entries, expected = [], {}
    for index, (edge, options) in enumerate(EDGES.items(), start=100):
        builder = build(ca, **options)
        if kind == "x509":
            der = builder.sign(ca[0], hashes.SHA256()).public_bytes(DER)
            if edge == "negative_serial":
                der = negative_serial(der)
            entries.append(x509_entry(index, der, ca))
        else:
            entry = precert_entry(index, builder, ca)
            if edge == "negative_serial":  # in the TBS and in the pre_certificate alike
                entry = RawEntry(index, negative_serial(entry.leaf_input), negative_serial(entry.extra_data))
            entries.append(entry)
        expected[index] = edge
    batch = check_batch(entries)
    certs = {row["index"]: row for row in batch.certs.to_pylist()}
    errors = {row["index"]: row["reason"] for row in batch.errors.to_pylist()}
    landed = {expected[i]: ("certs" if i in certs else f"errors: {errors[i]}") for i in expected}
    print(kind, json.dumps(landed, indent=1))
    # What each edge case must give (all are certificates a CA could log):
    by_edge = {expected[i]: row for i, row in certs.items()}
    assert set(by_edge) == set(EDGES), f"every edge case decodes: {landed}"
    assert by_edge["no_cn"]["subject_cn"] is None and by_edge["no_cn"]["dns_names"] == ["no-cn.example"]
    assert by_edge["no_san"]["dns_names"] == [] and by_edge["no_san"]["subject_cn"] == "edge.example"
    assert by_edge["no_cn_no_san"]["subject"] == "" and by_edge["no_cn_no_san"]["dns_names"] == []
    assert len(by_edge["huge_san_list"]["dns_names"]) == 5000
    assert by_edge["negative_serial"]["serial"].startswith("-")
    assert by_edge["extreme_dates"]["not_after"].year == 9999
    assert by_edge["unknown_critical_extension"]["dns_names"] == ["crit.example"]
