"""Certificate builders for decoder tests: a test CA (`make_ca`), leaf certificates
(`leaf_builder`), precertificate / final certificate pairs with an SCT list
(`make_precert_pair`), and the SCT list extension value."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ctlib.decode.x509 import SCT_LIST_OID

DER = serialization.Encoding.DER
NOT_BEFORE = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
NOT_AFTER = datetime(2025, 4, 2, 3, 4, 5, tzinfo=UTC)


def name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "GB")]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(DER)

    @property
    def key_hash(self) -> bytes:
        spki = self.key.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(spki).digest()


def make_ca(cn: str = "Decoder Test CA", *, issuer: Ca | None = None, eku: list | None = None) -> Ca:
    """A CA (self-signed, or signed by `issuer`); with `eku`, e.g. a Precertificate Signing Certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn, "Decoder Tests"))
        .issuer_name(issuer.cert.subject if issuer else name(cn, "Decoder Tests"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=eku is None, path_length=None), critical=True)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return Ca(key, builder.sign(issuer.key if issuer else key, hashes.SHA256()))


def sct_list_value(log_id: bytes, timestamp_ms: int, signature: bytes) -> bytes:
    """extnValue of an SCT list extension: OCTET STRING { TLS SignedCertificateTimestampList }."""
    sct = (
        b"\x00"  # v1
        + log_id
        + timestamp_ms.to_bytes(8, "big")
        + b"\x00\x00"  # no CtExtensions
        + b"\x04\x03"  # sha256, ecdsa
        + len(signature).to_bytes(2, "big")
        + signature
    )
    entries = len(sct).to_bytes(2, "big") + sct
    sct_list = len(entries).to_bytes(2, "big") + entries
    assert len(sct_list) < 128
    return b"\x04" + bytes([len(sct_list)]) + sct_list


@dataclass(frozen=True)
class PrecertPair:
    """A precertificate, its final certificate (with an SCT list) and the log's precert TBS."""

    ca: Ca
    precert_der: bytes  # carries the poison extension
    final_der: bytes  # carries the SCT list extension
    tbs_der: bytes  # the precert TBS with the poison removed, as a log puts in the leaf
    sct_log_id: bytes


def leaf_builder(ca: Ca, *, serial: int, cn: str, dns: list[str], key=None) -> x509.CertificateBuilder:
    subject_key = key if key is not None else ec.generate_private_key(ec.SECP256R1()).public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca.cert.subject)
        .public_key(subject_key)
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )


def make_precert_pair(ca: Ca | None = None, *, serial: int = 0x1234ABCD, cn: str = "pair.example") -> PrecertPair:
    ca = ca or make_ca()
    builder = leaf_builder(ca, serial=serial, cn=cn, dns=[cn, "www." + cn])
    log_id = hashlib.sha256(b"test log").digest()
    signature = ca.key.sign(b"sct", ec.ECDSA(hashes.SHA256()))
    sct_ext = x509.UnrecognizedExtension(SCT_LIST_OID, sct_list_value(log_id, 1_735_787_045_000, signature))
    # Poison and SCT list go last, so dropping either leaves the same extension list.
    precert = builder.add_extension(x509.PrecertPoison(), critical=True).sign(ca.key, hashes.SHA256())
    final = builder.add_extension(sct_ext, critical=False).sign(ca.key, hashes.SHA256())
    plain = builder.sign(ca.key, hashes.SHA256())
    return PrecertPair(ca, precert.public_bytes(DER), final.public_bytes(DER), plain.tbs_certificate_bytes, log_id)
