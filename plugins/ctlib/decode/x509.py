"""Certificate fields for the certs table, extracted with `cryptography`.

Contract: every public decoding function either returns a complete result or raises
`CertError` (a ValueError) saying what failed. cryptography validates some parts lazily
(a bad extension raises only when `.extensions` is read), so all accessors run inside
one guard.

The only hand-rolled DER here is minimal: reading element headers to find the TBS
fields cryptography does not expose as raw bytes (serial, signature algorithm, issuer,
SPKI and its algorithm), wrapping a bare TBSCertificate as a Certificate so cryptography can
load it, and reading the two extensions the certs table needs (subjectAltName's dNSName and
iPAddress, basicConstraints' cA) plus the presence of an SCT list straight from the
extension TLVs: `cert.extensions` builds a Python object for every extension, ~40 us a
certificate, most of the cost of decoding an entry. Extensions the table does not use are
not validated (a certificate with, say, a malformed keyUsage still gets its row); a
malformed subjectAltName or basicConstraints, or a repeated extension, is a CertError.
"""

from __future__ import annotations

import hashlib
import ipaddress
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

_SEQUENCE, _INTEGER, _BOOLEAN, _OID, _OCTET_STRING, _VERSION_TAG = 0x30, 0x02, 0x01, 0x06, 0x04, 0xA0
_EXTENSIONS_TAG = 0xA3
_UNIQUE_ID_TAGS = frozenset({0x81, 0xA1, 0x82, 0xA2})  # [1] issuerUniqueID, [2] subjectUniqueID
_DNS_NAME, _IP_ADDRESS = 0x82, 0x87  # GeneralName [2] IA5String, [7] OCTET STRING (implicit)
# Extension OIDs as DER content bytes.
_SAN_OID, _BC_OID = b"\x55\x1d\x11", b"\x55\x1d\x13"  # 2.5.29.17, 2.5.29.19
_SCT_LIST_OID = b"\x2b\x06\x01\x04\x01\xd6\x79\x02\x04\x02"  # 1.3.6.1.4.1.11129.2.4.2
_EMPTY_BIT_STRING = b"\x03\x01\x00"
_ISSUER_CACHE_MAX = 4096


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
    extensions: bytes  # content of the Extensions SEQUENCE; empty without [3] extensions
    extensions_at: int  # offset of the [3] extensions field in the TBS (its length without one)


# --- minimal DER ------------------------------------------------------------------------


def _element(data: bytes, pos: int, what: str) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at `pos`; single-byte tags only."""
    if pos + 2 > len(data):
        raise CertError(f"truncated DER {what} at byte {pos}")
    tag, length = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise CertError(f"unsupported multi-byte DER tag in {what} at byte {pos}")
    pos += 2
    if length < 0x80 and pos + length <= len(data):  # the common case, kept short: runs ~30 times a certificate
        return tag, pos, pos + length
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
    return TbsParts(serial, spans[0], spans[1], spans[4], *_extensions_content(tbs_der, stop))


def _extensions_content(tbs_der: bytes, pos: int) -> tuple[bytes, int]:
    """After the SPKI: optional [1] and [2] unique IDs, then optional [3] { SEQUENCE OF Extension }
    as the last field. (Content of that SEQUENCE, offset of [3].)"""
    while pos < len(tbs_der):
        tag, start, end = _element(tbs_der, pos, "TBSCertificate trailing field")
        if tag == _EXTENSIONS_TAG:
            tag, inner, inner_end = _element(tbs_der, start, "extensions")
            if tag != _SEQUENCE or inner_end != end or end != len(tbs_der):
                raise CertError("TBSCertificate extensions are not one SEQUENCE ending the TBS")
            return tbs_der[inner:inner_end], pos
        if tag not in _UNIQUE_ID_TAGS:
            raise CertError(f"unexpected TBSCertificate field with tag 0x{tag:02x}")
        pos = end
    return b"", len(tbs_der)


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


def _children(data: bytes, what: str) -> list[tuple[int, bytes]]:
    """(tag, content) of each DER element of `data`, which they must fill exactly."""
    out, pos = [], 0
    while pos < len(data):
        tag, start, end = _element(data, pos, what)
        out.append((tag, data[start:end]))
        pos = end
    return out


def _sequence(value: bytes, what: str) -> bytes:
    """The content of `value`, which must be exactly one DER SEQUENCE."""
    elements = _children(value, what)
    if len(elements) != 1 or elements[0][0] != _SEQUENCE:
        raise CertError(f"{what} is not one SEQUENCE")
    return elements[0][1]


def _san_values(value: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """dNSName and iPAddress entries of a subjectAltName extnValue (GeneralNames)."""
    names = _sequence(value, "subjectAltName")
    dns: list[str] = []
    ips: list[str] = []
    for tag, content in _children(names, "subjectAltName GeneralName"):
        if tag == _DNS_NAME:
            try:
                dns.append(content.decode("ascii"))
            except UnicodeDecodeError:
                raise CertError("subjectAltName dNSName is not an IA5String") from None
        elif tag == _IP_ADDRESS:
            ips.append(_ip_text(content))
    return tuple(dns), tuple(ips)


def _ip_text(raw: bytes) -> str:
    """An iPAddress GeneralName as cryptography renders it: an address, or for 8 or 32 bytes
    (address and mask, as in name constraints) a network."""
    if len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    if len(raw) in (8, 32):
        half = len(raw) // 2
        mask = int.from_bytes(raw[half:], "big")
        prefix = bin(mask).count("1")
        if mask != ((1 << prefix) - 1) << (half * 8 - prefix):
            raise CertError(f"subjectAltName iPAddress has a non-contiguous mask {raw[half:].hex()}")
        return str(ipaddress.ip_network((raw[:half], prefix), strict=False))
    raise CertError(f"subjectAltName iPAddress of {len(raw)} bytes")


def _is_ca(value: bytes) -> bool:
    """cA of a basicConstraints extnValue: SEQUENCE { BOOLEAN DEFAULT FALSE, INTEGER OPTIONAL }."""
    fields = _children(_sequence(value, "basicConstraints"), "basicConstraints field")
    if fields and fields[0][0] == _BOOLEAN:
        if len(fields[0][1]) != 1:
            raise CertError("basicConstraints cA is not a one-byte BOOLEAN")
        return fields[0][1] != b"\x00"
    if (fields and fields[0][0] != _INTEGER) or len(fields) > 1:
        raise CertError("basicConstraints holds something other than cA and pathLenConstraint")
    return False


@dataclass(frozen=True, slots=True)
class _ExtensionFields:
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    is_ca: bool | None = None  # None without basicConstraints
    sct_list_span: tuple[int, int] | None = None  # the SCT list extension's TLV in TbsParts.extensions


def _extension_fields(extensions: bytes) -> _ExtensionFields:
    """What the certs table needs from the extensions (TbsParts.extensions). Only the OID of
    each extension is read, unless it is one of the three wanted: this runs for every entry."""
    seen: set[bytes] = set()
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    is_ca: bool | None = None
    sct_list_span = None
    pos, size = 0, len(extensions)
    while pos < size:
        tag, start, end = _element(extensions, pos, "extension")
        # The OID's header read inline (an extension OID is short): two bytes, tag and length.
        if tag != _SEQUENCE or end - start < 2 or extensions[start] != _OID or extensions[start + 1] >= 0x80:
            raise CertError("an extension is not SEQUENCE { OID, [critical,] OCTET STRING }")
        oid_start, oid_end = start + 2, start + 2 + extensions[start + 1]
        if oid_end > end:
            raise CertError("an extension is not SEQUENCE { OID, [critical,] OCTET STRING }")
        oid = extensions[oid_start:oid_end]
        if oid in seen:
            raise CertError(f"extension with OID bytes {oid.hex()} appears twice")
        seen.add(oid)
        if oid == _SCT_LIST_OID:
            sct_list_span = (pos, end)
        elif oid == _SAN_OID:
            dns, ips = _san_values(_extension_value(extensions[oid_end:end]))
        elif oid == _BC_OID:
            is_ca = _is_ca(_extension_value(extensions[oid_end:end]))
        pos = end
    return _ExtensionFields(dns, ips, is_ca, sct_list_span)


def _extension_value(rest: bytes) -> bytes:
    """extnValue's content from what follows an extension's OID: [critical BOOLEAN,] OCTET STRING."""
    parts = _children(rest, "extension field")
    if len(parts) == 2 and parts[0][0] == _BOOLEAN:
        parts = parts[1:]
    if len(parts) != 1 or parts[0][0] != _OCTET_STRING:
        raise CertError("an extension is not SEQUENCE { OID, [critical,] OCTET STRING }")
    return parts[0][1]


def _precert_tbs(tbs_der: bytes, parts: TbsParts, sct_list_span: tuple[int, int]) -> bytes:
    """RFC 6962 3.2: the TBS without its SCT list extension, re-encoded (what
    `tbs_precertificate_bytes` gives, without cryptography re-parsing every extension)."""
    start, end = sct_list_span
    rest = parts.extensions[:start] + parts.extensions[end:]
    _, body_start, _ = _element(tbs_der, 0, "TBSCertificate")
    # Kept even when the SCT list was the only extension (an empty SEQUENCE), as cryptography does.
    sequence = b"\x30" + _der_length(len(rest)) + rest
    body = tbs_der[body_start : parts.extensions_at] + bytes((_EXTENSIONS_TAG,)) + _der_length(len(sequence)) + sequence
    return b"\x30" + _der_length(len(body)) + body


def _fields(cert: x509.Certificate, parts: TbsParts) -> tuple[CertFields, tuple[int, int] | None]:
    """The fields, and where the SCT list extension is (None without one)."""
    ext = _extension_fields(parts.extensions)
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
        dns_names=ext.dns_names,
        ip_addresses=ext.ip_addresses,
        is_ca=ext.is_ca,
        key_type=key_type,
        key_bits=key_bits,
        signature_algorithm=_signature_algorithm(cert),
    )
    return fields, ext.sct_list_span


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
            parts = split_tbs(tbs_der)
            fields, sct_list_span = _fields(cert, parts)
        # Without an SCT list the precert TBS is the TBS itself.
        tbs = _precert_tbs(tbs_der, parts, sct_list_span) if sct_list_span else tbs_der
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
    # cryptography always parses the EKU OID into ExtendedKeyUsage (or raises above).
    assert isinstance(eku, x509.ExtendedKeyUsage)
    return PRECERT_SIGNING_EKU in eku
