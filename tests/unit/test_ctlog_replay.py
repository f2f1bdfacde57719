"""Replay growth of the local CT log, its latency knob, operators and the firehose profile."""

from __future__ import annotations

import gzip
import json
import time
from base64 import b64decode
from datetime import UTC, datetime

import pytest
import requests

from ctlib.ct.types import RawEntry
from ctlib.decode.entries import LogRef, decode_entries
from ctlib.ct.leaf import parse_extra_data, parse_merkle_tree_leaf
from ctlib.ct.loglist import load_log_list
from ctlib.ct.merkle import leaf_hash, root_hash, verify_inclusion
from ctlib.ct.sth import verify_checkpoint, verify_sth
from ctlib.testing import ctlog
from ctlib.testing.ctlog import OPERATOR, Faults, LocalCTLog, LogServer
from ctlib.testing.profiles import LATENCY, LogSpec, add_profile, firehose_profile
from ctlib.testing.replay import replay_pool
from ctlib.ct.tiles import leaf_index_of, parse_data_tile


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _decode(log: LocalCTLog, start: int, end: int):
    entries = [RawEntry(i, *log.entry(i)) for i in range(start, end)]
    return decode_entries(LogRef(log.log_id_b64, log.slug), entries, datetime.now(UTC))


def _timestamps(log: LocalCTLog, start: int, end: int) -> list[int]:
    return [parse_merkle_tree_leaf(log.entry(i)[0]).timestamp_ms for i in range(start, end)]


def _root_of(log: LocalCTLog, size: int) -> bytes:
    return root_hash([leaf_hash(log.entry(i)[0]) for i in range(size)])


# --------------------------------------------------------------------------- replayed entries


def test_replayed_entries_decode_with_precerts_matching_their_final_certificates():
    log = LocalCTLog("Replay Decode Log", replay=True)
    before = _now_ms()
    log.grow(700)
    batch = _decode(log, 0, 700)
    assert batch.errors.num_rows == 0, batch.errors.column("reason").to_pylist()[:3]
    rows = batch.certs.to_pylist()
    assert [r["index"] for r in rows] == list(range(700))
    kinds = {r["entry_type"] for r in rows}
    assert kinds == {"x509", "precert"}
    # A precertificate and its final certificate share the TBS (without poison and SCTs).
    by_tbs: dict[str, set[str]] = {}
    for r in rows:
        by_tbs.setdefault(r["tbs_sha256"], set()).add(r["entry_type"])
    assert sum(types == {"x509", "precert"} for types in by_tbs.values()) >= 10
    # Chains end at roots the log serves; timestamps are the replay's, not the pool's.
    roots = set(log.roots)
    for r in rows:
        leaf_input, extra_data = log.entry(r["index"])
        assert parse_extra_data(r["entry_type"], extra_data).chain[-1] in roots
    stamps = [int(r["timestamp"].timestamp() * 1000) for r in rows]
    assert before - 5_000 <= min(stamps) and max(stamps) <= _now_ms()


def test_pool_is_built_once_and_certificates_repeat_with_fresh_leaves():
    pool = replay_pool()
    assert replay_pool() is pool and len(pool) >= 256
    first, second = LocalCTLog("Replay Pool A", replay=True), LocalCTLog("Replay Pool B", replay=True)
    assert first._replay is not None and second._replay is not None
    assert first._replay.pool is second._replay.pool is pool
    first.grow(len(pool) + 1)
    leaf0, leaf_n = first.entry(0)[0], first.entry(len(pool))[0]
    # Same certificate and chain (everything after the 12-byte header), another timestamp:
    # distinct log entries, with distinct leaf hashes.
    assert leaf0[12:] == leaf_n[12:] and first.entry(0)[1] == first.entry(len(pool))[1]
    assert parse_merkle_tree_leaf(leaf0).timestamp_ms < parse_merkle_tree_leaf(leaf_n).timestamp_ms
    assert leaf_hash(leaf0) != leaf_hash(leaf_n)


def test_replay_timestamps_are_fresh_and_never_decrease_even_when_the_clock_does(monkeypatch):
    log = LocalCTLog("Replay Clock Log", replay=True)
    began = _now_ms()
    log.grow(300)
    time.sleep(0.02)
    log.grow(300)
    ended = _now_ms()
    stamps = _timestamps(log, 0, 600)
    assert stamps == sorted(stamps)
    assert began - 5_000 <= stamps[0] and stamps[-1] <= ended
    assert stamps[-1] - stamps[299] >= 20  # the second growth is stamped over the 20 ms since
    assert len(set(stamps)) > 100  # spread over the time since the last growth, not one stamp

    frozen = stamps[-1] - 60_000  # the wall clock jumps a minute back
    monkeypatch.setattr(ctlog, "_now_ms", lambda: frozen)
    log.grow(50)
    later = _timestamps(log, 600, 650)
    assert later == [stamps[-1]] * 50
    sth = log.publish()
    assert sth.timestamp >= stamps[-1]


def test_tiled_replay_entries_carry_their_leaf_index_and_data_tiles_parse():
    log = LocalCTLog("Replay Tiled Log", replay=True, tiled=True)
    log.grow(300)
    log.publish()
    for i in (0, 1, 255, 256, 299):
        assert leaf_index_of(parse_merkle_tree_leaf(log.entry(i)[0]).extensions) == i
    assert _decode(log, 0, 300).errors.num_rows == 0

    answer = log.answer_static("tile/data/000")
    assert answer.status == 200
    tile = parse_data_tile(answer.body, 0, 256)  # checks every leaf_index is its position
    assert [t.leaf_input for t in tile] == [log.entry(i)[0] for i in range(256)]
    fingerprints = log.issuers
    for t, i in zip(tile, range(256)):
        assert all(fp in fingerprints for fp in t.chain)
        assert t.leaf_hash == leaf_hash(log.entry(i)[0])
    # The full tile is cached: asked again, the same bytes; gzip decompresses to them.
    again = log.answer_static("tile/data/000", accept_gzip=True)
    assert gzip.decompress(again.body) == answer.body
    assert dict(again.headers)["Content-Encoding"] == "gzip"
    partial = log.answer_static("tile/data/001.p/44")
    assert [t.leaf_input for t in parse_data_tile(partial.body, 1, 44)] == [log.entry(i)[0] for i in range(256, 300)]


def test_replay_tree_matches_root_hash_across_growths_and_heads_verify():
    log = LocalCTLog("Replay Root Log", replay=True)
    tiled = LocalCTLog("Replay Root Tiled Log", replay=True, tiled=True)
    for n in (1, 1000, 37, 2100):
        for each in (log, tiled):
            each.grow(n)
            sth = each.publish()
            assert sth.root_hash == _root_of(each, sth.tree_size)
    verify_sth(log.sth, log.key_der)
    checkpoint = verify_checkpoint(tiled.checkpoint(), tiled.origin, tiled.key_der)
    assert (checkpoint.tree_size, checkpoint.root_hash) == (tiled.sth.tree_size, tiled.sth.root_hash)
    # Proofs come from the same tree.
    body = json.loads(log.answer("get-entry-and-proof", {"leaf_index": "1500", "tree_size": "3138"}).body)
    proof = [b64decode(h) for h in body["audit_path"]]
    verify_inclusion(leaf_hash(b64decode(body["leaf_input"])), 1500, 3138, proof, log.sth.root_hash)


def test_get_entries_of_a_replay_log_serves_the_stored_bytes_and_faults_still_apply():
    log = LocalCTLog("Replay Serving Log", replay=True, faults=Faults(cap=100, malformed=frozenset({5})))
    log.grow(200)
    index = log.submit(["planted.example.com"])
    log.grow(50)
    log.publish()
    answer = log.answer("get-entries", {"start": "0", "end": "299"})
    entries = json.loads(answer.body)["entries"]
    assert len(entries) == 100  # the cap
    served = [(b64decode(e["leaf_input"]), b64decode(e["extra_data"])) for e in entries]
    assert served == [log.entry(i) for i in range(100)]

    planted = json.loads(log.answer("get-entries", {"start": str(index), "end": str(index)}).body)["entries"]
    assert b64decode(planted[0]["leaf_input"]) == log.entry(index)[0]
    rows = _decode(log, index, index + 1).certs.to_pylist()
    assert rows[0]["dns_names"] == ["planted.example.com"]
    errors = _decode(log, 0, 250).errors.to_pylist()
    assert [e["index"] for e in errors] == [5]  # the malformed entry, logged corrupted

    log.faults.tampered = frozenset({7})
    tampered = json.loads(log.answer("get-entries", {"start": "6", "end": "8"}).body)["entries"]
    leaves = [b64decode(e["leaf_input"]) for e in tampered]
    assert leaves[0] == log.entry(6)[0] and leaves[2] == log.entry(8)[0]
    assert leaves[1] != log.entry(7)[0] and len(leaves[1]) == len(log.entry(7)[0])


# --------------------------------------------------------------------------- latency


def test_latency_sleeps_on_every_request_of_both_apis():
    quick = LocalCTLog("Latency Quick Log", replay=True)
    slow = LocalCTLog("Latency Slow Log", replay=True, faults=Faults(latency=(0.08, 0.1)))
    tiled = LocalCTLog("Latency Tiled Log", replay=True, tiled=True, faults=Faults(latency=(0.08, 0.1)))
    for log in (quick, slow, tiled):
        log.grow(10)
        log.publish()

    def took(call) -> float:
        began = time.monotonic()
        assert call().status in (200, 404)
        return time.monotonic() - began

    assert took(lambda: quick.answer("get-sth", {})) < 0.05
    for call in (
        lambda: slow.answer("get-sth", {}),
        lambda: slow.answer("get-entries", {"start": "0", "end": "9"}),
        lambda: slow.answer("no-such-endpoint", {}),
        lambda: tiled.answer_static("checkpoint"),
        lambda: tiled.answer_static("tile/data/000.p/10"),
    ):
        assert 0.08 <= took(call) < 0.5


# --------------------------------------------------------------------------- profile and operators


def test_firehose_profile_has_the_asked_rate_and_shape():
    specs = firehose_profile()
    assert len(specs) == 40 and sum(s.tiled for s in specs) == 16
    assert sum(s.rate for s in specs) == pytest.approx(3200.0)
    rates = sorted((s.rate for s in specs), reverse=True)
    assert rates[:3] == [500.0] * 3 and rates[3:9] == [150.0] * 6
    assert rates[9:] == pytest.approx([800 / 31] * 31)
    hot = [s for s in specs if s.rate == 500.0]
    assert [(s.operator, s.tiled, s.cap) for s in hot] == [
        ("Let's Encrypt", True, None), ("Google", False, 32), ("Google", False, 32)
    ]
    medium = {(s.operator, s.tiled, s.cap) for s in specs if s.rate == 150.0}
    assert {("Cloudflare", False, 256), ("Sectigo", False, 192)} <= medium
    assert sum(tiled for _, tiled, _ in medium) == 4
    for spec in specs:
        assert (spec.cap is None) == spec.tiled
        assert spec.cap in (None, 32, 192, 256)
        assert spec.cap != 32 or spec.operator == "Google"
        assert spec.latency == LATENCY == (0.05, 0.15)
    assert len({ctlog.slugify(s.name) for s in specs}) == 40
    assert len({s.operator for s in specs}) >= 6

    small = firehose_profile(1000.0, logs=10, tiled=4)
    assert len(small) == 10 and sum(s.tiled for s in small) == 4
    assert sum(s.rate for s in small) == pytest.approx(1000.0)
    assert small[0].rate > small[3].rate > small[9].rate
    with pytest.raises(ValueError):
        firehose_profile(100.0, logs=3, tiled=4)


def test_log_list_groups_logs_by_operator_and_keeps_the_default_shape(tmp_path):
    with LogServer() as server:
        assert [op["name"] for op in server.log_list()["operators"]] == [OPERATOR]
        server.add_log("Default Log A")
        server.add_log("Default Log B", tiled=True)
        default_only = server.log_list()["operators"]
        assert default_only == [
            {
                "name": OPERATOR,
                "email": ["ct-airflow-local@example.org"],
                "logs": [default_only[0]["logs"][0]],
                "tiled_logs": [default_only[0]["tiled_logs"][0]],
            }
        ]
        specs = [
            LogSpec("Local Google 'Argon' log", "Google", False, 10.0, 32),
            LogSpec("Local Let's Encrypt 'Oak' log", "Let's Encrypt", True, 10.0, None),
            LogSpec("Local Google 'Xenon' log", "Google", False, 10.0, 32),
        ]
        logs = add_profile(server, specs, growing=False)
        assert logs[0].faults.cap == 32 and logs[1].faults.latency == LATENCY and logs[0].rate == 0
        operators = server.log_list()["operators"]
        assert [op["name"] for op in operators] == [OPERATOR, "Google", "Let's Encrypt"]
        google = operators[1]
        assert [log["description"] for log in google["logs"]] == ["Local Google 'Argon' log", "Local Google 'Xenon' log"]
        assert google["tiled_logs"] == [] and len(operators[2]["tiled_logs"]) == 1
        assert google["email"] != operators[0]["email"]
        parsed = load_log_list(server.write_log_list(tmp_path / "log_list.json"))
        by_slug = {log.slug: log.operator for log in parsed.logs}
        assert by_slug["local_google_xenon_log"] == "Google"
        assert by_slug["local_let_s_encrypt_oak_log"] == "Let's Encrypt"
        assert by_slug["default_log_a"] == OPERATOR


def test_profile_logs_grow_at_their_rates_and_serve_over_http():
    specs = [replace_latency(s) for s in firehose_profile(400.0, logs=4, tiled=1)]
    with LogServer(publish_interval=0.1) as server:
        logs = add_profile(server, specs, initial_size=10)
        time.sleep(1.5)
        sizes = [log.sth.tree_size for log in logs]
        hot, slow = sizes[0], sizes[-1]
        assert hot > 2 * slow > 20
        classic = next(log for log in logs if not log.tiled)
        url = server.url_of(classic)
        sth = requests.get(f"{url}ct/v1/get-sth", timeout=10).json()
        got = requests.get(f"{url}ct/v1/get-entries", params={"start": 0, "end": sth["tree_size"] - 1}, timeout=10)
        entries = got.json()["entries"]
        assert len(entries) == min(classic.faults.cap, sth["tree_size"])
        assert b64decode(entries[-1]["leaf_input"]) == classic.entry(len(entries) - 1)[0]


def replace_latency(spec: LogSpec) -> LogSpec:
    from dataclasses import replace

    return replace(spec, latency=(0.0, 0.0))
