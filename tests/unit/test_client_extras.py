"""LogClient extras against the local log server: `entry_timestamps` (both APIs) and the RFC 6962
client's audit paths without get-entry-and-proof (get-entries + get-proof-by-hash instead)."""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields, replace
from typing import Any

import pytest

from ctlib.ct.client import open_client
from ctlib.ct.leaf import parse_merkle_tree_leaf
from ctlib.ct.loglist import CTLog, parse_log_list
from ctlib.ct.merkle import CompactRange, MerkleTree, leaf_hash
from ctlib.ct.rfc6962 import LogResponseError, RFC6962Client
from ctlib.ct.static import StaticClient
from ctlib.ct.tiles import TILE_WIDTH
from ctlib.ct.types import LogClient, TreeHead, VerificationError
from ctlib.http import HttpError
from ctlib.ingest.run import plan_run
from ctlib.ingest.state import MemoryStateStore
from ctlib.lake.files import Lake
from ctlib.settings import Settings
from ctlib.testing.ctlog import Answer, LocalCTLog, LogServer

# Fast retries: a fault costs milliseconds, not the production back-off.
FAST = {"CT_HTTP_BACKOFF": "0.01", "CT_HTTP_MAX_BACKOFF": "0.05", "CT_HTTP_RETRIES": "3"}
SETTINGS = Settings.from_env(FAST)
PROOF = "get-entry-and-proof"
BY_HASH = "get-proof-by-hash"
RFC_SIZE = 300  # a full tile's worth and more: paths of every shape
TILED_SIZE = 700  # two full data tiles and a partial one of 188 entries


@pytest.fixture(scope="module")
def server() -> Iterator[LogServer]:
    with LogServer(publish_interval=0.1) as srv:
        yield srv


def add_log(server: LogServer, name: str, size: int, *, tiled: bool = False) -> tuple[LocalCTLog, CTLog]:
    log = server.add_log(name, initial_size=size, tiled=tiled)
    return log, parse_log_list(server.log_list()).by_slug(log.slug)


@pytest.fixture(scope="module")
def rfc_log(server: LogServer) -> tuple[LocalCTLog, CTLog]:
    return add_log(server, "Extras RFC 6962 Log", RFC_SIZE)


@pytest.fixture(scope="module")
def tiled_log(server: LogServer) -> tuple[LocalCTLog, CTLog]:
    return add_log(server, "Extras Tiled Log", TILED_SIZE, tiled=True)


def rfc_client(ctlog: CTLog) -> RFC6962Client:
    client = open_client(ctlog, SETTINGS)
    assert isinstance(client, RFC6962Client)
    return client


def intercept(
    monkeypatch: pytest.MonkeyPatch,
    log: LocalCTLog,
    refuse: Mapping[str, int] | None = None,
    rewrite: Callable[[str, Any], Any] | None = None,
) -> Counter[str]:
    """Count the log's RFC 6962 requests by endpoint; answer `refuse[endpoint]` (a status)
    instead of the real answer, and pass 200 JSON bodies through `rewrite(endpoint, body)`.
    A 404 for get-entry-and-proof comes from Faults.not_found where ctlog has it."""
    refuse = dict(refuse or {})
    if refuse.get(PROOF) == 404 and "not_found" in {f.name for f in fields(log.faults)}:
        monkeypatch.setattr(log.faults, "not_found", frozenset({PROOF}))
        del refuse[PROOF]
    seen: Counter[str] = Counter()
    real = log.answer

    def answer(endpoint: str, query: Mapping[str, str]) -> Answer:
        seen[endpoint] += 1
        if endpoint in refuse:
            return Answer(refuse[endpoint], b"refused by the test", content_type="text/plain")
        got = real(endpoint, query)
        if rewrite is not None and got.status == 200:
            got = replace(got, body=json.dumps(rewrite(endpoint, json.loads(got.body))).encode())
        return got

    monkeypatch.setattr(log, "answer", answer)
    return seen


def points_of(client: LogClient, start: int, end: int) -> list[tuple[int, int]]:
    """(index, timestamp) of [start, end) as fetch_range serves the entries."""
    entries = [e for batch in client.fetch_range(start, end, batch=1000, in_flight=2) for e in batch]
    assert [e.index for e in entries] == list(range(start, end))
    return [(e.index, parse_merkle_tree_leaf(e.leaf_input).timestamp_ms) for e in entries]


def leaves_of(log: LocalCTLog, end: int) -> list[bytes]:
    return [leaf_hash(log.entry(i)[0]) for i in range(end)]


def head_of(tree: MerkleTree, size: int) -> TreeHead:
    return TreeHead(size, 0, tree.root(size), "")


def tree_leaves(tree: MerkleTree, size: int) -> list[bytes]:
    return [tree.leaf_hash_at(i) for i in range(size)]


# --------------------------------------------------------------------------- entry_timestamps


def test_rfc6962_entry_timestamps_read_one_entry(monkeypatch, rfc_log) -> None:
    log, ctlog = rfc_log
    client = rfc_client(ctlog)
    expected = dict(points_of(client, 0, RFC_SIZE))
    seen = intercept(monkeypatch, log)
    for index in (0, 1, 137, 255, 256, RFC_SIZE - 1):
        assert client.entry_timestamps(index, RFC_SIZE) == [(index, expected[index])]
    assert seen == Counter({"get-entries": 6})  # one request each
    assert client.entry_timestamps(5, 6) == [(5, expected[5])]  # any tree holding the entry
    for index, size in ((RFC_SIZE, RFC_SIZE), (-1, RFC_SIZE), (10, 10)):
        with pytest.raises(ValueError, match=f"{log.slug}: entry {index} is not in a tree of size {size}"):
            client.entry_timestamps(index, size)


@pytest.mark.parametrize(
    ("leaf", "problem"),
    [(b"\x00\x00\x00\x01", "4 bytes is too short"), (b"\x01" + b"\x00" * 20, "version 1, leaf_type 0")],
)
def test_rfc6962_entry_timestamps_refuse_a_bad_leaf(monkeypatch, rfc_log, leaf: bytes, problem: str) -> None:
    log, ctlog = rfc_log

    def bad_leaf(endpoint: str, body: Any) -> Any:
        body["entries"][0]["leaf_input"] = base64.b64encode(leaf).decode()
        return body

    intercept(monkeypatch, log, rewrite=bad_leaf)
    with pytest.raises(LogResponseError, match=f"{log.slug}: entry 42: .*{problem}"):
        rfc_client(ctlog).entry_timestamps(42, RFC_SIZE)


@pytest.mark.parametrize(
    ("index", "tree_size", "first", "last", "reads"),
    [
        (0, TILED_SIZE, 0, 256, 1),  # full tiles
        (300, TILED_SIZE, 256, 512, 1),
        (511, TILED_SIZE, 256, 512, 1),
        (512, TILED_SIZE, 512, TILED_SIZE, 1),  # the partial last tile: 188 entries
        (TILED_SIZE - 1, TILED_SIZE, 512, TILED_SIZE, 1),
        # A smaller tree's partial tile: .p/138 and the full tile are not served, .p/188 is.
        (600, 650, 512, 650, 3),
        (255, 256, 0, 256, 1),  # a tree of whole tiles
    ],
)
def test_static_entry_timestamps_read_the_whole_bundle(tiled_log, index, tree_size, first, last, reads) -> None:
    log, ctlog = tiled_log
    client = open_client(ctlog, SETTINGS)
    assert isinstance(client, StaticClient)
    expected = points_of(client, first, last)
    before = log.counts().by_endpoint
    points = client.entry_timestamps(index, tree_size)
    assert points == expected and len(points) == min(TILE_WIDTH, tree_size - first)
    after = log.counts().by_endpoint
    assert after.get("issuer", 0) == before.get("issuer", 0)  # no issuer fetched for timestamps
    assert after.get("data", 0) - before.get("data", 0) == reads
    with pytest.raises(ValueError, match=f"{log.slug}: entry {tree_size} is not in a tree of size {tree_size}"):
        client.entry_timestamps(tree_size, tree_size)


# --------------------------------------------------------------------------- audit paths


SIZES = (1, 2, 7, 255, 256, 257, RFC_SIZE)
BEFORE = (1, 2, 3, 100, 255, 256, 257, RFC_SIZE - 1)


def ranges_of(client: RFC6962Client, tree: MerkleTree) -> tuple[list[CompactRange], list[CompactRange]]:
    at = [client.compact_range_at(head_of(tree, size)) for size in SIZES]
    head = head_of(tree, RFC_SIZE)
    before = [client.compact_range_before(index, head) for index in BEFORE]
    return at, before


def test_fallback_gives_the_same_compact_ranges(monkeypatch, caplog, rfc_log) -> None:
    log, ctlog = rfc_log
    tree = MerkleTree(leaves_of(log, RFC_SIZE))
    caplog.set_level(logging.INFO, logger="ctlib.ct.rfc6962")
    seen = intercept(monkeypatch, log)
    direct = ranges_of(rfc_client(ctlog), tree)
    assert seen[PROOF] == len(SIZES) + len(BEFORE) and seen[BY_HASH] == 0
    assert direct[0] == [CompactRange.from_leaf_hashes(0, tree_leaves(tree, size)) for size in SIZES]
    assert [r.root() for r in direct[0]] == [tree.root(size) for size in SIZES]
    assert direct[1] == [CompactRange.from_leaf_hashes(0, tree_leaves(tree, index)) for index in BEFORE]

    monkeypatch.undo()
    seen = intercept(monkeypatch, log, refuse={PROOF: 404})
    client = rfc_client(ctlog)
    assert ranges_of(client, tree) == direct
    # One 404, remembered: every later call goes straight to get-entries + get-proof-by-hash.
    calls = len(SIZES) + len(BEFORE)
    assert (seen[PROOF], seen[BY_HASH], seen["get-entries"]) == (1, calls, calls)
    ways = [r.getMessage() for r in caplog.records if "audit paths come from" in r.getMessage()]
    assert ways == [
        f"{log.slug}: audit paths come from get-entry-and-proof",
        f"{log.slug}: audit paths come from get-entries + get-proof-by-hash (get-entry-and-proof answered HTTP 404)",
    ]  # once per client


@pytest.mark.parametrize("status", [501, 400])
def test_other_refusals_fall_back_too(monkeypatch, rfc_log, status: int) -> None:
    log, ctlog = rfc_log
    tree = MerkleTree(leaves_of(log, RFC_SIZE))
    seen = intercept(monkeypatch, log, refuse={PROOF: status})
    client = rfc_client(ctlog)
    head = head_of(tree, RFC_SIZE)
    assert client.compact_range_at(head).root() == head.root_hash
    assert client.compact_range_before(100, head) == CompactRange.from_leaf_hashes(0, tree_leaves(tree, 100))
    assert (seen[PROOF], seen[BY_HASH]) == (1, 2)  # a 400 too, once the fallback answered


def test_a_400_is_not_remembered_when_the_fallback_fails_too(monkeypatch, rfc_log) -> None:
    log, ctlog = rfc_log
    tree = MerkleTree(leaves_of(log, RFC_SIZE))
    seen = intercept(monkeypatch, log, refuse={PROOF: 400, BY_HASH: 400})
    client = rfc_client(ctlog)
    for _ in range(2):
        with pytest.raises(HttpError, match=f"{log.slug}: get-proof-by-hash for leaf 100 at tree size {RFC_SIZE}") as err:
            client.compact_range_before(100, head_of(tree, RFC_SIZE))
        assert err.value.status == 400
        assert any("get-entry-and-proof answered HTTP 400" in note for note in err.value.__notes__)
    assert (seen[PROOF], seen[BY_HASH]) == (2, 2)


def test_other_errors_do_not_fall_back(monkeypatch, rfc_log) -> None:
    log, ctlog = rfc_log
    tree = MerkleTree(leaves_of(log, RFC_SIZE))
    seen = intercept(monkeypatch, log, refuse={PROOF: 403})
    with pytest.raises(HttpError, match="HTTP 403") as err:
        rfc_client(ctlog).compact_range_before(100, head_of(tree, RFC_SIZE))
    assert err.value.status == 403 and seen[BY_HASH] == 0


def test_a_duplicate_leaf_elsewhere_is_a_clear_error(monkeypatch, rfc_log) -> None:
    log, ctlog = rfc_log
    tree = MerkleTree(leaves_of(log, RFC_SIZE))

    def elsewhere(endpoint: str, body: Any) -> Any:
        return {**body, "leaf_index": 3} if endpoint == BY_HASH else body

    intercept(monkeypatch, log, refuse={PROOF: 404}, rewrite=elsewhere)
    client = rfc_client(ctlog)
    with pytest.raises(LogResponseError, match=f"{log.slug}: .* leaf 100 .*answered leaf_index 3"):
        client.compact_range_before(100, head_of(tree, RFC_SIZE))
    last = RFC_SIZE - 1
    with pytest.raises(LogResponseError, match=f"{log.slug}: .* leaf {last} .*answered leaf_index 3"):
        client.compact_range_at(head_of(tree, RFC_SIZE))


def test_a_malformed_fallback_answer_names_log_and_index(monkeypatch, rfc_log) -> None:
    log, ctlog = rfc_log
    tree = MerkleTree(leaves_of(log, RFC_SIZE))

    def no_path(endpoint: str, body: Any) -> Any:
        return {"leaf_index": body["leaf_index"]} if endpoint == BY_HASH else body

    intercept(monkeypatch, log, refuse={PROOF: 404}, rewrite=no_path)
    client = rfc_client(ctlog)
    with pytest.raises(LogResponseError, match=f"{log.slug}: malformed audit path answer for leaf 100 at size {RFC_SIZE}"):
        client.compact_range_before(100, head_of(tree, RFC_SIZE))
    with pytest.raises(VerificationError, match=f"{log.slug}: cannot anchor at size {RFC_SIZE} \\(leaf {RFC_SIZE - 1}\\)"):
        client.compact_range_at(head_of(tree, RFC_SIZE))


def test_plan_run_starts_at_latest_without_get_entry_and_proof(monkeypatch, tmp_path, server) -> None:
    log, ctlog = add_log(server, "Extras No Entry And Proof", 40)
    seen = intercept(monkeypatch, log, refuse={PROOF: 404})
    settings = Settings.from_env({**FAST, "CT_START_AT": "latest", "CT_LAKE": str(tmp_path / "lake")})
    store, lake = MemoryStateStore(), Lake.open(str(tmp_path / "lake"))
    plan = plan_run(ctlog, settings, store, lake)
    assert (plan.start, plan.tree_size, plan.ranges) == (40, 40, [])
    state = store.load(log.slug)
    assert state is not None and state.next_index == 40
    expected = CompactRange.from_leaf_hashes(0, leaves_of(log, 40))
    assert state.compact_range == tuple(h.hex() for h in expected.hashes)
    assert (seen[PROOF], seen[BY_HASH]) == (1, 1)
    # The next run, after the log grew, plans the new entries from there.
    log.grow(5)
    log.publish()
    plan = plan_run(ctlog, settings, store, lake)
    assert (plan.start, plan.tree_size, plan.ranges) == (40, 45, [(40, 45)])
