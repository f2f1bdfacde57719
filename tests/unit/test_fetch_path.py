"""The cheaper pieces of the fetch path give exactly what the straightforward ones gave."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ctlib.ct import leaf as leaf_mod
from ctlib.kafka import _iso_utc


@pytest.mark.parametrize(
    ("unit", "values"),
    [
        ("s", [-62135596800, 253402300799, 0, -1, 1700000000, None]),
        ("ms", [-62135596800000, 253402300799999, 0, -1, 1700000000123, 1700000000000, None]),
    ],
)
def test_iso_utc_renders_as_strftime_did(unit: str, values: list[int | None]) -> None:
    column = pa.chunked_array([pa.array(values[:2], pa.timestamp(unit, tz="UTC")),
                               pa.array(values[2:], pa.timestamp(unit, tz="UTC"))])
    expected = pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")
    assert _iso_utc(column).to_pylist() == expected.to_pylist()
    assert _iso_utc(column).to_pylist()[-1] is None


def test_iso_utc_examples() -> None:
    column = pa.chunked_array([pa.array([1772600767089], pa.timestamp("ms", tz="UTC"))])
    assert _iso_utc(column).to_pylist() == ["2026-03-04T05:06:07.089Z"]
    column = pa.chunked_array([pa.array([1772600767], pa.timestamp("s", tz="UTC"))])
    assert _iso_utc(column).to_pylist() == ["2026-03-04T05:06:07Z"]


# --- leaf.py: the struct fast paths agree with the step-by-step parsers ---------------------

def _outcome(parse, *args):
    try:
        return parse(*args)
    except leaf_mod.LeafError as exc:
        return ("LeafError", str(exc))


def _mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    out = [data, data[:-1], data + b"\x00", b"", data[:1], data[:12], data[:47]]
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(min(len(mutated), 64)) if rng.random() < 0.7 else rng.randrange(len(mutated))
            mutated[at] = rng.randrange(256)
        out.append(bytes(mutated))
        cut = rng.randrange(len(data) + 1)
        out.append(data[:cut])
    return out


def _samples() -> list[tuple[bytes, bytes]]:
    cert, tbs, issuer = b"\x30\x03\x02\x01\x05", b"\x30\x05\x02\x01\x07\x05\x00", b"\x30\x02\x05\x00"
    return [
        (leaf_mod.encode_x509_leaf(1_700_000_000_000, cert), leaf_mod.encode_x509_chain([issuer, cert])),
        (leaf_mod.encode_x509_leaf(5, cert, b"\x01\x02"), leaf_mod.encode_x509_chain([])),
        (leaf_mod.encode_precert_leaf(7, b"\x11" * 32, tbs), leaf_mod.encode_precert_chain_entry(cert, [issuer])),
        (leaf_mod.encode_precert_leaf(2**64 - 1, b"\x22" * 32, tbs, b"\x00"), leaf_mod.encode_precert_chain_entry(cert, [])),
    ]


def test_leaf_fast_path_agrees_with_the_strict_parser_on_good_and_mangled_input() -> None:
    rng = random.Random(6962)
    for leaf_input, extra_data in _samples():
        for data in _mutations(leaf_input, rng, 400):
            assert _outcome(leaf_mod.parse_merkle_tree_leaf, data) == _outcome(
                leaf_mod._parse_merkle_tree_leaf_strict, data), data.hex()
        for entry_type in ("x509", "precert"):
            for data in _mutations(extra_data, rng, 400):
                assert _outcome(leaf_mod.parse_extra_data, entry_type, data) == _outcome(
                    leaf_mod._parse_extra_data_strict, entry_type, data), (entry_type, data.hex())


def test_leaf_fast_path_is_taken_for_well_formed_input() -> None:
    leaf_input, extra_data = _samples()[2]
    leaf = leaf_mod._fast_leaf(leaf_input)
    assert leaf == leaf_mod._parse_merkle_tree_leaf_strict(leaf_input)
    assert leaf_mod._fast_chain(extra_data, 3 + 5) == (b"\x30\x02\x05\x00",)
