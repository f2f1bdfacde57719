"""The JSON messages of ct-certs: one per row, the certs columns by name, stable formats."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pyarrow as pa

from ctlib.lake.layout import CERTS_SCHEMA
from ctlib.kafka import rows_as_messages


def _row(index: int, **overrides) -> dict:
    row = {
        "log_id": "bG9nIGlk", "log_slug": "some_log", "index": index, "leaf_hash": "ab" * 32,
        "timestamp": datetime(2026, 3, 4, 5, 6, 7, 89000, tzinfo=UTC), "entry_type": "precert",
        "cert_sha256": "cd" * 32, "tbs_sha256": "ef" * 32, "serial": "-1f", "subject": 'CN=a"b\\c,O=é',
        "subject_cn": 'a"b\\c', "issuer": "CN=CA", "issuer_cn": "CA", "issuer_org": None,
        "not_before": datetime(2026, 3, 4, tzinfo=UTC), "not_after": datetime(2026, 6, 2, 23, 59, 59, tzinfo=UTC),
        "dns_names": ["xn--bcher-kva.example", "b.example"], "ip_addresses": ["192.0.2.1", "2001:db8::1"],
        "is_ca": None, "key_type": "EC", "key_bits": 256, "signature_algorithm": "ecdsa-with-SHA256",
        "chain_sha256": ["01" * 32], "ingested_at": datetime(2026, 3, 4, 5, 7, 0, tzinfo=UTC), "cert_der": None,
    }
    return {**row, **overrides}


def test_one_message_per_row_keyed_by_log_and_index_with_every_column() -> None:
    rows = [_row(7), _row(8, cert_der=b"\x30\x82\x00\xff", is_ca=False, key_bits=None, dns_names=[])]
    messages = rows_as_messages(pa.Table.from_pylist(rows, schema=CERTS_SCHEMA))
    assert [key for key, _ in messages] == [b"bG9nIGlk:7", b"bG9nIGlk:8"]
    first, second = (json.loads(value) for _, value in messages)
    assert list(first) == CERTS_SCHEMA.names  # every column, in schema order
    assert first["timestamp"] == "2026-03-04T05:06:07.089Z"
    assert first["ingested_at"] == "2026-03-04T05:07:00.000Z"
    assert (first["not_before"], first["not_after"]) == ("2026-03-04T00:00:00Z", "2026-06-02T23:59:59Z")
    assert first["subject"] == 'CN=a"b\\c,O=é' and first["dns_names"] == ["xn--bcher-kva.example", "b.example"]
    assert first["is_ca"] is None and first["cert_der"] is None and first["issuer_org"] is None
    assert first["index"] == 7 and first["key_bits"] == 256
    assert second["cert_der"] == base64.b64encode(b"\x30\x82\x00\xff").decode()
    assert second["is_ca"] is False and second["key_bits"] is None and second["dns_names"] == []


def test_no_rows_no_messages() -> None:
    assert rows_as_messages(CERTS_SCHEMA.empty_table()) == []
