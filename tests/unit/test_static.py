"""StaticClient (ctlib.ct.static) on the real Navigli 2025h2 tiles and on the local tiled log."""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from ctlib.ct.client import open_client
from ctlib.ct.types import RawEntry, TreeHead, VerificationError
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.ct.loglist import CTLog, parse_log_list
from ctlib.ct.merkle import CompactRange, MerkleError, MerkleTree, leaf_hash, root_hash, verify_consistency
from ctlib.settings import Settings
from ctlib.ct.static import StaticClient, StaticResponseError, gunzip_if_gzip
from ctlib.testing.ctlog import Faults, LocalCTLog, LogServer
from ctlib.ct.tiles import TILE_WIDTH, TileError, parse_hash_tile
from tests.paths import CTDATA
from tests.support.navigli import FACTS, NAVIGLI, navigli_leaves

# Fast retries: a fault costs milliseconds, not the production back-off.
FAST = {"CT_HTTP_BACKOFF": "0.01", "CT_HTTP_MAX_BACKOFF": "0.05", "CT_HTTP_RETRIES": "4"}
SETTINGS = Settings.from_env(FAST)
INGESTED = datetime(2026, 1, 2, tzinfo=UTC)


def client_for(log: CTLog, settings: Settings = SETTINGS) -> StaticClient:
    client = open_client(log, settings)
    assert isinstance(client, StaticClient)
    return client


def entries_of(
    client: StaticClient, start: int, end: int, batch: int = 1000, in_flight: int = 4
) -> list[RawEntry]:
    batches = list(client.fetch_range(start, end, batch=batch, in_flight=in_flight))
    assert all(len(b) == batch for b in batches[:-1]) and all(batches)
    return [e for b in batches for e in b]


# --------------------------------------------------------------------------- Navigli


class _NavigliHandler(SimpleHTTPRequestHandler):
    """The snapshot's files, plus level-1 tiles derived from its level-0 tiles (it has none)."""

    seen: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(NAVIGLI.parent), **kwargs)

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        if self.path.startswith("/tile/1/000.p/"):
            width = int(self.path.rsplit("/", 1)[1])
            body = b"".join(
                root_hash(parse_hash_tile((NAVIGLI / "0" / f"{n:03d}").read_bytes(), TILE_WIDTH))
                for n in range(width)
            )
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def navigli() -> Iterator[tuple[CTLog, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_NavigliHandler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    pem = (CTDATA / "static-ct" / "navigli2025h2_pubkey.pem").read_bytes()
    der = serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    log = CTLog(
        description="Geomys 'Navigli2025h2' log", slug="geomys_navigli2025h2_log", operator="Geomys",
        log_id=FACTS["log_id_b64"], key=base64.b64encode(der).decode(), kind="static",
        url=f"http://127.0.0.1:{httpd.server_address[1]}/", state="usable", mmd=60,
    )  # fmt: skip
    assert log.log_id_bytes == hashlib.sha256(der).digest()
    try:
        yield log, seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_navigli_tiles_through_the_client(navigli) -> None:
    log, _ = navigli
    client = client_for(log)
    full = client.read_data_tile(3)
    partial = client.read_data_tile(3, 10)
    assert partial == full[:10] and full == list(navigli_leaves()[768:])
    assert [leaf.leaf_hash for leaf in partial] == client.read_tile(0, 3, 10)
    # 000.p/10 is not in the snapshot (gone, as once its tile filled): the full tile serves.
    assert client.read_data_tile(0, 10) == list(navigli_leaves()[:10])
    assert client.read_tile(0, 1, 5) == [leaf.leaf_hash for leaf in navigli_leaves()[256:261]]


def test_navigli_compact_ranges_and_consistency(navigli) -> None:
    log, seen = navigli
    client = client_for(log)
    root_1024 = base64.b64decode(FACTS["root_size_1024_b64"])
    root_778 = base64.b64decode(FACTS["root_size_778_b64"])
    compact = client.compact_range_at(TreeHead(1024, 0, root_1024, ""))
    assert compact == CompactRange(0, 1024, (root_1024,))
    before = len(seen)
    assert client.compact_range_at(TreeHead(778, 0, root_778, "")).root() == root_778
    assert sorted(seen[before:]) == ["/tile/0/003.p/10", "/tile/1/000.p/3"]
    verify_consistency(778, 1024, client.consistency_proof(778, 1024), root_778, root_1024)
    assert client.consistency_proof(0, 1024) == client.consistency_proof(1024, 1024) == []
    with pytest.raises(VerificationError) as caught:
        client.compact_range_at(TreeHead(1024, 0, root_778, ""))
    assert caught.value.kind == "root_mismatch" and log.slug in str(caught.value)
    with pytest.raises(MerkleError):
        client.consistency_proof(1024, 778)


def test_navigli_entries_need_their_issuers_which_the_snapshot_lacks(navigli) -> None:
    log, _ = navigli
    with pytest.raises(StaticResponseError) as caught:
        entries_of(client_for(log), 0, 10)
    message = str(caught.value)
    fingerprint = navigli_leaves()[0].chain[0].hex()
    for part in (log.slug, f"issuer/{fingerprint}", "404", "entry 0", "tile/data/000.p/10"):
        assert part in message, message


def test_gunzip_sniffing() -> None:
    body = b"\x00" * 100
    assert gunzip_if_gzip(gzip.compress(body), 1000) == body
    assert gunzip_if_gzip(body, 1000) == body
    hash_like = b"\x1f\x8b" + b"\x00" * 30  # a hash tile may start with the magic by chance
    assert gunzip_if_gzip(hash_like, 1000, plain_len=32) == hash_like
    cases = ((gzip.compress(body)[:-9], 1000, "truncated"), (hash_like, 1000, "broken"), (gzip.compress(body), 99, "limit"))
    for bad, limit, message in cases:
        with pytest.raises(TileError, match=message):
            gunzip_if_gzip(bad, limit)


# --------------------------------------------------------------------------- local tiled log


@pytest.fixture(scope="module")
def server() -> Iterator[LogServer]:
    with LogServer(publish_interval=0.1) as srv:
        yield srv


def tiled(server: LogServer, name: str, size: int, faults: Faults | None = None) -> tuple[LocalCTLog, CTLog]:
    log = server.add_log(name, initial_size=size, faults=faults, tiled=True)
    return log, parse_log_list(server.log_list()).by_slug(log.slug)


def leaves_of(log: LocalCTLog, end: int) -> list[bytes]:
    return [leaf_hash(log.entry(i)[0]) for i in range(end)]


@pytest.fixture(scope="module")
def main_log(server: LogServer) -> tuple[LocalCTLog, CTLog]:
    return tiled(server, "Local Tiled Log Main", 700)


def test_tree_head_verifies_under_the_checkpoint_origin(server, main_log) -> None:
    log, ctlog = main_log
    assert (ctlog.kind, ctlog.mmd, ctlog.url) == ("static", 60, server.url_of(log))
    head = client_for(ctlog).tree_head()
    assert (head.size, head.root_hash, head.timestamp) == (700, log.sth.root_hash, log.sth.timestamp)
    origin = f"127.0.0.1:{server.port}/{log.slug}"
    assert log.origin == origin and head.signed.startswith(f"{origin}\n700\n")
    assert f"\n\u2014 {origin} " in head.signed


@pytest.mark.parametrize(
    ("start", "end", "batch"),
    [(0, 700, 100), (0, 256, 1000), (250, 600, 64), (300, 700, 7), (511, 513, 1), (699, 700, 5)],
)
def test_fetch_range_returns_exactly_the_logged_entries(main_log, start: int, end: int, batch: int) -> None:
    log, ctlog = main_log
    client = client_for(ctlog)
    entries = entries_of(client, start, end, batch=batch)
    assert [e.index for e in entries] == list(range(start, end))
    # The RFC 6962 form is rebuilt byte for byte: same leaf_input, same extra_data.
    assert [(e.leaf_input, e.extra_data) for e in entries] == [log.entry(i) for i in range(start, end)]
    requested = {p for p in log.counts().by_endpoint}
    assert "data" in requested and "get-entries" not in requested


def test_tiled_entries_decode_like_the_logs_own(server, main_log) -> None:
    log, ctlog = main_log
    ref = LogRef(ctlog.log_id, ctlog.slug)
    fetched = decode_entries(ref, entries_of(client_for(ctlog), 0, 700), INGESTED)
    own = decode_entries(ref, [RawEntry(i, *log.entry(i)) for i in range(700)], INGESTED)
    assert fetched.errors.num_rows == 0 and fetched.certs.num_rows == 700
    assert fetched.certs.equals(own.certs)
    fingerprints = {fp.hex() for fp in log.issuers}
    assert {h for chain in fetched.certs["chain_sha256"].to_pylist() for h in chain} <= fingerprints
    types = set(fetched.certs["entry_type"].to_pylist())
    assert types == {"x509", "precert"}

    planted = ["login-paypal.example.net", "xn--pypal-4ve.example"]
    index = log.submit(planted, entry_type="precert")
    log.publish()
    other = client_for(ctlog)
    (entry,) = entries_of(other, index, index + 1)
    row = decode_entries(ref, [entry], INGESTED).certs.to_pylist()[0]
    assert row["dns_names"] == planted and row["entry_type"] == "precert"


def test_compact_ranges_and_consistency_proofs_from_the_hash_tiles(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Proofs", 200)
    heads = {200: client_for(ctlog).tree_head()}
    for grow in (56, 300, 2, 466):  # 256: one full tile; 556; 558; 1024
        log.grow(grow)
        log.publish()
        head = client_for(ctlog).tree_head()
        heads[head.size] = head
    tree = MerkleTree(leaves_of(log, 1024))
    client = client_for(ctlog)
    for size, head in heads.items():
        assert head.root_hash == tree.root(size)
        assert client.compact_range_at(head) == CompactRange.from_leaf_hashes(0, leaves_of(log, size))
    for first in heads:
        for second in (s for s in heads if s > first):
            proof = client.consistency_proof(first, second)
            assert proof == tree.consistency_proof(first, second)
            verify_consistency(first, second, proof, heads[first].root_hash, heads[second].root_hash)


def test_bad_signature_is_a_verification_error_until_fixed(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Badsig", 10)
    log.faults.bad_signature = True
    with pytest.raises(VerificationError) as caught:
        client_for(ctlog).tree_head()
    assert caught.value.kind == "bad_signature" and ctlog.slug in str(caught.value)
    assert "signature does not verify" in str(caught.value)
    log.faults.bad_signature = False
    assert client_for(ctlog).tree_head().size == 10


def test_a_checkpoint_signed_by_another_key_or_origin_fails(server, main_log) -> None:
    _, ctlog = main_log
    other, _ = tiled(server, "Local Tiled Log Other Key", 3)
    wrong_key = CTLog(**{**ctlog.to_dict(), "key": other.key_b64, "log_id": other.log_id_b64})
    with pytest.raises(VerificationError, match="no signature line") as caught:
        client_for(wrong_key).tree_head()
    assert caught.value.kind == "bad_signature"


def test_issuers_are_fetched_once_and_must_hash_to_their_fingerprint(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Issuers", 300)
    client = client_for(ctlog)
    entries_of(client, 0, 300)
    entries_of(client, 0, 300)
    assert log.counts().by_endpoint["issuer"] <= len(log.issuers)

    log.faults.corrupt_issuers = True
    with pytest.raises(StaticResponseError) as caught:
        entries_of(client_for(ctlog), 0, 10)
    message = str(caught.value)
    assert ctlog.slug in message and "not its fingerprint" in message and "entry 0" in message
    log.faults.corrupt_issuers = False
    assert len(entries_of(client_for(ctlog), 0, 10)) == 10


def test_throttling_with_retry_after_is_waited_out(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Throttled", 300, Faults(http_429_every=2, retry_after=1))
    slow = Settings.from_env({**FAST, "CT_HTTP_MAX_BACKOFF": "2"})  # honours Retry-After: 1
    client = client_for(ctlog, slow)
    head = client.tree_head()  # request 1 passes
    began = time.monotonic()
    assert client.read_tile(0, 0, 256) == leaves_of(log, 256)  # request 2: 429, then 3
    assert time.monotonic() - began >= 1.0
    log.faults.retry_after = 0
    assert client.compact_range_at(head).root() == head.root_hash
    # One request at a time: with several in flight, "every 2nd request" can fall on the same
    # tile's every attempt (seen in CI), which tests the interleaving, not the waiting.
    entries = entries_of(client, 0, 300, in_flight=1)
    assert [(e.leaf_input, e.extra_data) for e in entries] == [log.entry(i) for i in range(300)]
    assert log.counts().throttled >= 3


def test_truncated_server_errors_and_gzip_bodies_are_retried_or_unpacked(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Flaky", 600, Faults(invalid_json_every=3, http_5xx_every=5))
    # About half of this log's answers are bad, and one budget of attempts covers 5xx and
    # unusable bodies alike (as in production, whose default is 8): give it room.
    patient = Settings.from_env({**FAST, "CT_HTTP_RETRIES": "12"})
    client = client_for(ctlog, patient)
    head = client.tree_head()
    assert client.compact_range_at(head).root() == head.root_hash
    entries = entries_of(client, 0, 600, batch=100)
    assert [(e.leaf_input, e.extra_data) for e in entries] == [log.entry(i) for i in range(600)]
    counts = log.counts()
    assert counts.invalid_json >= 3 and counts.server_errors >= 2

    log.faults = Faults(raw_gzip=True)  # gzip without Content-Encoding
    raw = requests.get(f"{ctlog.url}tile/data/000", timeout=10)
    assert raw.content[:2] == b"\x1f\x8b" and "Content-Encoding" not in raw.headers
    entries = entries_of(client_for(ctlog), 0, 600, batch=100)
    assert [(e.leaf_input, e.extra_data) for e in entries] == [log.entry(i) for i in range(600)]


def test_an_unparseable_tile_fails_naming_the_log_and_tile(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Broken", 300)
    log.faults.invalid_json_every = 1
    log.faults.endpoints = frozenset({"data"})  # every data tile comes back truncated
    with pytest.raises(StaticResponseError) as caught:
        entries_of(client_for(ctlog), 0, 300)
    message = str(caught.value)
    assert ctlog.slug in message and "tile/data/000" in message and "after 4 attempts" in message


def test_tampered_and_malformed_entries(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Bad Data", 300, Faults(malformed=frozenset({3, 260})))
    client = client_for(ctlog)
    head = client.tree_head()
    entries = entries_of(client, 0, 300)
    batch = decode_entries(LogRef(ctlog.log_id, ctlog.slug), entries, INGESTED)
    assert batch.errors["index"].to_pylist() == [3, 260]  # logged broken: the tile still parses
    assert root_hash(batch.leaf_hashes) == head.root_hash

    log.faults.tampered = frozenset({100})
    lied = entries_of(client_for(ctlog), 0, 300)
    assert lied[100].leaf_input != entries[100].leaf_input and lied[:100] == entries[:100]
    assert decode_entries(LogRef(ctlog.log_id, ctlog.slug), lied[100:101], INGESTED).errors.num_rows == 0
    assert root_hash([leaf_hash(e.leaf_input) for e in lied]) != head.root_hash


def test_fork_and_rollback_are_signed_and_visible(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Forked", 600)
    client = client_for(ctlog)
    honest = client.tree_head()
    entries = entries_of(client, 0, 600)

    log.faults.fork_at = 400
    log.faults.fork = True
    forked_client = client_for(ctlog)
    forked = forked_client.tree_head()  # properly signed, same size, another root
    assert forked.size == honest.size and forked.root_hash != honest.root_hash
    assert forked_client.compact_range_at(forked).root() == forked.root_hash
    other = entries_of(forked_client, 0, 600)
    assert other[:400] == entries[:400]
    assert all(a != b for a, b in zip(other[400:], entries[400:], strict=True))
    log.grow(100)
    log.publish()
    grown = forked_client.tree_head()
    proof = client_for(ctlog).consistency_proof(600, grown.size)
    with pytest.raises(MerkleError):
        verify_consistency(600, grown.size, proof, honest.root_hash, grown.root_hash)
    verify_consistency(300, grown.size, client_for(ctlog).consistency_proof(300, grown.size),
                       MerkleTree(leaves_of(log, 300)).root(), grown.root_hash)  # fmt: skip

    log.faults.fork = False
    fixed = client_for(ctlog).tree_head()
    proof = client_for(ctlog).consistency_proof(600, fixed.size)
    verify_consistency(600, fixed.size, proof, honest.root_hash, fixed.root_hash)

    log.faults.rollback_to = 650  # never published: its partial tiles are served all the same
    rolled = client_for(ctlog).tree_head()
    assert rolled.size == 650 and rolled.root_hash == MerkleTree(leaves_of(log, 650)).root()
    assert client_for(ctlog).compact_range_at(rolled).root() == rolled.root_hash
    log.faults.rollback_to = None
    assert client_for(ctlog).tree_head().size == 700


def test_partial_tiles_replaced_by_full_ones_are_read_from_the_full_tile(server) -> None:
    log, ctlog = tiled(server, "Local Tiled Log Filling", 200)
    old = client_for(ctlog).tree_head()
    log.grow(100)
    log.publish()  # tile 0 is full now: 000.p/200 is gone
    assert requests.get(f"{ctlog.url}tile/data/000.p/200", timeout=10).status_code == 404
    client = client_for(ctlog)
    entries = entries_of(client, 0, old.size)
    assert [e.leaf_input for e in entries] == [log.entry(i)[0] for i in range(200)]
    assert client.compact_range_at(old).root() == old.root_hash
    assert client.read_tile(0, 0, 200) == leaves_of(log, 200)
