"""ctlib.ct.sth against real signed tree heads (Pilot, Icarus, Argon2024), real checkpoints
(Rome 2024h1, Sycamore 2024h2) and fresh keys."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ctlib.ct.sth import (
    Checkpoint,
    DigitallySigned,
    SignatureError,
    SignedTreeHead,
    TreeHeadFormatError,
    parse_checkpoint,
    rfc6962_note_key_id,
    sign_checkpoint,
    sign_sth,
    tree_head_signature_input,
    verify_checkpoint,
    verify_sth,
)
from tests.paths import CTDATA

RFC6962 = CTDATA / "rfc6962"
STATIC = CTDATA / "static-ct"
ALL_LOGS = CTDATA / "loglist" / "google_all_logs_list_v3_v53.34_2025-05-05.json"

# (file, log description in the all-logs list), per SOURCES.md section 2.
REAL_STHS = [
    ("pilot_get-sth_size3721782.json", "Google 'Pilot' log"),
    ("pilot_get-sth_size4301837.json", "Google 'Pilot' log"),
    ("argon2024_get-sth_size1267285836.json", "Google 'Argon2024' log"),
    ("icarus_get-sth_size129596132.json", "Google 'Icarus' log"),
    ("icarus_get-sth_size129721434.json", "Google 'Icarus' log"),
]

ROME_ORIGIN = "rome.ct.filippo.io/2024h1"
ROME_SIZE = 115474666
ROME_ROOT = base64.b64decode("2q1K6aiIJR+F7TyhiWOghoWOjY0/3dVBLsBbAvB4xCw=")
ROME_TIMESTAMP = 1711519390034


def load_json(path: Path):
    return json.loads(path.read_text())


def log_key(description: str) -> bytes:
    """The DER SPKI of a log, checked against its log_id (SHA-256 of the key)."""
    for op in load_json(ALL_LOGS)["operators"]:
        for log in op.get("logs", []) + op.get("tiled_logs", []):
            if log["description"] == description:
                key = base64.b64decode(log["key"])
                assert base64.b64encode(hashlib.sha256(key).digest()).decode() == log["log_id"]
                return key
    raise LookupError(description)


def flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def spki(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def p256_key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --------------------------------------------------------------------------- real STHs


@pytest.mark.parametrize("name,log", REAL_STHS, ids=[n for n, _ in REAL_STHS])
def test_real_sth_verifies(name: str, log: str):
    body = load_json(RFC6962 / name)
    sth = SignedTreeHead.from_json(body)
    assert sth.tree_size == body["tree_size"]
    assert str(sth.tree_size) in name
    assert sth.to_json() == body  # every field round-trips
    verify_sth(sth, log_key(log))


@pytest.mark.parametrize("name,log", REAL_STHS, ids=[n for n, _ in REAL_STHS])
def test_real_sth_any_change_fails(name: str, log: str):
    key = log_key(log)
    sth = SignedTreeHead.from_json(load_json(RFC6962 / name))
    altered = []
    for i in range(32):
        altered.append(SignedTreeHead(sth.tree_size, sth.timestamp, flip(sth.root_hash, i), sth.signature))
    for bit in range(64):
        if sth.tree_size ^ (1 << bit) < 2**64:
            altered.append(SignedTreeHead(sth.tree_size ^ (1 << bit), sth.timestamp, sth.root_hash, sth.signature))
        altered.append(SignedTreeHead(sth.tree_size, sth.timestamp ^ (1 << bit), sth.root_hash, sth.signature))
    for i in range(len(sth.signature)):
        altered.append(SignedTreeHead(sth.tree_size, sth.timestamp, sth.root_hash, flip(sth.signature, i)))
    for bad in altered:
        with pytest.raises(SignatureError):
            verify_sth(bad, key)


def test_real_sth_wrong_log_key_fails():
    sth = SignedTreeHead.from_json(load_json(RFC6962 / "argon2024_get-sth_size1267285836.json"))
    with pytest.raises(SignatureError, match="1267285836"):
        verify_sth(sth, log_key("Google 'Pilot' log"))


def test_fake_signature_sth_is_rejected():
    sth = SignedTreeHead.from_json(load_json(RFC6962 / "pilot_get-sth_size4_FAKE-SIGNATURE.json"))
    assert sth.tree_size == 4
    with pytest.raises(SignatureError, match="size 4"):
        verify_sth(sth, log_key("Google 'Pilot' log"))


def test_signature_input_layout():
    root = bytes(range(32))
    data = tree_head_signature_input(0x0102, 0x0A0B, root)
    assert data == b"\x00\x01" + struct.pack(">Q", 0x0A0B) + struct.pack(">Q", 0x0102) + root
    assert len(data) == 50


# --------------------------------------------------------------------------- from_json errors


def test_from_json_errors():
    good = load_json(RFC6962 / "pilot_get-sth_size3721782.json")
    cases = {
        "missing": ({k: v for k, v in good.items() if k != "timestamp"}, "timestamp"),
        "bad base64 root": ({**good, "sha256_root_hash": "not*base64"}, "sha256_root_hash"),
        "short root": ({**good, "sha256_root_hash": base64.b64encode(b"x" * 31).decode()}, "31 bytes"),
        "negative size": ({**good, "tree_size": -1}, "tree_size"),
        "string size": ({**good, "tree_size": "3721782"}, "tree_size"),
        "bool timestamp": ({**good, "timestamp": True}, "timestamp"),
        "huge timestamp": ({**good, "timestamp": 2**64}, "timestamp"),
        "bad base64 signature": ({**good, "tree_head_signature": "@@@"}, "tree_head_signature"),
        "not an object": ([good], "object"),
    }
    for label, (body, needle) in cases.items():
        with pytest.raises(TreeHeadFormatError, match=needle):
            SignedTreeHead.from_json(body)
        # Callers that catch ValueError keep working.
        with pytest.raises(ValueError):
            SignedTreeHead.from_json(body)


def test_from_json_ignores_unknown_fields_and_accepts_escaped_slashes():
    raw = (RFC6962 / "pilot_get-sth_size4301837.json").read_text()
    assert "\\/" in raw
    body = json.loads(raw)
    sth = SignedTreeHead.from_json({**body, "extra": 1})
    verify_sth(sth, log_key("Google 'Pilot' log"))


# --------------------------------------------------------------------------- fresh keys


def test_sign_verify_p256_round_trip(p256_key):
    root = hashlib.sha256(b"root").digest()
    sth = sign_sth(1000, 1_700_000_000_000, root, p256_key)
    ds = DigitallySigned.parse(sth.signature)
    assert (ds.hash_alg, ds.sig_alg) == (4, 3)
    verify_sth(sth, spki(p256_key))
    again = SignedTreeHead.from_json(json.loads(json.dumps(sth.to_json())))
    assert again == sth
    verify_sth(again, spki(p256_key))
    with pytest.raises(SignatureError):
        verify_sth(SignedTreeHead(1001, sth.timestamp, root, sth.signature), spki(p256_key))
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError):
        verify_sth(sth, spki(other))


def test_rsa_sth_signed_by_hand_verifies(rsa_key):
    root = hashlib.sha256(b"rsa root").digest()
    message = b"\x00\x01" + struct.pack(">QQ", 1_600_000_000_000, 77) + root
    sig = rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    dsig = struct.pack(">BBH", 4, 1, len(sig)) + sig
    sth = SignedTreeHead(77, 1_600_000_000_000, root, dsig)
    verify_sth(sth, spki(rsa_key))
    assert DigitallySigned.parse(sign_sth(77, 1_600_000_000_000, root, rsa_key).signature).sig_alg == 1
    for i in (0, 1, 2, 3, 4, len(dsig) - 1):
        with pytest.raises(SignatureError):
            verify_sth(SignedTreeHead(77, sth.timestamp, root, flip(dsig, i)), spki(rsa_key))
    with pytest.raises(SignatureError):
        verify_sth(SignedTreeHead(78, sth.timestamp, root, dsig), spki(rsa_key))


def test_malformed_and_mismatched_digitally_signed(p256_key, rsa_key):
    root = bytes(32)
    good = sign_sth(5, 6, root, p256_key)
    ds = DigitallySigned.parse(good.signature)
    key = spki(p256_key)
    bad_signatures = {
        "truncated": good.signature[:3],
        "empty": b"",
        "length too long": good.signature + b"\x00",
        "length too short": good.signature[:-1],
        "rsa algorithm on ec key": DigitallySigned(4, 1, ds.signature).encode(),
        "sha1": DigitallySigned(2, 3, ds.signature).encode(),
        "not DER": DigitallySigned(4, 3, b"\x30\x02\x01").encode(),
    }
    for label, sig in bad_signatures.items():
        with pytest.raises(SignatureError, match="size 5"):
            verify_sth(SignedTreeHead(5, 6, root, sig), key)
    rsa_sth = sign_sth(5, 6, root, rsa_key)
    with pytest.raises(SignatureError, match="does not match"):
        verify_sth(rsa_sth, key)  # RSA signature, EC key
    with pytest.raises(SignatureError, match="does not match"):
        verify_sth(good, spki(rsa_key))  # ECDSA signature, RSA key
    with pytest.raises(SignatureError, match="public key"):
        verify_sth(good, b"not a key")
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(SignatureError, match="P-256"):
        verify_sth(good, spki(p384))


def test_sth_construction_checks():
    with pytest.raises(TreeHeadFormatError):
        SignedTreeHead(-1, 0, bytes(32), b"")
    with pytest.raises(TreeHeadFormatError):
        SignedTreeHead(0, 0, bytes(33), b"")
    with pytest.raises(TreeHeadFormatError):
        tree_head_signature_input(1, 2**64, bytes(32))


# --------------------------------------------------------------------------- checkpoints


def rome_key() -> bytes:
    return base64.b64decode((STATIC / "rome2024h1_pubkey.der.b64").read_text().strip())


def rome_note() -> bytes:
    return (STATIC / "rome2024h1_checkpoint.txt").read_bytes()


def test_rome_checkpoint_verifies():
    cp = verify_checkpoint(rome_note(), ROME_ORIGIN, rome_key())
    assert cp == Checkpoint(ROME_ORIGIN, ROME_SIZE, ROME_ROOT, ROME_TIMESTAMP)


def test_rome_checkpoint_parses_and_key_id():
    parsed = parse_checkpoint(rome_note())
    assert parsed.checkpoint == Checkpoint(ROME_ORIGIN, ROME_SIZE, ROME_ROOT, None)
    assert parsed.extensions == ()
    assert parsed.body == f"{ROME_ORIGIN}\n{ROME_SIZE}\n{base64.b64encode(ROME_ROOT).decode()}\n".encode()
    (sig,) = parsed.signatures
    assert sig.name == ROME_ORIGIN
    assert sig.key_id.hex() == "78f4abae"
    assert rfc6962_note_key_id(ROME_ORIGIN, hashlib.sha256(rome_key()).digest()).hex() == "78f4abae"
    assert struct.unpack(">Q", sig.signature[:8])[0] == ROME_TIMESTAMP


def test_rome_checkpoint_altered_fails():
    note = rome_note()
    text = note.decode()
    body, sigs = text.split("\n\n")
    sig_b64 = sigs.split(" ")[-1].strip()
    raw = base64.b64decode(sig_b64)
    altered = [
        note.replace(str(ROME_SIZE).encode(), str(ROME_SIZE + 1).encode()),
        note.replace(b"2q1K6aiIJR", b"2q1K6aiIJS"),
        # Timestamp and signature bytes inside the signature line.
        *[
            text.replace(sig_b64, base64.b64encode(flip(raw, i)).decode()).encode()
            for i in range(4, len(raw))
        ],
        note.replace(b"\n\n", b"\n"),  # no blank line
        note.rstrip(b"\n"),  # no final newline
    ]
    for bad in altered:
        with pytest.raises(SignatureError):
            verify_checkpoint(bad, ROME_ORIGIN, rome_key())
    # Extension lines are not covered by the TreeHeadSignature, so they are refused.
    with pytest.raises(SignatureError, match="extension"):
        verify_checkpoint(text.replace(body, body + "\nextension").encode(), ROME_ORIGIN, rome_key())
    # A different key ID: the signature line is no longer recognised as this key's.
    with pytest.raises(SignatureError, match="no signature line"):
        verify_checkpoint(text.replace(sig_b64, base64.b64encode(flip(raw, 0)).decode()).encode(), ROME_ORIGIN, rome_key())
    with pytest.raises(SignatureError, match="origin"):
        verify_checkpoint(note, "rome.ct.filippo.io/2024h2", rome_key())


def test_sycamore_checkpoint_parses_but_cannot_verify(p256_key):
    note = (STATIC / "sycamore2024h2_checkpoint_NO-KEY.txt").read_bytes()
    parsed = parse_checkpoint(note)
    assert parsed.checkpoint.origin == "sycamore.ct.letsencrypt.org/2024h2"
    assert parsed.checkpoint.tree_size == 820495916
    assert parsed.checkpoint.root_hash == base64.b64decode("wDpr6fEdycwgieRFpz9hQe6C6A0tg6K2ZVPUltce0hI=")
    (sig,) = parsed.signatures
    assert sig.key_id.hex() == "3dd9086a"
    assert struct.unpack(">Q", sig.signature[:8])[0] == 1719511711300
    with pytest.raises(SignatureError, match="no signature line"):
        verify_checkpoint(note, "sycamore.ct.letsencrypt.org/2024h2", spki(p256_key))
    with pytest.raises(SignatureError):
        verify_checkpoint(note, "sycamore.ct.letsencrypt.org/2024h2", rome_key())


def test_sign_checkpoint_round_trip(p256_key, rsa_key):
    root = hashlib.sha256(b"tiles").digest()
    for key in (p256_key, rsa_key):
        note = sign_checkpoint("localhost/test-log", 4242, root, 1_700_000_000_123, key)
        assert note.startswith(b"localhost/test-log\n4242\n")
        assert "\n\n\u2014 localhost/test-log ".encode() in note
        cp = verify_checkpoint(note, "localhost/test-log", spki(key))
        assert cp == Checkpoint("localhost/test-log", 4242, root, 1_700_000_000_123)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError):
        verify_checkpoint(note, "localhost/test-log", spki(other))
    # Another signer's line alongside is ignored; a duplicate of ours is refused.
    note = sign_checkpoint("localhost/test-log", 1, root, 2, p256_key)
    foreign = sign_checkpoint("witness.example", 1, root, 2, other).split(b"\n\n")[1]
    assert verify_checkpoint(note + foreign, "localhost/test-log", spki(p256_key)).tree_size == 1
    ours = note.split(b"\n\n")[1]
    with pytest.raises(SignatureError, match="2 signature lines"):
        verify_checkpoint(note + ours, "localhost/test-log", spki(p256_key))


def test_parse_checkpoint_errors():
    good = rome_note().decode()
    body, sigs = good.split("\n\n")
    bad_notes = {
        "no signatures": body + "\n\n",
        "not utf-8": good.encode()[:10] + b"\xff" + good.encode()[11:],
        "carriage return": good.replace("\n", "\r\n", 1),
        "hyphen not em dash": good.replace("\u2014", "-"),
        "name with space": good.replace(f"\u2014 {ROME_ORIGIN}", f"\u2014 rome ct"),
        "bad base64 signature": good.replace(sigs.split(" ")[-1].strip(), "!!!"),
        "short signature": good.replace(sigs.split(" ")[-1].strip(), "AAA="),
        "leading zero size": good.replace(f"\n{ROME_SIZE}\n", f"\n0{ROME_SIZE}\n"),
        "size overflow": good.replace(f"\n{ROME_SIZE}\n", f"\n{2**64}\n"),
        "missing root": good.replace("2q1K6aiIJR+F7TyhiWOghoWOjY0/3dVBLsBbAvB4xCw=\n", ""),
        "short root": good.replace("2q1K6aiIJR+F7TyhiWOghoWOjY0/3dVBLsBbAvB4xCw=", "2q1K6aiIJR+F7TyhiWOghoWOjY0/3dVBLsBbAvB4"),
        "empty origin": good.replace(ROME_ORIGIN + "\n", "\n", 1),
    }
    for label, note in bad_notes.items():
        data = note if isinstance(note, bytes) else note.encode()
        with pytest.raises(TreeHeadFormatError):
            parse_checkpoint(data)
