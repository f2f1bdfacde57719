"""Decode a range of RFC 6962 log entries into the certs and errors Arrow tables.

Contract: `decode_entries` never raises because of an entry's content. Every entry lands
in exactly one of the two tables, rows follow the input order (callers pass index order),
and `leaf_hashes` holds one hash per input entry, errors included.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from ctlib.ct.leaf import ExtraData, LeafError, MerkleTreeLeaf, parse_extra_data, parse_merkle_tree_leaf
from ctlib.ct.types import RawEntry
from ctlib.decode.x509 import (
    CertError,
    cert_fields_and_tbs_sha256,
    certificate_serial,
    format_serial,
    is_precert_signing_certificate,
    load_certificate,
    spki_sha256,
    tbs_fields,
)
from ctlib.lake.layout import CERTS_SCHEMA, ERRORS_SCHEMA

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_S = timedelta(seconds=1)
_MAX_TIMESTAMP_MS = 2**63 - 1  # the wire has uint64, Arrow timestamps are int64


@dataclass(frozen=True, slots=True)
class LogRef:
    log_id: str  # base64, as in the log list
    slug: str


@dataclass(frozen=True)
class DecodedBatch:
    certs: pa.Table  # CERTS_SCHEMA, input (index) order
    errors: pa.Table  # ERRORS_SCHEMA
    leaf_hashes: list[bytes]  # SHA256(0x00 || leaf_input) of every entry, in input order


class ChainCache:
    """Per-certificate results for chain certificates, keyed on their DER bytes.

    Intermediates and roots repeat in almost every entry of a log, so each is hashed
    (and, for precert validation, parsed) once. Bounded: cleared when full, which for
    the few dozen issuers of one log is rare and cheap to refill. Not thread-safe.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._hex: dict[bytes, str] = {}
        self._issuer: dict[bytes, tuple[bytes, bool]] = {}

    def __len__(self) -> int:
        return len(self._hex) + len(self._issuer)

    def sha256_hex(self, der: bytes) -> str:
        hit = self._hex.get(der)
        if hit is None:
            if len(self._hex) >= self._max:
                self._hex.clear()
            hit = self._hex[der] = hashlib.sha256(der).hexdigest()
        return hit

    def issuer_info(self, der: bytes) -> tuple[bytes, bool]:
        """(SHA-256 of the SPKI, is a Precertificate Signing Certificate); CertError if unreadable."""
        hit = self._issuer.get(der)
        if hit is None:
            if len(self._issuer) >= self._max:
                self._issuer.clear()
            hit = (spki_sha256(der), is_precert_signing_certificate(load_certificate(der)))
            self._issuer[der] = hit
        return hit


class _Inconsistent(ValueError):
    """The precert leaf and its PrecertChainEntry disagree."""


def _issuer_info(cache: ChainCache, chain: tuple[bytes, ...], at: int) -> tuple[bytes, bool]:
    try:
        return cache.issuer_info(chain[at])
    except CertError as exc:
        raise CertError(f"cannot decode chain[{at}]: {exc}") from None


def _check_precert(leaf: MerkleTreeLeaf, extra: ExtraData, tbs_serial: str, cache: ChainCache) -> None:
    """RFC 6962 §3.1: issuer_key_hash names the final issuer; the serials must agree.

    `tbs_serial` is the leaf TBS's serial as formatted in CertFields.
    """
    assert leaf.issuer_key_hash is not None and extra.pre_certificate is not None
    if not extra.chain:
        raise _Inconsistent("precert entry has an empty precertificate_chain")
    problems = []
    issuer_at = 0
    key_hash, is_psc = _issuer_info(cache, extra.chain, 0)
    if is_psc:  # chain[0] signed the precert on the CA's behalf; the real issuer is next
        if len(extra.chain) < 2:
            raise _Inconsistent("chain[0] is a Precertificate Signing Certificate but chain[1] is missing")
        issuer_at = 1
        key_hash, _ = _issuer_info(cache, extra.chain, 1)
    if key_hash != leaf.issuer_key_hash:
        problems.append(
            f"issuer_key_hash {leaf.issuer_key_hash.hex()} does not match "
            f"SHA-256 of chain[{issuer_at}] SPKI {key_hash.hex()}"
        )
    try:
        pre_serial = format_serial(certificate_serial(extra.pre_certificate))
    except CertError as exc:
        raise CertError(f"cannot decode pre_certificate: {exc}") from None
    if pre_serial != tbs_serial:
        problems.append(f"pre_certificate serial {pre_serial} does not match TBS serial {tbs_serial}")
    if problems:
        raise _Inconsistent("precert entry inconsistent with its extra_data: " + "; ".join(problems))


def _cert_row(
    log: LogRef, entry: RawEntry, leaf_hash: bytes, leaf: MerkleTreeLeaf, cache: ChainCache,
    ingested_ms: int, store_der: bool,
) -> tuple[object, ...]:
    """One CERTS_SCHEMA row, values in schema order. Raises on any decoding problem."""
    extra = parse_extra_data(leaf.entry_type, entry.extra_data)
    if leaf.entry_type == "x509":
        assert leaf.cert_der is not None
        der = leaf.cert_der
        fields, tbs_sha256 = cert_fields_and_tbs_sha256(der)
    else:
        assert leaf.tbs_der is not None and extra.pre_certificate is not None
        fields = tbs_fields(leaf.tbs_der)
        _check_precert(leaf, extra, fields.serial, cache)
        der = extra.pre_certificate
        tbs_sha256 = hashlib.sha256(leaf.tbs_der).hexdigest()
    return (
        log.log_id,
        log.slug,
        entry.index,
        leaf_hash.hex(),
        leaf.timestamp_ms,
        leaf.entry_type,
        hashlib.sha256(der).hexdigest(),
        tbs_sha256,
        fields.serial,
        fields.subject,
        fields.subject_cn,
        fields.issuer,
        fields.issuer_cn,
        fields.issuer_org,
        (fields.not_before - _EPOCH) // _S,
        (fields.not_after - _EPOCH) // _S,
        fields.dns_names,
        fields.ip_addresses,
        fields.is_ca,
        fields.key_type,
        fields.key_bits,
        fields.signature_algorithm,
        [cache.sha256_hex(c) for c in extra.chain],
        ingested_ms,
        der if store_der else None,
    )


def _cause(exc: Exception) -> str:
    if isinstance(exc, LeafError):
        return f"malformed entry: {exc}"
    if isinstance(exc, (CertError, _Inconsistent)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _table(rows: list[tuple[object, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows)) if rows else [()] * len(schema)
    return pa.Table.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, schema, strict=True)], schema=schema
    )


def decode_entries(
    log: LogRef,
    entries: Sequence[RawEntry],
    ingested_at: datetime,
    *,
    store_der: bool = False,
    chain_cache: ChainCache | None = None,
) -> DecodedBatch:
    """Decode entries into CERTS_SCHEMA rows; undecodable ones become ERRORS_SCHEMA rows.

    An error reason reads "<slug> index <n>: <cause>". Precert entries whose
    PrecertChainEntry disagrees with the leaf (issuer key hash or serial) are errors.
    `ingested_at` must be timezone-aware. Pass one `chain_cache` across batches of a log.
    """
    if ingested_at.tzinfo is None:
        raise ValueError("ingested_at must be timezone-aware")
    cache = chain_cache if chain_cache is not None else ChainCache()
    ingested_ms = (ingested_at - _EPOCH) // _MS
    rows: list[tuple[object, ...]] = []
    errors: list[tuple[object, ...]] = []
    leaf_hashes: list[bytes] = []
    for entry in entries:
        leaf_hash = hashlib.sha256(b"\x00" + entry.leaf_input).digest()
        leaf_hashes.append(leaf_hash)
        timestamp_ms = None
        try:
            leaf = parse_merkle_tree_leaf(entry.leaf_input)
            if leaf.timestamp_ms > _MAX_TIMESTAMP_MS:
                raise LeafError(f"timestamp {leaf.timestamp_ms} is out of range")
            timestamp_ms = leaf.timestamp_ms
            rows.append(_cert_row(log, entry, leaf_hash, leaf, cache, ingested_ms, store_der))
        except Exception as exc:  # one bad entry must never stop the batch
            errors.append(
                (
                    log.log_id,
                    log.slug,
                    entry.index,
                    timestamp_ms,
                    f"{log.slug} index {entry.index}: {_cause(exc)}",
                    base64.b64encode(entry.leaf_input).decode("ascii"),
                    base64.b64encode(entry.extra_data).decode("ascii"),
                    ingested_ms,
                )
            )
    return DecodedBatch(_table(rows, CERTS_SCHEMA), _table(errors, ERRORS_SCHEMA), leaf_hashes)
