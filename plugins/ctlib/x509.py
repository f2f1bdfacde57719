"""Certificate fields for the certs table, extracted with `cryptography`.

Contract: every public decoding function either returns a complete result or raises
`CertError` (a ValueError) saying what failed. cryptography validates some parts lazily
(a bad extension raises only when `.extensions` is read), so all accessors run inside
one guard.

The only hand-rolled DER here is minimal: reading element headers to find the TBS
fields cryptography does not expose as raw bytes (serial, signature algorithm, issuer,
SPKI and its algorithm), and wrapping a bare TBSCertificate as a Certificate so cryptography can load it.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtensionOID, NameOID, ObjectIdentifier

SCT_LIST_OID = ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS  # 1.3.6.1.4.1.11129.2.4.2
PRECERT_SIGNING_EKU = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")

_SEQUENCE, _INTEGER, _VERSION_TAG = 0x30, 0x02, 0xA0
_EMPTY_BIT_STRING = b"\x03\x01\x00"
_ISSUER_CACHE_MAX = 4096
_SAN, _BASIC_CONSTRAINTS = ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.BASIC_CONSTRAINTS


class CertError(ValueError):
    """A certificate or TBSCertificate cannot be decoded; the message says why."""


@dataclass(frozen=True, slots=True)
class CertFields:
    """The certificate-derived columns of CERTS_SCHEMA."""

    serial: str  # lowercase hex, no leading zeros, "-" prefix if negative
    subject: str  # RFC 4514, as Name.rfc4514_string()
    subject_cn: str | None  # first CN
    issuer: str
    issuer_cn: str | None
    issuer_org: str | None
    not_before: datetime  # UTC
    not_after: datetime  # UTC
    dns_names: tuple[str, ...]  # SAN dNSName in certificate order, IDNs as A-labels
    ip_addresses: tuple[str, ...]
    is_ca: bool | None  # None without basicConstraints
    key_type: str  # RSA | EC | Ed25519 | Ed448 | DSA | unknown
    key_bits: int | None
    signature_algorithm: str  # OID name, or dotted string when cryptography has none


@dataclass(frozen=True, slots=True)
class TbsParts:
    """Pieces of a TBSCertificate, the byte strings exactly as encoded."""

    serial: int
    signature_algorithm: bytes  # AlgorithmIdentifier TLV
    issuer: bytes  # Name TLV
    spki: bytes  # SubjectPublicKeyInfo TLV


# --- minimal DER ------------------------------------------------------------------------


def _element(data: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at `pos`; single-byte tags only."""
    if pos + 2 > len(data):
        raise CertError(f"truncated DER {what} at byte {pos}")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length >= 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or pos + n > len(data):
            raise CertError(f"bad DER length of {what} at byte {pos - 1}")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise CertError(f"truncated DER {what} at byte {pos}: length {length}, {len(data) - pos} bytes left")
    return tag, pos, end


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def certificate_tbs(cert_der: bytes) -> bytes:
    """The TBSCertificate TLV inside a DER Certificate, byte for byte."""
    tag, start, _ = _element(cert_der, 0, "Certificate")
    if tag != _SEQUENCE:
        raise CertError(f"Certificate is not a SEQUENCE (tag 0x{tag:02x})")
    tag, _, end = _element(cert_der, start, "TBSCertificate")
    if tag != _SEQUENCE:
        raise CertError(f"TBSCertificate is not a SEQUENCE (tag 0x{tag:02x})")
    return cert_der[start:end]


def _tbs_serial(tbs_der: bytes) -> tuple[int, int]:
    """The serial of a DER TBSCertificate and the offset just past it."""
    tag, pos, end = _element(tbs_der, 0, "TBSCertificate")
    if tag != _SEQUENCE or end != len(tbs_der):
        raise CertError("TBSCertificate is not exactly one DER SEQUENCE")
    tag, start, stop = _element(tbs_der, pos, "version")
    if tag == _VERSION_TAG:  # [0] EXPLICIT version is optional
        tag, start, stop = _element(tbs_der, stop, "serialNumber")
    if tag != _INTEGER or stop == start:
        raise CertError(f"TBSCertificate serialNumber is not an INTEGER (tag 0x{tag:02x})")
    return int.from_bytes(tbs_der[start:stop], "big", signed=True), stop


def certificate_serial(cert_der: bytes) -> int:
    """The serial number of a DER Certificate, read without cryptography (which warns on negatives)."""
    return _tbs_serial(certificate_tbs(cert_der))[0]


def split_tbs(tbs_der: bytes) -> TbsParts:
    """Find serial, signature algorithm, issuer and SPKI in a DER TBSCertificate."""
    serial, stop = _tbs_serial(tbs_der)
    spans: list[bytes] = []
    for what in ("signature", "issuer", "validity", "subject", "subjectPublicKeyInfo"):
        tag, _, end = _element(tbs_der, stop, what)
        if tag != _SEQUENCE:
            raise CertError(f"TBSCertificate {what} is not a SEQUENCE (tag 0x{tag:02x})")
        spans.append(tbs_der[stop:end])
        stop = end
    return TbsParts(serial, spans[0], spans[1], spans[4])


def wrap_tbs(tbs_der: bytes, parts: TbsParts | None = None) -> bytes:
    """A DER Certificate around a bare TBS: its own signature AlgorithmIdentifier, empty signature.

    Only for reading fields: the result carries no valid signature. `parts`, when given,
    must be `split_tbs(tbs_der)` (saves splitting twice).
    """
    algorithm = (parts or split_tbs(tbs_der)).signature_algorithm
    body = tbs_der + algorithm + _EMPTY_BIT_STRING
    return b"\x30" + _der_length(len(body)) + body


def spki_sha256(cert_der: bytes) -> bytes:
    """SHA-256 of a certificate's SubjectPublicKeyInfo as encoded: an RFC 6962 issuer_key_hash."""
    return hashlib.sha256(split_tbs(certificate_tbs(cert_der)).spki).digest()


def format_serial(serial: int) -> str:
    """Lowercase hex without leading zeros; '-' prefix for (invalid but logged) negatives."""
    return format(serial, "x")


# --- cryptography -----------------------------------------------------------------------


class _QuietSerialWarnings(warnings.catch_warnings):
    """Silence cryptography's deprecation warnings while it parses a certificate.

    It warns about non-positive serials, in the certificate or inside an AKI (old test
    CAs use authorityCertSerialNumber 0): the data's quirk, not our API use; serials are
    read from the DER here anyway. catch_warnings is process-global state, which is fine
    for the single-threaded decoder.
    """

    def __enter__(self) -> None:
        super().__enter__()
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)


def load_certificate(der: bytes) -> x509.Certificate:
    """Load a DER certificate; CertError when cryptography rejects it."""
    try:
        with _QuietSerialWarnings():
            return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise CertError(f"cannot load certificate: {exc}") from None


def _first(name: x509.Name, oid: ObjectIdentifier) -> str | None:
    attrs = name.get_attributes_for_oid(oid)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.hex()


def _key_of(cert: x509.Certificate) -> tuple[str, int | None]:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return "unknown", None  # e.g. GOST keys or explicit EC parameters: keep the certificate
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size
    return "unknown", None


# For EC and EdDSA keys the SPKI's AlgorithmIdentifier (algorithm + named curve) fixes type
# and size, so skip building the key object (EC point validation costs ~6 us a certificate).
_ALGORITHM_DETERMINES_SIZE = frozenset({"EC", "Ed25519", "Ed448"})
_key_cache: dict[bytes, tuple[str, int | None]] = {}


def _key(cert: x509.Certificate, spki: bytes) -> tuple[str, int | None]:
    _, start, _ = _element(spki, 0, "subjectPublicKeyInfo")
    _, _, end = _element(spki, start, "subjectPublicKeyInfo algorithm")
    algorithm = spki[start:end]
    hit = _key_cache.get(algorithm)
    if hit is not None:
        return hit
    key = _key_of(cert)
    if key[0] in _ALGORITHM_DETERMINES_SIZE and len(_key_cache) < 64:
        _key_cache[algorithm] = key
    return key


def _signature_algorithm(cert: x509.Certificate) -> str:
    oid = cert.signature_algorithm_oid
    name = oid._name  # no public accessor; "Unknown OID" for unregistered ones
    return oid.dotted_string if name == "Unknown OID" else name


# Issuers repeat in nearly every entry of a log, and rendering a Name is one of the most
# expensive accessors, so cache the rendered strings by the issuer's raw DER.
_issuer_cache: dict[bytes, tuple[str, str | None, str | None]] = {}


def _issuer_strings(raw_issuer: bytes, cert: x509.Certificate) -> tuple[str, str | None, str | None]:
    hit = _issuer_cache.get(raw_issuer)
    if hit is None:
        issuer = cert.issuer
        hit = (issuer.rfc4514_string(), _first(issuer, NameOID.COMMON_NAME), _first(issuer, NameOID.ORGANIZATION_NAME))
        if len(_issuer_cache) >= _ISSUER_CACHE_MAX:
            _issuer_cache.clear()
        _issuer_cache[raw_issuer] = hit
    return hit


def _fields(cert: x509.Certificate, parts: TbsParts) -> tuple[CertFields, bool]:
    """The fields, and whether the certificate carries an SCT list extension."""
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    is_ca: bool | None = None
    has_sct_list = False
    for ext in cert.extensions:
        oid = ext.oid
        if oid == _SAN:
            san = ext.value
            dns_names = tuple(san.get_values_for_type(x509.DNSName))
            ip_addresses = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
        elif oid == _BASIC_CONSTRAINTS:
            is_ca = ext.value.ca
        elif oid == SCT_LIST_OID:
            has_sct_list = True
    subject = cert.subject
    issuer, issuer_cn, issuer_org = _issuer_strings(parts.issuer, cert)
    key_type, key_bits = _key(cert, parts.spki)
    fields = CertFields(
        serial=format_serial(parts.serial),
        subject=subject.rfc4514_string(),
        subject_cn=_first(subject, NameOID.COMMON_NAME),
        issuer=issuer,
        issuer_cn=issuer_cn,
        issuer_org=issuer_org,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        is_ca=is_ca,
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=_signature_algorithm(cert),
    )
    return fields, has_sct_list


def _guard(exc: Exception, what: str) -> CertError:
    if isinstance(exc, CertError):
        return CertError(f"cannot decode {what}: {exc}")
    return CertError(f"cannot decode {what}: {type(exc).__name__}: {exc}")


def cert_fields_and_tbs_sha256(der: bytes) -> tuple[CertFields, str]:
    """`cert_fields(der)` and `tbs_sha256_of_certificate` of it, from a single parse."""
    try:
        tbs_der = certificate_tbs(der)
        with _QuietSerialWarnings():
            cert = x509.load_der_x509_certificate(der)
            fields, has_sct_list = _fields(cert, split_tbs(tbs_der))
        # Without an SCT list the precert TBS is the TBS itself: hash the bytes we have
        # instead of asking cryptography to re-encode them.
        tbs = cert.tbs_precertificate_bytes if has_sct_list else tbs_der
    except Exception as exc:  # cryptography raises ValueError, TypeError, UnicodeError...
        raise _guard(exc, "certificate") from None
    return fields, hashlib.sha256(tbs).hexdigest()


def cert_fields(der: bytes) -> CertFields:
    """Fields of a DER certificate; CertError if any part of it cannot be decoded."""
    return cert_fields_and_tbs_sha256(der)[0]


def tbs_fields(tbs_der: bytes) -> CertFields:
    """Fields of a precert entry's bare TBSCertificate (loaded through `wrap_tbs`)."""
    try:
        parts = split_tbs(tbs_der)
        with _QuietSerialWarnings():
            return _fields(x509.load_der_x509_certificate(wrap_tbs(tbs_der, parts)), parts)[0]
    except Exception as exc:
        raise _guard(exc, "precert TBSCertificate") from None


def tbs_sha256_of_certificate(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the TBS without the embedded-SCT extension.

    Equals SHA-256 of the matching precert entry's tbs_der, so a precertificate and its
    final certificate share this value. Certificates without an SCT list hash their TBS.
    """
    try:
        tbs = cert.tbs_precertificate_bytes
    except ValueError:  # no SCT list extension
        tbs = cert.tbs_certificate_bytes
    return hashlib.sha256(tbs).hexdigest()


def is_precert_signing_certificate(cert: x509.Certificate) -> bool:
    """True when the certificate carries the CT Precertificate Signing EKU (RFC 6962 §3.1)."""
    try:
        with _QuietSerialWarnings():
            eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        return False
    except Exception as exc:  # lazily rejected extensions
        raise _guard(exc, "certificate extensions") from None
    return PRECERT_SIGNING_EKU in eku
