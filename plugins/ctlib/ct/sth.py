"""Signed tree heads: RFC 6962 get-sth bodies and static-ct-api checkpoints.

Both sign the same thing, an RFC 6962 3.5 TreeHeadSignature over (timestamp, size,
root), as a TLS DigitallySigned (ECDSA P-256 or RSA PKCS#1 v1.5, both with SHA-256).
A checkpoint is a C2SP signed note whose RFC 6962 note signature carries that
timestamp and DigitallySigned after a 4-byte key ID.

Malformed input raises TreeHeadFormatError; a tree head that does not verify
raises SignatureError. Both are ValueErrors. The verify_* functions raise only
SignatureError, whatever is wrong, so callers have one thing to catch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

__all__ = [
    "HASH_SHA256",
    "SIG_ECDSA",
    "SIG_RSA",
    "Checkpoint",
    "DigitallySigned",
    "NoteSignature",
    "SignatureError",
    "SignedCheckpoint",
    "SignedTreeHead",
    "TreeHeadFormatError",
    "parse_checkpoint",
    "rfc6962_note_key_id",
    "sign_checkpoint",
    "sign_sth",
    "tree_head_signature_input",
    "verify_checkpoint",
    "verify_sth",
]

_U64 = 1 << 64

# TLS 1.2 HashAlgorithm / SignatureAlgorithm codes (RFC 5246 7.4.1.4.1).
HASH_SHA256 = 4
SIG_RSA = 1
SIG_ECDSA = 3

_NOTE_SIG_PREFIX = "\u2014 "  # em dash and space, per C2SP signed-note
_RFC6962_NOTE_TYPE = b"\x05"


class SignatureError(ValueError):
    """A tree head's signature is missing, malformed, made with the wrong algorithm,
    or does not verify under the given key."""


class TreeHeadFormatError(ValueError):
    """A get-sth body or checkpoint note is malformed; the message says which field and why."""


def _public_key_spki_der(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_u64(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TreeHeadFormatError(f"{what} must be an integer, got {type(value).__name__}")
    if not 0 <= value < _U64:
        raise TreeHeadFormatError(f"{what} {value} is not in [0, 2^64)")
    return value


def _check_root(root_hash: Any) -> bytes:
    if isinstance(root_hash, (bytearray, memoryview)):
        root_hash = bytes(root_hash)
    if not isinstance(root_hash, bytes) or len(root_hash) != 32:
        got = len(root_hash) if isinstance(root_hash, (bytes, bytearray)) else type(root_hash).__name__
        raise TreeHeadFormatError(f"root hash must be 32 bytes, got {got}")
    return root_hash


def _b64decode(what: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise TreeHeadFormatError(f"{what} must be a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TreeHeadFormatError(f"{what} is not valid base64: {value[:60]!r}") from None


# --------------------------------------------------------------------------- DigitallySigned


@dataclass(frozen=True, slots=True)
class DigitallySigned:
    """TLS `DigitallySigned`: hash algorithm, signature algorithm, opaque signature<0..2^16-1>."""

    hash_alg: int
    sig_alg: int
    signature: bytes

    @classmethod
    def parse(cls, data: bytes) -> DigitallySigned:
        """Raises SignatureError if and only if `data` is not exactly one DigitallySigned."""
        if len(data) < 4:
            raise SignatureError(f"DigitallySigned is truncated: {len(data)} bytes")
        hash_alg, sig_alg, length = struct.unpack_from(">BBH", data)
        if len(data) != 4 + length:
            raise SignatureError(
                f"DigitallySigned declares a {length}-byte signature but carries {len(data) - 4}"
            )
        return cls(hash_alg, sig_alg, bytes(data[4:]))

    def encode(self) -> bytes:
        if len(self.signature) >= 1 << 16:
            raise SignatureError(f"signature of {len(self.signature)} bytes does not fit")
        return struct.pack(">BBH", self.hash_alg, self.sig_alg, len(self.signature)) + self.signature


def _load_public_key(public_key_der: bytes) -> Any:
    try:
        key = serialization.load_der_public_key(public_key_der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise SignatureError(f"cannot load the log's public key: {err}") from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise SignatureError(f"log key is on curve {key.curve.name}; CT uses P-256")
    elif not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError(f"log key type {type(key).__name__} is not ECDSA or RSA")
    return key


def _verify_digitally_signed(key: Any, signed: bytes, message: bytes, what: str) -> None:
    """Check a DigitallySigned over `message`. `what` names the tree head in errors."""
    try:
        ds = DigitallySigned.parse(signed)
    except SignatureError as err:
        raise SignatureError(f"{what}: {err}") from None
    if ds.hash_alg != HASH_SHA256:
        raise SignatureError(f"{what}: hash algorithm {ds.hash_alg} is not SHA-256 ({HASH_SHA256})")
    want_alg = SIG_ECDSA if isinstance(key, ec.EllipticCurvePublicKey) else SIG_RSA
    if ds.sig_alg != want_alg:
        raise SignatureError(
            f"{what}: signature algorithm {ds.sig_alg} does not match the "
            f"{'ECDSA' if want_alg == SIG_ECDSA else 'RSA'} key ({want_alg})"
        )
    try:
        if want_alg == SIG_ECDSA:
            key.verify(ds.signature, message, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(ds.signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        raise SignatureError(f"{what}: signature does not verify") from None


def _digitally_sign(private_key: Any, message: bytes) -> bytes:
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        sig = private_key.sign(message, ec.ECDSA(hashes.SHA256()))
        return DigitallySigned(HASH_SHA256, SIG_ECDSA, sig).encode()
    if isinstance(private_key, rsa.RSAPrivateKey):
        sig = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return DigitallySigned(HASH_SHA256, SIG_RSA, sig).encode()
    raise TypeError(f"cannot sign with a {type(private_key).__name__}; need an EC or RSA private key")


# --------------------------------------------------------------------------- get-sth


def tree_head_signature_input(tree_size: int, timestamp: int, root_hash: bytes) -> bytes:
    """The RFC 6962 3.5 TreeHeadSignature bytes that a log signs:
    version v1 (0), signature_type tree_hash (1), uint64 timestamp, uint64 tree_size, root."""
    _check_u64("tree_size", tree_size)
    _check_u64("timestamp", timestamp)
    return struct.pack(">BBQQ", 0, 1, timestamp, tree_size) + _check_root(root_hash)


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """An RFC 6962 get-sth answer. `signature` is the TLS DigitallySigned bytes, unparsed
    (so a syntactically bad signature reaches verify_sth and fails there).

    Construction raises TreeHeadFormatError if and only if tree_size or timestamp
    is not in [0, 2^64) or root_hash is not 32 bytes.
    """

    tree_size: int
    timestamp: int  # milliseconds since the epoch
    root_hash: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_u64("tree_size", self.tree_size)
        _check_u64("timestamp", self.timestamp)
        object.__setattr__(self, "root_hash", _check_root(self.root_hash))
        if not isinstance(self.signature, bytes):
            raise TreeHeadFormatError("signature must be bytes")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SignedTreeHead:
        """Parse a get-sth JSON body (already decoded from JSON). Unknown fields are ignored.
        Raises TreeHeadFormatError if and only if a field is missing or malformed."""
        if not isinstance(obj, Mapping):
            raise TreeHeadFormatError(f"get-sth body must be a JSON object, got {type(obj).__name__}")
        fields = ("tree_size", "timestamp", "sha256_root_hash", "tree_head_signature")
        missing = [f for f in fields if f not in obj]
        if missing:
            raise TreeHeadFormatError(f"get-sth body lacks {', '.join(missing)}")
        root = _b64decode("sha256_root_hash", obj["sha256_root_hash"])
        if len(root) != 32:
            raise TreeHeadFormatError(f"sha256_root_hash is {len(root)} bytes, want 32")
        return cls(
            tree_size=_check_u64("tree_size", obj["tree_size"]),
            timestamp=_check_u64("timestamp", obj["timestamp"]),
            root_hash=root,
            signature=_b64decode("tree_head_signature", obj["tree_head_signature"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The get-sth JSON body."""
        return {
            "tree_size": self.tree_size,
            "timestamp": self.timestamp,
            "sha256_root_hash": base64.b64encode(self.root_hash).decode("ascii"),
            "tree_head_signature": base64.b64encode(self.signature).decode("ascii"),
        }

    def describe(self) -> str:
        return f"STH size {self.tree_size} timestamp {self.timestamp}"


def verify_sth(sth: SignedTreeHead, public_key_der: bytes) -> None:
    """Check the STH's signature with the log's DER SubjectPublicKeyInfo.

    Returns None if it verifies. Raises SignatureError (naming the size and
    timestamp) if and only if it does not: unloadable or unsupported key,
    malformed DigitallySigned, hash other than SHA-256, signature algorithm not
    matching the key type, or a signature that does not verify.
    """
    what = sth.describe()
    try:
        key = _load_public_key(public_key_der)
    except SignatureError as err:
        raise SignatureError(f"{what}: {err}") from None
    message = tree_head_signature_input(sth.tree_size, sth.timestamp, sth.root_hash)
    _verify_digitally_signed(key, sth.signature, message, what)


def sign_sth(tree_size: int, timestamp: int, root_hash: bytes, private_key: Any) -> SignedTreeHead:
    """Sign a tree head, as the local test log does. `private_key` is a `cryptography`
    EC P-256 (ECDSA) or RSA (PKCS#1 v1.5) private key; SHA-256 either way."""
    message = tree_head_signature_input(tree_size, timestamp, root_hash)
    return SignedTreeHead(tree_size, timestamp, _check_root(root_hash), _digitally_sign(private_key, message))


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A static-ct-api checkpoint (C2SP tlog-checkpoint body). `timestamp` (ms) comes from
    the verified RFC 6962 note signature; it is None for a checkpoint only parsed."""

    origin: str
    tree_size: int
    root_hash: bytes
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a signed note: `— name base64(key_id || signature)`."""

    name: str
    key_id: bytes  # 4 bytes
    signature: bytes  # what follows the key ID; for RFC 6962 notes: uint64 timestamp || DigitallySigned


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A parsed, not yet verified, checkpoint note."""

    checkpoint: Checkpoint  # timestamp is None
    extensions: tuple[str, ...]  # body lines after the root hash
    body: bytes  # the signed text, through its final newline
    signatures: tuple[NoteSignature, ...]


_SIZE_RE = re.compile(r"(0|[1-9][0-9]*)")
_BAD_NAME_RE = re.compile(r"[\s+]")


def parse_checkpoint(text: bytes) -> SignedCheckpoint:
    """Parse a C2SP signed note holding a tlog checkpoint, without checking signatures.

    Raises TreeHeadFormatError if and only if: the note is not UTF-8, holds control
    characters other than newline, does not end in a newline, has no blank line
    before the signatures, has no signature or a malformed signature line (not
    `— name base64`, a name with spaces or '+', or fewer than 4 decoded bytes);
    or the body lacks origin, size or root lines, the size is not a canonical
    decimal in [0, 2^64), the root is not base64 of 32 bytes, or an extension line is empty.
    """
    try:
        note = bytes(text).decode("utf-8")
    except UnicodeDecodeError as err:
        raise TreeHeadFormatError(f"checkpoint note is not UTF-8: {err}") from None
    if any(c != "\n" and (ord(c) < 0x20 or ord(c) == 0x7F) for c in note):
        raise TreeHeadFormatError("checkpoint note contains a control character other than newline")
    if not note.endswith("\n"):
        raise TreeHeadFormatError("checkpoint note does not end with a newline")
    split = note.rfind("\n\n")
    if split == -1:
        raise TreeHeadFormatError("checkpoint note has no blank line before its signatures")
    body, sig_block = note[: split + 1], note[split + 2 :]

    signatures = []
    for n, line in enumerate(sig_block.split("\n")[:-1], start=1):
        if not line.startswith(_NOTE_SIG_PREFIX):
            raise TreeHeadFormatError(f"signature line {n} does not start with '— ': {line[:60]!r}")
        parts = line[len(_NOTE_SIG_PREFIX) :].split(" ")
        if len(parts) != 2 or not parts[0] or _BAD_NAME_RE.search(parts[0]):
            raise TreeHeadFormatError(f"signature line {n} is not '— name base64': {line[:60]!r}")
        raw = _b64decode(f"signature line {n}", parts[1])
        if len(raw) < 4:
            raise TreeHeadFormatError(f"signature line {n} is {len(raw)} bytes, shorter than a key ID")
        signatures.append(NoteSignature(parts[0], raw[:4], raw[4:]))
    if not signatures:
        raise TreeHeadFormatError("checkpoint note has no signature lines")

    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise TreeHeadFormatError(f"checkpoint body has {len(lines)} lines, want origin, size and root")
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise TreeHeadFormatError("checkpoint origin line is empty")
    if not _SIZE_RE.fullmatch(size_line) or int(size_line) >= _U64:
        raise TreeHeadFormatError(f"checkpoint size line is not a decimal uint64: {size_line[:30]!r}")
    root = _b64decode("checkpoint root hash line", root_line)
    if len(root) != 32:
        raise TreeHeadFormatError(f"checkpoint root hash is {len(root)} bytes, want 32")
    if any(not ext for ext in extensions):
        raise TreeHeadFormatError("checkpoint has an empty extension line")
    return SignedCheckpoint(
        checkpoint=Checkpoint(origin, int(size_line), root),
        extensions=tuple(extensions),
        body=body.encode("utf-8"),
        signatures=tuple(signatures),
    )


def rfc6962_note_key_id(origin: str, log_id: bytes) -> bytes:
    """The key ID of an RFC 6962 note verifier: SHA-256(origin || "\\n" || 0x05 || log_id)[:4],
    where log_id is SHA-256 of the log's DER SubjectPublicKeyInfo."""
    return hashlib.sha256(origin.encode("utf-8") + b"\n" + _RFC6962_NOTE_TYPE + log_id).digest()[:4]


def verify_checkpoint(text: bytes, origin: str, public_key_der: bytes) -> Checkpoint:
    """Verify a static-ct-api checkpoint note signed by the log `origin` with this key.

    Returns the checkpoint, with the timestamp of its signature. Raises
    SignatureError if and only if: the note is malformed; its origin line is not
    `origin`; it has extension lines (forbidden by static-ct-api because the
    signature does not cover them); the key cannot be loaded; no signature line carries name `origin`
    and this key's RFC 6962 key ID, or more than one does; or that signature is
    not key ID || uint64 timestamp || DigitallySigned that verifies over the
    TreeHeadSignature(timestamp, size, root).

    The signature covers neither the origin line nor the note text: the origin is
    bound only through the key ID and the caller's choice of `origin` and key.
    """
    try:
        parsed = parse_checkpoint(text)
    except TreeHeadFormatError as err:
        raise SignatureError(f"checkpoint for {origin}: {err}") from None
    cp = parsed.checkpoint
    what = f"checkpoint {origin} size {cp.tree_size}"
    if cp.origin != origin:
        raise SignatureError(f"{what}: origin line is {cp.origin!r}")
    if parsed.extensions:
        # The TreeHeadSignature does not cover them, so static-ct-api forbids them.
        raise SignatureError(f"{what}: {len(parsed.extensions)} extension lines in an RFC 6962-signed checkpoint")
    try:
        key = _load_public_key(public_key_der)
    except SignatureError as err:
        raise SignatureError(f"{what}: {err}") from None
    # The log ID is over the canonical DER, whatever encoding the caller passed.
    key_id = rfc6962_note_key_id(origin, hashlib.sha256(_public_key_spki_der(key)).digest())
    mine = [s for s in parsed.signatures if s.name == origin and s.key_id == key_id]
    if not mine:
        raise SignatureError(f"{what}: no signature line by {origin} with key ID {key_id.hex()}")
    if len(mine) > 1:
        raise SignatureError(f"{what}: {len(mine)} signature lines with key ID {key_id.hex()}")
    sig = mine[0].signature
    if len(sig) < 8:
        raise SignatureError(f"{what}: note signature is {len(sig)} bytes, too short for a timestamp")
    (timestamp,) = struct.unpack_from(">Q", sig)
    what = f"{what} timestamp {timestamp}"
    message = tree_head_signature_input(cp.tree_size, timestamp, cp.root_hash)
    _verify_digitally_signed(key, sig[8:], message, what)
    return Checkpoint(cp.origin, cp.tree_size, cp.root_hash, timestamp)


def sign_checkpoint(origin: str, tree_size: int, root_hash: bytes, timestamp: int, private_key: Any) -> bytes:
    """A checkpoint note signed with an RFC 6962 note signature, as a static-ct-api log
    serves at /checkpoint. `private_key` as for sign_sth."""
    if not origin or _BAD_NAME_RE.search(origin) or "\n" in origin:
        raise TreeHeadFormatError(f"origin {origin!r} cannot name a note signer")
    message = tree_head_signature_input(tree_size, timestamp, root_hash)
    log_id = hashlib.sha256(_public_key_spki_der(private_key.public_key())).digest()
    raw = (
        rfc6962_note_key_id(origin, log_id)
        + struct.pack(">Q", timestamp)
        + _digitally_sign(private_key, message)
    )
    body = f"{origin}\n{tree_size}\n{base64.b64encode(_check_root(root_hash)).decode('ascii')}\n"
    signature_line = f"{_NOTE_SIG_PREFIX}{origin} {base64.b64encode(raw).decode('ascii')}\n"
    return (body + "\n" + signature_line).encode("utf-8")
