"""The cheaper pieces of the fetch path give exactly what the straightforward ones gave."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ctlib.sinks.kafka import _iso_utc


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
