"""RFC 6962 binary structures: MerkleTreeLeaf, TimestampedEntry and get-entries extra_data.

Parsers are strict: a wrong version, an unknown type, a length running past the end or
bytes left over raise `LeafError` whose message says what is wrong and at which byte.
They never leak IndexError or struct.error. Encoders are the exact inverses, for the
local test CT log and for round-trip tests.

Wire layout (RFC 6962 §3.4, §4.6), all integers big-endian:

    MerkleTreeLeaf   = version(1)=0 | leaf_type(1)=0 | TimestampedEntry
    TimestampedEntry = timestamp(8) | entry_type(2) | signed_entry | extensions<0..2^16-1>
    signed_entry     = x509:    ASN.1Cert<1..2^24-1>
                       precert: issuer_key_hash[32] | TBSCertificate<1..2^24-1>
    extra_data       = x509:    ASN.1Cert certificate_chain<0..2^24-1>
                       precert: ASN.1Cert pre_certificate | ASN.1Cert chain<0..2^24-1>
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

EntryType = Literal["x509", "precert"]

_X509_ENTRY = 0
_PRECERT_ENTRY = 1
_ENTRY_TYPES: dict[int, EntryType] = {_X509_ENTRY: "x509", _PRECERT_ENTRY: "precert"}
_HEADER = struct.Struct(">QH")  # timestamp, entry_type
_U16 = struct.Struct(">H")
_MAX_U24 = (1 << 24) - 1
_MAX_U16 = (1 << 16) - 1
ISSUER_KEY_HASH_LEN = 32


class LeafError(ValueError):
    """A CT binary structure is malformed; the message names the structure and byte offset."""


@dataclass(frozen=True, slots=True)
class MerkleTreeLeaf:
    """One decoded TimestampedEntry. Exactly one of cert_der / tbs_der is set, by entry_type."""

    timestamp_ms: int
    entry_type: EntryType
    cert_der: bytes | None  # x509 entries
    tbs_der: bytes | None  # precert entries: TBSCertificate, poison already removed by the log
    issuer_key_hash: bytes | None  # precert entries: SHA-256 of the issuer's SPKI
    extensions: bytes  # CtExtensions, opaque


@dataclass(frozen=True, slots=True)
class ExtraData:
    """get-entries extra_data. pre_certificate is set only for precert entries."""

    pre_certificate: bytes | None
    chain: tuple[bytes, ...]  # DER certificates, issuer first


def _u24(data: bytes, offset: int, what: str) -> tuple[int, int]:
    end = offset + 3
    if end > len(data):
        raise LeafError(f"truncated {what} length at byte {offset}")
    return int.from_bytes(data[offset:end], "big"), end


def _opaque24(data: bytes, offset: int, what: str, *, min_len: int = 0) -> tuple[bytes, int]:
    """Read a <min_len..2^24-1> vector; return its body and the offset after it."""
    length, start = _u24(data, offset, what)
    if length < min_len:
        raise LeafError(f"empty {what} at byte {offset}")
    end = start + length
    if end > len(data):
        raise LeafError(
            f"truncated {what} at byte {start}: length {length}, {len(data) - start} bytes left"
        )
    return data[start:end], end


def parse_timestamped_entry(data: bytes, offset: int = 0) -> tuple[MerkleTreeLeaf, int]:
    """Parse a TimestampedEntry starting at `offset`; return it and the offset just past it.

    Trailing bytes are the caller's business (a static-ct-api TileLeaf continues after it).
    """
    data = bytes(data)
    if offset + _HEADER.size > len(data):
        raise LeafError(f"truncated TimestampedEntry at byte {offset}")
    timestamp_ms, raw_type = _HEADER.unpack_from(data, offset)
    entry_type = _ENTRY_TYPES.get(raw_type)
    if entry_type is None:
        raise LeafError(f"unknown LogEntryType {raw_type} at byte {offset + 8}")
    pos = offset + _HEADER.size
    cert_der = tbs_der = issuer_key_hash = None
    if entry_type == "x509":
        cert_der, pos = _opaque24(data, pos, "ASN.1Cert", min_len=1)
    else:
        if pos + ISSUER_KEY_HASH_LEN > len(data):
            raise LeafError(f"truncated issuer_key_hash at byte {pos}")
        issuer_key_hash = data[pos : pos + ISSUER_KEY_HASH_LEN]
        pos += ISSUER_KEY_HASH_LEN
        tbs_der, pos = _opaque24(data, pos, "TBSCertificate", min_len=1)
    if pos + 2 > len(data):
        raise LeafError(f"truncated CtExtensions length at byte {pos}")
    (ext_len,) = _U16.unpack_from(data, pos)
    pos += 2
    if pos + ext_len > len(data):
        raise LeafError(f"truncated CtExtensions at byte {pos}: length {ext_len}, {len(data) - pos} bytes left")
    extensions = data[pos : pos + ext_len]
    leaf = MerkleTreeLeaf(timestamp_ms, entry_type, cert_der, tbs_der, issuer_key_hash, extensions)
    return leaf, pos + ext_len


# Fast paths: one struct.unpack_from of the fixed-size head and slices, for input that is
# well-formed in every respect; anything else goes to the step-by-step parsers, which say
# what is wrong (so results and errors are theirs, the fast paths only skip work).
_X509_HEAD = struct.Struct(">BBQHBH")  # version, leaf_type, timestamp, entry_type=0, ASN.1Cert length (u24)
_PRECERT_HEAD = struct.Struct(">BBQH32sBH")  # ... entry_type=1, issuer_key_hash, TBSCertificate length (u24)
_U24 = struct.Struct(">BH")


def _body_and_extensions(data: bytes, start: int, length: int) -> tuple[bytes, bytes] | None:
    """(the non-empty body of `length` bytes at `start`, the u16-framed extensions that end
    `data` exactly), or None when the framing does not fit (the strict parser says why)."""
    end = start + length
    if end == start or end + 2 > len(data):
        return None
    (ext_len,) = _U16.unpack_from(data, end)
    if end + 2 + ext_len != len(data):
        return None
    return data[start:end], data[end + 2 :]


def _fast_leaf(data: bytes) -> MerkleTreeLeaf | None:
    size = len(data)
    if size < _X509_HEAD.size + 1 + 2 or data[0] or data[1]:
        return None
    entry_type = data[11]
    if entry_type == _X509_ENTRY and not data[10]:
        _, _, timestamp_ms, _, high, low = _X509_HEAD.unpack_from(data)
        parts = _body_and_extensions(data, _X509_HEAD.size, high << 16 | low)
        return MerkleTreeLeaf(timestamp_ms, "x509", parts[0], None, None, parts[1]) if parts else None
    if entry_type == _PRECERT_ENTRY and not data[10] and size >= _PRECERT_HEAD.size + 1 + 2:
        _, _, timestamp_ms, _, issuer_key_hash, high, low = _PRECERT_HEAD.unpack_from(data)
        parts = _body_and_extensions(data, _PRECERT_HEAD.size, high << 16 | low)
        return MerkleTreeLeaf(timestamp_ms, "precert", None, parts[0], issuer_key_hash, parts[1]) if parts else None
    return None


def _fast_chain(data: bytes, pos: int) -> tuple[bytes, ...] | None:
    """The certificates of a chain<0..2^24-1> at `pos` that ends `data` exactly, else None."""
    size = len(data)
    if pos + 3 > size:
        return None
    high, low = _U24.unpack_from(data, pos)
    pos += 3
    if pos + (high << 16 | low) != size:
        return None
    certs = []
    while pos < size:
        if pos + 3 > size:
            return None
        high, low = _U24.unpack_from(data, pos)
        start = pos + 3
        pos = start + (high << 16 | low)
        if pos == start or pos > size:
            return None
        certs.append(data[start:pos])
    return tuple(certs)


def parse_merkle_tree_leaf(leaf_input: bytes) -> MerkleTreeLeaf:
    """Parse a get-entries leaf_input (version 0, timestamped_entry); reject trailing bytes."""
    if type(leaf_input) is bytes:
        leaf = _fast_leaf(leaf_input)
        if leaf is not None:
            return leaf
    return _parse_merkle_tree_leaf_strict(leaf_input)


def _parse_merkle_tree_leaf_strict(leaf_input: bytes) -> MerkleTreeLeaf:
    if len(leaf_input) < 2:
        raise LeafError(f"truncated MerkleTreeLeaf header: {len(leaf_input)} bytes")
    if leaf_input[0] != 0:
        raise LeafError(f"unsupported MerkleTreeLeaf version {leaf_input[0]} at byte 0")
    if leaf_input[1] != 0:
        raise LeafError(f"unknown MerkleLeafType {leaf_input[1]} at byte 1")
    leaf, end = parse_timestamped_entry(leaf_input, 2)
    if end != len(leaf_input):
        raise LeafError(f"{len(leaf_input) - end} trailing bytes after MerkleTreeLeaf at byte {end}")
    return leaf


def _parse_chain(data: bytes, offset: int, what: str) -> tuple[tuple[bytes, ...], int]:
    body, end = _opaque24(data, offset, what)
    certs: list[bytes] = []
    pos = 0
    while pos < len(body):
        try:
            cert, pos = _opaque24(body, pos, "chain certificate", min_len=1)
        except LeafError as exc:
            raise LeafError(f"{exc} (inside {what} starting at byte {offset + 3})") from None
        certs.append(cert)
    return tuple(certs), end


def parse_extra_data(entry_type: EntryType, extra_data: bytes) -> ExtraData:
    """Parse get-entries extra_data for an entry of `entry_type`; reject trailing bytes."""
    data = bytes(extra_data)
    if entry_type == "x509":
        chain = _fast_chain(data, 0)
        if chain is not None:
            return ExtraData(None, chain)
    elif entry_type == "precert" and len(data) >= 3:
        high, low = _U24.unpack_from(data, 0)
        end = 3 + (high << 16 | low)
        chain = _fast_chain(data, end) if end > 3 else None
        if chain is not None:
            return ExtraData(data[3:end], chain)
    return _parse_extra_data_strict(entry_type, data)


def _parse_extra_data_strict(entry_type: EntryType, data: bytes) -> ExtraData:
    if entry_type == "x509":
        pre_certificate = None
        chain, end = _parse_chain(data, 0, "certificate_chain")
    elif entry_type == "precert":
        pre_certificate, pos = _opaque24(data, 0, "pre_certificate", min_len=1)
        chain, end = _parse_chain(data, pos, "precertificate_chain")
    else:
        raise LeafError(f"unknown entry type {entry_type!r}")
    if end != len(data):
        raise LeafError(f"{len(data) - end} trailing bytes after extra_data at byte {end}")
    return ExtraData(pre_certificate, chain)


# --- encoders -------------------------------------------------------------------------


def _vec24(body: bytes, what: str) -> bytes:
    if len(body) > _MAX_U24:
        raise LeafError(f"{what} too long: {len(body)} bytes")
    return len(body).to_bytes(3, "big") + body


def _vec16(body: bytes, what: str) -> bytes:
    if len(body) > _MAX_U16:
        raise LeafError(f"{what} too long: {len(body)} bytes")
    return _U16.pack(len(body)) + body


def _leaf(timestamp_ms: int, entry_type: int, signed_entry: bytes, extensions: bytes) -> bytes:
    if not 0 <= timestamp_ms < 1 << 64:
        raise LeafError(f"timestamp {timestamp_ms} does not fit in uint64")
    return b"\x00\x00" + _HEADER.pack(timestamp_ms, entry_type) + signed_entry + _vec16(extensions, "CtExtensions")


def encode_x509_leaf(timestamp_ms: int, cert_der: bytes, extensions: bytes = b"") -> bytes:
    """MerkleTreeLeaf bytes (a get-entries leaf_input) for an X.509 entry."""
    if not cert_der:
        raise LeafError("empty ASN.1Cert")
    return _leaf(timestamp_ms, _X509_ENTRY, _vec24(cert_der, "ASN.1Cert"), extensions)


def encode_precert_leaf(
    timestamp_ms: int, issuer_key_hash: bytes, tbs_der: bytes, extensions: bytes = b""
) -> bytes:
    """MerkleTreeLeaf bytes for a precert entry (tbs_der already without the poison extension)."""
    if len(issuer_key_hash) != ISSUER_KEY_HASH_LEN:
        raise LeafError(f"issuer_key_hash must be 32 bytes, got {len(issuer_key_hash)}")
    if not tbs_der:
        raise LeafError("empty TBSCertificate")
    signed = issuer_key_hash + _vec24(tbs_der, "TBSCertificate")
    return _leaf(timestamp_ms, _PRECERT_ENTRY, signed, extensions)


def _chain(chain: Sequence[bytes], what: str) -> bytes:
    return _vec24(b"".join(_vec24(c, "chain certificate") for c in chain), what)


def encode_x509_chain(chain: Sequence[bytes]) -> bytes:
    """extra_data of an x509 entry: the certificate_chain, issuer first."""
    return _chain(chain, "certificate_chain")


def encode_precert_chain_entry(pre_certificate: bytes, chain: Sequence[bytes]) -> bytes:
    """extra_data of a precert entry: PrecertChainEntry(pre_certificate, precertificate_chain)."""
    if not pre_certificate:
        raise LeafError("empty pre_certificate")
    return _vec24(pre_certificate, "pre_certificate") + _chain(chain, "precertificate_chain")
