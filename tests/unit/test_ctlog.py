"""The local RFC 6962 CT log (ctlib.testing) speaks the protocol and misbehaves on demand."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ctlib.leaf import parse_extra_data, parse_merkle_tree_leaf
from ctlib.loglist import load_log_list
from ctlib.merkle import leaf_hash, root_hash, verify_consistency, verify_inclusion
from ctlib.sth import SignedTreeHead, verify_sth
from ctlib.testing.certs import CertFactory, GeneratedEntry
from ctlib.testing.ctlog import Faults, LocalCTLog, LogServer

INITIAL = 1000
JAN_2026_MS = 1_767_225_600_000
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"


@pytest.fixture(scope="module")
def server() -> Iterator[LogServer]:
    with LogServer(publish_interval=0.1) as srv:
        srv.add_log("Local Test Log 1", initial_size=INITIAL)
        yield srv


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _get(http: requests.Session, url: str, endpoint: str, **params: object) -> requests.Response:
    return http.get(f"{url}ct/v1/{endpoint}", params=params, timeout=10)


def _sth(http: requests.Session, url: str) -> SignedTreeHead:
    response = _get(http, url, "get-sth")
    response.raise_for_status()
    return SignedTreeHead.from_json(response.json())


def _entries(http: requests.Session, url: str, start: int, end: int) -> list[tuple[bytes, bytes]]:
    """Every entry of [start, end) (exclusive), looping over the log's cap as a client must."""
    out: list[tuple[bytes, bytes]] = []
    while start + len(out) < end:
        response = _get(http, url, "get-entries", start=start + len(out), end=end - 1)
        response.raise_for_status()
        got = response.json()["entries"]
        assert got, "a log must return at least one entry"
        out += [(base64.b64decode(e["leaf_input"]), base64.b64decode(e["extra_data"])) for e in got]
    return out


def _hashes(encoded: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in encoded]


def _spki(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _new_log(
    server: LogServer, name: str, size: int, faults: Faults | None = None
) -> tuple[LocalCTLog, str]:
    log = server.add_log(name, initial_size=size, faults=faults)
    return log, server.url_of(log)


# --------------------------------------------------------------------------- protocol


def test_log_list_describes_the_logs_and_sth_verifies(server, http, tmp_path):
    path = server.write_log_list(tmp_path / "log_list.json")
    (entry,) = [log for log in load_log_list(path).logs if log.slug == "local_test_log_1"]
    assert entry.url == f"http://127.0.0.1:{server.port}/local_test_log_1/"
    assert (entry.state, entry.kind, entry.mmd) == ("usable", "rfc6962", 86400)
    assert entry.log_id_bytes == hashlib.sha256(entry.key_der).digest()

    sth = _sth(http, entry.url)
    assert sth.tree_size == INITIAL
    verify_sth(sth, entry.key_der)
    began = time.monotonic()
    response = _get(http, entry.url, "get-entries", start=0, end=INITIAL - 1)
    assert time.monotonic() - began < 0.5 and len(response.json()["entries"]) == INITIAL
    leaves = _entries(http, entry.url, 0, sth.tree_size)
    assert root_hash([leaf_hash(leaf) for leaf, _ in leaves]) == sth.root_hash


def test_get_entries_respects_cap_and_sth_size_and_rejects_bad_parameters(server, http):
    log, url = _new_log(server, "Capped Log", 40, Faults(cap=31))
    assert len(_get(http, url, "get-entries", start=0, end=99).json()["entries"]) == 31
    # Clamped to the STH size (40) as well as to the cap.
    assert len(_get(http, url, "get-entries", start=35, end=99).json()["entries"]) == 5
    log.grow(10)  # appended but not published: not served
    assert log.size == 50 and _sth(http, url).tree_size == 40
    assert _get(http, url, "get-entries", start=40, end=45).status_code == 400
    log.publish()
    assert len(_get(http, url, "get-entries", start=40, end=45).json()["entries"]) == 6
    bad = ({"start": 5, "end": 4}, {"start": -1, "end": 3}, {"start": "x", "end": 3}, {"start": 1})
    for params in bad:
        assert _get(http, url, "get-entries", **params).status_code == 400, params
    assert http.get(f"{url}ct/v1/add-chain", timeout=10).status_code == 404
    elsewhere = f"http://127.0.0.1:{server.port}/nope/ct/v1/get-sth"
    assert http.get(elsewhere, timeout=10).status_code == 404
    counts = log.counts()
    assert counts.entries_served == 31 + 5 + 6 and counts.client_errors == 6


def test_served_bytes_are_the_stored_entries_with_chains_to_served_roots(server, http):
    log, url = _new_log(server, "Byte Log", 20)
    served = _entries(http, url, 0, 20)
    assert served == [log.entry(i) for i in range(20)]
    roots = _hashes(_get(http, url, "get-roots").json()["certificates"])
    assert len(roots) == 2
    for root in map(x509.load_der_x509_certificate, roots):
        assert root.issuer == root.subject
    for leaf, extra in served:
        chain = parse_extra_data(parse_merkle_tree_leaf(leaf).entry_type, extra).chain
        assert len(chain) == 2 and chain[-1] in roots


def test_consistency_and_inclusion_proofs_verify(server, http):
    log, url = _new_log(server, "Proof Log", 77)
    old = _sth(http, url)
    log.grow(123)
    new = log.publish()
    size = new.tree_size
    body = _get(http, url, "get-sth-consistency", first=old.tree_size, second=size).json()
    proof = _hashes(body["consistency"])
    verify_consistency(old.tree_size, size, proof, old.root_hash, new.root_hash)
    assert _get(http, url, "get-sth-consistency", first=10, second=size + 1).status_code == 400

    for index in (0, 76, 77, 199):
        lh = leaf_hash(log.entry(index)[0])
        b64 = base64.b64encode(lh).decode()
        body = _get(http, url, "get-proof-by-hash", hash=b64, tree_size=size).json()
        assert body["leaf_index"] == index
        verify_inclusion(lh, index, size, _hashes(body["audit_path"]), new.root_hash)
        body = _get(http, url, "get-entry-and-proof", leaf_index=index, tree_size=size).json()
        assert leaf_hash(base64.b64decode(body["leaf_input"])) == lh
        verify_inclusion(lh, index, size, _hashes(body["audit_path"]), new.root_hash)
    missing = base64.b64encode(b"\x00" * 32).decode()
    assert _get(http, url, "get-proof-by-hash", hash=missing, tree_size=size).status_code == 404
    too_big = {"leaf_index": 5, "tree_size": size + 1}
    assert _get(http, url, "get-entry-and-proof", **too_big).status_code == 400


# --------------------------------------------------------------------------- faults


def test_every_nth_request_is_throttled_with_retry_after(server, http):
    log, url = _new_log(server, "Throttled Log", 5, Faults(http_429_every=3, retry_after=2))
    responses = [_get(http, url, "get-sth") for _ in range(6)]
    assert [r.status_code for r in responses] == [200, 200, 429, 200, 200, 429]
    assert responses[2].headers["Retry-After"] == "2"
    assert (log.counts().throttled, log.counts().ok) == (2, 4)


def test_server_errors_invalid_json_delay_and_endpoint_scope(server, http):
    faults = Faults(http_5xx_every=2, endpoints=frozenset({"get-entries"}))
    log, url = _new_log(server, "Flaky Log", 5, faults)
    assert [_get(http, url, "get-sth").status_code for _ in range(3)] == [200] * 3  # not in scope
    statuses = [_get(http, url, "get-entries", start=0, end=1).status_code for _ in range(4)]
    assert statuses == [200, 503, 200, 500]
    assert log.counts().server_errors == 2

    log.faults = Faults(invalid_json_every=1)  # swapped while serving
    response = _get(http, url, "get-sth")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    log.faults = Faults(delay=0.3)
    began = time.monotonic()
    assert _get(http, url, "get-sth").status_code == 200
    assert time.monotonic() - began >= 0.3
    assert log.counts().invalid_json == 1


def test_malformed_entries_are_logged_corrupted_and_tampered_ones_break_the_root(server, http):
    malformed = frozenset({3, 4, 5})  # one of each corruption: truncated, bad type, bad DER
    log, url = _new_log(server, "Bad Data Log", 12, Faults(malformed=malformed))
    leaves = _entries(http, url, 0, 12)
    sth = _sth(http, url)
    # Malformed entries are part of the tree: the log is consistent, only decoding fails.
    assert root_hash([leaf_hash(leaf) for leaf, _ in leaves]) == sth.root_hash
    assert {i for i, (leaf, _) in enumerate(leaves) if not _decodes(leaf)} == malformed

    log.faults = Faults(tampered=frozenset({7}))
    tampered = _entries(http, url, 0, 12)
    assert tampered[7] != leaves[7] and tampered[:7] == leaves[:7]
    parse_merkle_tree_leaf(tampered[7][0])  # still decodes ...
    assert root_hash([leaf_hash(leaf) for leaf, _ in tampered]) != sth.root_hash  # ... but lies


def _decodes(leaf_input: bytes) -> bool:
    try:
        parsed = parse_merkle_tree_leaf(leaf_input)
        if parsed.cert_der is not None:
            x509.load_der_x509_certificate(parsed.cert_der)
    except ValueError:  # LeafError is one
        return False
    return parsed.tbs_der is None or parsed.tbs_der[0] == 0x30  # a TBSCertificate is a SEQUENCE


# --------------------------------------------------------------------------- growth


def test_growth_thread_increases_the_sth_and_serving_stays_consistent(server, http):
    log = server.add_log("Growing Log", rate=300.0)
    url = server.url_of(log)
    first = _sth(http, url)
    deadline = time.monotonic() + 10
    while (later := _sth(http, url)).tree_size < first.tree_size + 30:
        assert time.monotonic() < deadline, "the growth thread did not publish"
        time.sleep(0.05)
    assert later.timestamp > first.timestamp
    verify_sth(later, log.key_der)
    # Served while the log keeps growing: still exactly the tree of the STH.
    leaves = _entries(http, url, 0, later.tree_size)
    assert root_hash([leaf_hash(leaf) for leaf, _ in leaves]) == later.root_hash
    log.rate = 0


def test_submit_plants_names_in_the_next_certificate(server, http):
    log, url = _new_log(server, "Planted Log", 3)
    names = ["paypal-secure-login.example.com", "xn--pypal-4ve.com", "192.0.2.7"]
    index = log.submit(names, entry_type="x509")
    log.publish()
    ((leaf, _),) = _entries(http, url, index, index + 1)
    cert = x509.load_der_x509_certificate(parse_merkle_tree_leaf(leaf).cert_der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == names[:2]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == names[2:]


def test_entry_timestamps_never_decrease_and_the_sth_covers_them(server):
    log = server.add_log("Clock Log", initial_size=50)
    stamps = [struct.unpack(">Q", log.entry(i)[0][2:10])[0] for i in range(50)]
    assert stamps == sorted(stamps) and log.sth.timestamp >= stamps[-1]


# --------------------------------------------------------------------------- certificates


@pytest.fixture(scope="module")
def generated() -> list[GeneratedEntry]:
    factory = CertFactory(seed=7)
    return [factory.next_entry(JAN_2026_MS + i) for i in range(600)]


def test_precert_tbs_equals_the_final_certificates_and_its_sct_verifies():
    log_key = ec.generate_private_key(ec.SECP256R1())
    log_id = hashlib.sha256(_spki(log_key.public_key())).digest()
    factory = CertFactory(seed=3, sct_key=log_key, sct_log_id=log_id)
    entries = [factory.next_entry(JAN_2026_MS + i) for i in range(300)]
    precerts = {}
    for e in (e for e in entries if e.entry_type == "precert"):
        leaf = parse_merkle_tree_leaf(e.leaf_input)
        extra = parse_extra_data("precert", e.extra_data)
        pre = x509.load_der_x509_certificate(extra.pre_certificate)
        poison = pre.extensions.get_extension_for_class(x509.PrecertPoison)
        assert poison.critical and poison.oid.dotted_string == "1.3.6.1.4.1.11129.2.4.3"
        issuer = x509.load_der_x509_certificate(extra.chain[0])
        assert leaf.issuer_key_hash == hashlib.sha256(_spki(issuer.public_key())).digest()
        precerts[leaf.tbs_der] = e
    finals = 0
    for e in (e for e in entries if e.entry_type == "x509"):
        cert = x509.load_der_x509_certificate(parse_merkle_tree_leaf(e.leaf_input).cert_der)
        try:
            ext = cert.extensions.get_extension_for_class(
                x509.PrecertificateSignedCertificateTimestamps
            )
        except x509.ExtensionNotFound:
            continue
        finals += 1
        assert not ext.critical and ext.oid.dotted_string == "1.3.6.1.4.1.11129.2.4.2"
        precert = precerts[cert.tbs_precertificate_bytes]  # the TBS the precert leaf logged
        (sct,) = ext.value
        logged_at = dt.datetime.fromtimestamp(precert.timestamp_ms / 1000, dt.timezone.utc)
        assert sct.log_id == log_id and sct.timestamp == logged_at.replace(tzinfo=None)
        # An SCT signs the precert's MerkleTreeLeaf bytes (RFC 6962 3.2): it verifies.
        log_key.public_key().verify(sct.signature, precert.leaf_input, ec.ECDSA(hashes.SHA256()))
    assert finals >= 10 and len(precerts) >= 100


def test_certificates_are_realistic_and_varied(generated):
    names = [n for e in generated for n in e.names]
    assert any(n.startswith("*.") for n in names)
    assert any(n.startswith("xn--") or ".xn--" in n for n in names)
    assert any(_is_ip(n) for n in names)
    assert any(len(e.names) > 3 for e in generated) and any(len(e.names) == 1 for e in generated)
    kinds, issuers, no_cn = set(), set(), 0
    for e in (e for e in generated if e.entry_type == "x509"):
        cert = x509.load_der_x509_certificate(e.cert_der)
        assert len(e.cert_der) > 500
        assert 113 <= cert.serial_number.bit_length() <= 127  # 16 bytes, positive
        validity = cert.not_valid_after_utc - cert.not_valid_before_utc
        assert validity == dt.timedelta(days=90, seconds=-1)
        ext = cert.extensions
        assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert [oid.dotted_string for oid in eku] == [SERVER_AUTH]
        assert ext.get_extension_for_class(x509.KeyUsage).critical
        ext.get_extension_for_class(x509.AuthorityKeyIdentifier)
        ext.get_extension_for_class(x509.SubjectKeyIdentifier)
        key = cert.public_key()
        kinds.add("rsa" if isinstance(key, rsa.RSAPublicKey) else key.curve.name)
        no_cn += not cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        issuers.add(cert.issuer.rfc4514_string())
    assert kinds == {"rsa", "secp256r1", "secp384r1"}
    assert no_cn > 0 and len(issuers) == 3
    assert "CN=Local Test RSA CA R1,O=ct-airflow Test PKI,C=US" in issuers


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def test_names_depend_only_on_the_seed(generated):
    again = CertFactory(seed=7)
    first = [e.names for e in generated[:50]]
    assert [again.next_entry(JAN_2026_MS + i).names for i in range(50)] == first
    other = CertFactory(seed=8)
    assert [other.next_entry(JAN_2026_MS + i).names for i in range(50)] != first


# --------------------------------------------------------------------------- CLI


def test_cli_serves_writes_the_log_list_and_stops_on_sigterm(tmp_path, http):
    path = tmp_path / "logs.json"
    args = ["--logs", "2", "--log-list", str(path), "--initial-size", "5", "--cap", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctlib.testing.ctlog", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        described = [line.rsplit(" ", 1) for line in lines]
        assert [d for d, _ in described] == ["Local Test Log 1", "Local Test Log 2"]
        logs = load_log_list(path).logs
        assert [log.url for log in logs] == [url for _, url in described]
        sth = _sth(http, logs[1].url)
        assert sth.tree_size == 5
        verify_sth(sth, logs[1].key_der)
        assert len(_get(http, logs[1].url, "get-entries", start=0, end=4).json()["entries"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
