"""The local RFC 6962 CT log (ctlib.testing) speaks the protocol and misbehaves on demand."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
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

from ctlib.ct.leaf import parse_extra_data, parse_merkle_tree_leaf
from ctlib.ct.loglist import load_log_list
from ctlib.ct.merkle import MerkleError, MerkleTree, leaf_hash, root_hash, verify_consistency, verify_inclusion
from ctlib.ct.sth import SignatureError, SignedTreeHead, verify_checkpoint, verify_sth
from ctlib.testing.certs import CertFactory, GeneratedEntry
from ctlib.testing.ctlog import Faults, LocalCTLog, LogServer, history_timestamps
from ctlib.ct.tiles import data_tiles, encode_leaf_index_extension, leaf_index_of, parse_data_tile, parse_hash_tile

INITIAL = 1000
JAN_2026_MS = 1_767_225_600_000
HOUR_MS = 3_600_000
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


def test_not_found_endpoints_answer_404_until_switched_off(server, http):
    log, url = _new_log(server, "Partial API Log", 10, Faults(not_found=frozenset({"get-entry-and-proof"})))
    asked = {"leaf_index": 3, "tree_size": 10}
    response = _get(http, url, "get-entry-and-proof", **asked)
    assert response.status_code == 404
    assert _get(http, url, "get-sth").status_code == 200  # other endpoints are served
    assert log.counts().client_errors == 1
    log.faults.not_found = frozenset()
    assert _get(http, url, "get-entry-and-proof", **asked).status_code == 200
    tiled = LocalCTLog("Partial Tiled Log", tiled=True, faults=Faults(not_found=frozenset({"issuer", "data"})))
    tiled.grow(5)
    tiled.publish()
    assert tiled.answer_static("tile/data/000.p/5").status == 404
    assert tiled.answer_static("tile/0/000.p/5").status == 200


# --------------------------------------------------------------------------- tree-head knobs


def test_rollback_serves_a_properly_signed_smaller_tree_head(server, http):
    log, url = _new_log(server, "Rollback Log", 50)
    honest = _sth(http, url)
    log.faults.rollback_to = 20
    rolled = _sth(http, url)
    verify_sth(rolled, log.key_der)
    assert rolled.tree_size == 20
    assert rolled.root_hash == root_hash([leaf_hash(log.entry(i)[0]) for i in range(20)])
    assert log.served_sth() == rolled and log.sth == honest  # the log itself is unchanged
    log.faults.rollback_to = None
    assert _sth(http, url) == honest


def test_fork_serves_another_signed_tree_of_the_same_size_until_switched_off(server, http):
    log, url = _new_log(server, "Fork Log", 60)
    honest = _sth(http, url)
    entries = _entries(http, url, 0, 60)
    log.faults.fork_at = 30
    log.faults.fork = True
    forked = _sth(http, url)
    verify_sth(forked, log.key_der)  # a valid signature over a different root
    assert (forked.tree_size, forked.timestamp) == (honest.tree_size, honest.timestamp)
    assert forked.root_hash != honest.root_hash
    other = _entries(http, url, 0, 60)
    assert other[:30] == entries[:30]
    assert all(a[0] != b[0] and a[1] == b[1] for a, b in zip(other[30:], entries[30:]))
    assert all(_decodes(leaf) for leaf, _ in other)
    assert root_hash([leaf_hash(leaf) for leaf, _ in other]) == forked.root_hash  # self-consistent

    log.grow(40)
    log.publish()
    grown = _sth(http, url)
    assert grown.tree_size == 100
    proof = _hashes(_get(http, url, "get-sth-consistency", first=60, second=100).json()["consistency"])
    with pytest.raises(MerkleError):  # the honest head of size 60 is not in the forked tree
        verify_consistency(60, 100, proof, honest.root_hash, grown.root_hash)
    shared = MerkleTree([leaf_hash(leaf) for leaf, _ in entries[:25]]).root()
    proof = _hashes(_get(http, url, "get-sth-consistency", first=25, second=100).json()["consistency"])
    verify_consistency(25, 100, proof, shared, grown.root_hash)  # before the fork: consistent
    body = _get(http, url, "get-entry-and-proof", leaf_index=70, tree_size=100).json()
    lh = leaf_hash(base64.b64decode(body["leaf_input"]))
    verify_inclusion(lh, 70, 100, _hashes(body["audit_path"]), grown.root_hash)

    log.faults.fork = False
    fixed = _sth(http, url)
    assert fixed == log.sth and _entries(http, url, 0, 60) == entries
    proof = _hashes(_get(http, url, "get-sth-consistency", first=60, second=100).json()["consistency"])
    verify_consistency(60, 100, proof, honest.root_hash, fixed.root_hash)


def test_bad_signature_fails_verify_sth_until_switched_off(server, http):
    log, url = _new_log(server, "Bad Signature Log", 5)
    log.faults.bad_signature = True
    broken = _sth(http, url)
    assert (broken.tree_size, broken.root_hash) == (log.sth.tree_size, log.sth.root_hash)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_sth(broken, log.key_der)
    log.faults.bad_signature = False
    verify_sth(_sth(http, url), log.key_der)


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


# --------------------------------------------------------------------------- history


def _served_leaves(log: LocalCTLog) -> list[bytes]:
    """Every published leaf_input as a monitor reads it: get-entries pages, or data tiles
    (whose parser checks each leaf_index)."""
    size = log.sth.tree_size
    out: list[bytes] = []
    if log.tiled:
        for tile in data_tiles(0, size):
            answer = log.answer_static(tile.path)
            assert answer.status == 200, tile
            out += [leaf.leaf_input for leaf in parse_data_tile(answer.body, tile.index, tile.width)]
        return out
    while len(out) < size:
        answer = log.answer("get-entries", {"start": str(len(out)), "end": str(size - 1)})
        assert answer.status == 200
        out += [base64.b64decode(e["leaf_input"]) for e in json.loads(answer.body)["entries"]]
    return out


def _stamps(leaves: list[bytes]) -> list[int]:
    return [parse_merkle_tree_leaf(leaf).timestamp_ms for leaf in leaves]


@pytest.mark.parametrize("tiled", [False, True], ids=["rfc6962", "tiled"])
@pytest.mark.parametrize("replay", [False, True], ids=["generated", "replay"])
def test_history_is_backdated_roughly_ordered_and_in_the_signed_tree(tiled, replay):
    start, end, disorder = JAN_2026_MS, JAN_2026_MS + 2 * HOUR_MS, 60_000
    faults = Faults(malformed=frozenset({5}))
    log = LocalCTLog(f"History {tiled} {replay}", tiled=tiled, replay=replay, faults=faults)
    log.grow(3)
    assert log.grow_history(300, start_ms=start, end_ms=end, disorder_ms=disorder, seed=4) == 303
    sth = log.publish()
    leaves = _served_leaves(log)
    assert len(leaves) == 303 and leaves == [log.entry(i)[0] for i in range(303)]
    if tiled:
        assert all(leaf_index_of(parse_merkle_tree_leaf(leaf).extensions) == i for i, leaf in enumerate(leaves))
        verify_checkpoint(log.checkpoint(), log.origin, log.key_der)
    verify_sth(sth, log.key_der)
    assert root_hash([leaf_hash(leaf) for leaf in leaves]) == sth.root_hash
    assert not _decodes(leaves[5]) and all(_decodes(leaf) for leaf in leaves[6:20])  # malformed applies

    stamps = _stamps(leaves[3:])
    assert all(start - disorder <= t <= end + disorder for t in stamps)
    assert stamps != sorted(stamps)  # disordered ...
    assert stamps == history_timestamps(300, start, end, disorder, seed=4)  # ... deterministically
    assert max(stamps[:50]) < min(stamps[-50:])  # ... and still roughly ascending

    # Later entries and tree heads never go back before the history.
    log.grow(2)
    later = _stamps([log.entry(i)[0] for i in (303, 304)])
    assert min(later) >= max(stamps) and log.publish().timestamp >= max(later)


def test_history_ending_in_the_future_holds_back_later_entries_and_heads():
    for replay in (False, True):
        log = LocalCTLog(f"Future History {replay}", replay=replay)
        end = int(time.time() * 1000) + HOUR_MS
        log.grow_history(10, start_ms=end - HOUR_MS, end_ms=end)
        log.grow(3)
        log.submit(["after.example.com"])
        stamps = _stamps([log.entry(i)[0] for i in range(14)])
        assert stamps[0] < stamps[9] == end and stamps[10:] == [end] * 4
        assert log.publish().timestamp >= end


def test_history_timestamps_spread_evenly_and_reject_bad_arguments():
    assert history_timestamps(5, 1000, 2000) == [1000, 1250, 1500, 1750, 2000]
    assert history_timestamps(1, 1000, 2000) == [1000] and history_timestamps(0, 1, 2) == []
    moved = history_timestamps(1000, 10_000, 20_000, 500, seed=1)
    assert moved == history_timestamps(1000, 10_000, 20_000, 500, seed=1)
    assert moved != history_timestamps(1000, 10_000, 20_000, 500, seed=2)
    assert min(moved) >= 9_500 and max(moved) <= 20_500 and moved != sorted(moved)
    assert min(history_timestamps(10, 0, 10, 1000)) >= 0  # never before the epoch
    for bad in ((-1, 0, 1, 0), (1, 2, 1, 0), (1, 0, 1, -1)):
        with pytest.raises(ValueError):
            history_timestamps(*bad)


def test_add_log_starts_with_published_history_ending_now(server):
    before = int(time.time() * 1000)
    log = server.add_log("History Log", initial_size=4, history=(0.5, 0.1), history_disorder=30)
    assert log.sth.tree_size == 180 + 4
    stamps = _stamps([log.entry(i)[0] for i in range(184)])
    assert before - HOUR_MS // 2 - 60_000 <= stamps[0] < before - HOUR_MS // 2 + 30_000
    assert max(stamps[:180]) <= int(time.time() * 1000)  # nothing in the future
    assert stamps[180:] == sorted(stamps[180:]) and stamps[180] >= max(stamps[:180])
    with pytest.raises(ValueError):
        server.add_log("Bad History Log", history=(-1.0, 1.0))


# --------------------------------------------------------------------------- tiled logs


def _tiled(server: LogServer, name: str, size: int, faults: Faults | None = None) -> tuple[LocalCTLog, str]:
    log = server.add_log(name, initial_size=size, faults=faults, tiled=True)
    return log, server.url_of(log)


def _fetch(http: requests.Session, url: str, path: str, **headers: str) -> requests.Response:
    return http.get(f"{url}{path}", headers=headers, timeout=10)


def test_tiled_log_serves_checkpoint_tiles_and_issuers(server, http, tmp_path):
    log, url = _tiled(server, "Tiled Serving Log", 300)
    path = server.write_log_list(tmp_path / "log_list.json")
    (entry,) = [e for e in load_log_list(path).logs if e.slug == log.slug]
    assert (entry.kind, entry.url, entry.mmd) == ("static", url, 60)
    raw = json.loads(path.read_text())["operators"][0]["tiled_logs"]
    (mine,) = [t for t in raw if t["description"] == log.description]
    assert (mine["submission_url"], mine["monitoring_url"], "url" in mine) == (url, url, False)

    response = _fetch(http, url, "checkpoint")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    checkpoint = verify_checkpoint(response.content, f"127.0.0.1:{server.port}/{log.slug}", entry.key_der)
    assert (checkpoint.tree_size, checkpoint.root_hash) == (300, log.sth.root_hash)

    data = _fetch(http, url, "tile/data/000", **{"Accept-Encoding": "identity"})
    assert data.headers["Content-Type"] == "application/octet-stream" and "Content-Encoding" not in data.headers
    partial = _fetch(http, url, "tile/data/001.p/44").content
    leaves = parse_data_tile(data.content, 0, 256) + parse_data_tile(partial, 1, 44)
    assert [leaf.leaf_input for leaf in leaves] == [log.entry(i)[0] for i in range(300)]
    for i, leaf in enumerate(leaves):
        assert leaf.entry.extensions == encode_leaf_index_extension(i)
        assert leaf_index_of(leaf.entry.extensions) == i
    hashes = parse_hash_tile(_fetch(http, url, "tile/0/000").content, 256)
    hashes += parse_hash_tile(_fetch(http, url, "tile/0/001.p/44").content, 44)
    assert hashes == [leaf.leaf_hash for leaf in leaves]
    assert parse_hash_tile(_fetch(http, url, "tile/1/000.p/1").content, 1) == [root_hash(hashes[:256])]
    compressed = _fetch(http, url, "tile/data/000", **{"Accept-Encoding": "gzip"})
    assert compressed.headers["Content-Encoding"] == "gzip" and compressed.content == data.content

    fingerprints = {fp for leaf in leaves for fp in leaf.chain}
    assert fingerprints <= set(log.issuers)
    for fp in fingerprints:
        issuer = _fetch(http, url, f"issuer/{fp.hex()}")
        assert issuer.headers["Content-Type"] == "application/pkix-cert"
        assert hashlib.sha256(issuer.content).digest() == fp
        x509.load_der_x509_certificate(issuer.content)
    for missing in ("issuer/" + "00" * 32, "issuer/xyz", "tile/0/005", "tile/data/5", "tile/2/000.p/1",
                    "checkpoint/", "ct/v1/get-sth", "ct/v1/get-entries?start=0&end=1"):  # fmt: skip
        assert _fetch(http, url, missing).status_code == 404, missing
    assert _fetch(http, url, "ct/v1/get-roots").status_code == 200  # submission API
    counts = log.counts()
    assert counts.by_endpoint["data"] == 4 and counts.entries_served == 256 + 44 + 256  # 1 404
    assert counts.by_endpoint["checkpoint"] == 1 and counts.client_errors == 8


def test_partial_tiles_exist_only_for_published_sizes_until_full(server, http):
    log, url = _tiled(server, "Tiled Partial Log", 100)
    log.grow(50)
    log.publish()
    log.grow(10)  # appended, not published: not served
    for path, status in (
        ("tile/0/000", 404), ("tile/data/000", 404),  # only partial tiles exist yet
        ("tile/0/000.p/150", 200), ("tile/data/000.p/100", 200),  # published sizes
        ("tile/0/000.p/120", 404), ("tile/data/000.p/160", 404),  # never published
    ):  # fmt: skip
        assert _fetch(http, url, path).status_code == status, path
    log.grow(200)
    log.publish()  # size 360: tile 0 is full, its partial tiles are gone
    for path, status in (("tile/0/000", 200), ("tile/data/000", 200), ("tile/0/000.p/150", 404),
                         ("tile/data/001.p/104", 200), ("tile/1/000.p/1", 200)):  # fmt: skip
        assert _fetch(http, url, path).status_code == status, path


def test_tiled_faults_apply_to_tile_requests(server, http):
    faults = Faults(http_429_every=2, retry_after=3, http_5xx_every=3, cap=1)
    log, url = _tiled(server, "Tiled Faulty Log", 260, faults)
    statuses = [_fetch(http, url, "tile/data/000").status_code for _ in range(4)]
    assert statuses == [200, 429, 503, 429]
    full = _fetch(http, url, "tile/data/000").content  # 5: ok, and cap does not apply
    assert len(parse_data_tile(full, 0, 256)) == 256
    log.faults = Faults(invalid_json_every=1, endpoints=frozenset({"tile"}))
    assert len(_fetch(http, url, "tile/0/000").content) == 4096  # half a hash tile
    assert _fetch(http, url, "checkpoint").content.endswith(b"\n")  # out of scope: whole
    log.faults = Faults(tampered=frozenset({7}), bad_signature=True)
    tampered = parse_data_tile(_fetch(http, url, "tile/data/000").content, 0, 256)
    assert tampered[7].leaf_input != log.entry(7)[0] and tampered[7].leaf_index == 7
    assert [leaf.leaf_input for leaf in tampered[:7]] == [log.entry(i)[0] for i in range(7)]
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(_fetch(http, url, "checkpoint").content, log.origin, log.key_der)
    log.faults = Faults(rollback_to=258)  # never published, but served: so are its tiles
    rolled = verify_checkpoint(_fetch(http, url, "checkpoint").content, log.origin, log.key_der)
    assert rolled.tree_size == 258 and _fetch(http, url, "tile/0/001.p/2").status_code == 200
    c = log.counts()
    assert (c.throttled, c.server_errors, c.invalid_json) == (2, 1, 1)


def test_tiled_precert_scts_carry_the_leaf_index(server):
    log, _ = _tiled(server, "Tiled SCT Log", 120)
    precerts, finals = {}, 0
    for i in range(120):
        leaf = parse_merkle_tree_leaf(log.entry(i)[0])
        assert leaf_index_of(leaf.extensions) == i
        if leaf.entry_type == "precert":
            precerts[leaf.tbs_der] = (log.entry(i)[0], leaf.extensions)
            continue
        cert = x509.load_der_x509_certificate(leaf.cert_der)
        try:
            ext = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps)
        except x509.ExtensionNotFound:
            continue
        (sct,) = ext.value
        signed_leaf, extensions = precerts[cert.tbs_precertificate_bytes]
        assert sct.extension_bytes == extensions  # the SCT names the precert's index
        log.key.public_key().verify(sct.signature, signed_leaf, ec.ECDSA(hashes.SHA256()))
        finals += 1
    assert finals >= 3


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
    args = ["--logs", "3", "--tiled", "1", "--log-list", str(path), "--initial-size", "5", "--cap", "3"]
    args += ["--history-hours", "0.01", "--history-rate", "1", "--disorder-seconds", "2"]  # 36 entries
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctlib.testing.ctlog", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        described = [line.rsplit(" ", 1) for line in lines]
        assert [d for d, _ in described] == ["Local Test Log 1", "Local Test Log 2", "Local Tiled Log 1"]
        logs = load_log_list(path).logs
        assert [log.url for log in logs] == [url for _, url in described]
        assert [log.kind for log in logs] == ["rfc6962", "rfc6962", "static"]
        sth = _sth(http, logs[1].url)
        assert sth.tree_size == 36 + 5
        verify_sth(sth, logs[1].key_der)
        assert len(_get(http, logs[1].url, "get-entries", start=0, end=4).json()["entries"]) == 3
        first = parse_merkle_tree_leaf(_entries(http, logs[1].url, 0, 1)[0][0]).timestamp_ms
        assert first <= sth.timestamp - 34_000  # the history began 36 s (+- 2 s) before
        tiled = logs[2]
        origin = tiled.url.removeprefix("http://").rstrip("/")
        checkpoint = http.get(f"{tiled.url}checkpoint", timeout=10).content
        assert verify_checkpoint(checkpoint, origin, tiled.key_der).tree_size == 41
        assert len(parse_data_tile(http.get(f"{tiled.url}tile/data/000.p/41", timeout=10).content, 0, 41)) == 41
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_planting_growth_plants_phishing_and_watched_certificates(tmp_path):
    """`--phishing-every 5 --watched-every 7`: entries 4, 9, 14... phishing-style, 6, 13, 20...
    for names under the watched domain (phishing first where both fall on one entry)."""
    from ctlib.testing.ctlog import _PlantingGrowth

    server = LogServer()
    log = server.add_log("Planting Log", initial_size=0)
    planted = tmp_path / "planted.jsonl"
    growth = _PlantingGrowth([log], 0.0, 5, 1, planted, "shop.example", 7)
    growth.grow(log, 40)
    growth.close()
    assert log.size == 40
    records = [json.loads(line) for line in planted.read_text().splitlines()]
    kinds = {r["index"]: r["kind"] for r in records}
    assert kinds == {**{i: "phishing" for i in (4, 9, 14, 19, 24, 29, 34, 39)},
                     **{i: "watched" for i in (6, 13, 20, 27)}}
    from ctlib.ct.types import RawEntry
    from ctlib.decode.entries import LogRef, decode_entries

    raws = [RawEntry(r["index"], *log.entry(r["index"])) for r in records]
    certs = decode_entries(LogRef("bG9n", log.slug), raws, dt.datetime.now(dt.UTC)).certs.to_pylist()
    for record, cert in zip(records, certs, strict=True):
        if record["kind"] == "watched":
            assert all(n == "shop.example" or n.endswith(".shop.example") for n in record["names"])
        assert cert["dns_names"] == record["names"]
