"""Realistic certificates and precertificates for the local CT log.

`CertFactory.next_entry(timestamp_ms)` returns one log entry (leaf_input + extra_data)
the way a real log stores it: a small test PKI (two roots, three intermediates, RSA-2048
and EC P-256 issuers) issues 90-day server certificates with the usual extensions, about
half of them as precertificates, and a share of those precertificates is followed a few
entries later by its final certificate carrying an embedded SCT.

Contracts:
* The names, serials, key choices and entry kinds depend only on `seed` and the calls
  made; keys and signatures are not reproducible (ECDSA is randomised).
* A precert entry's `tbs_der` is the final certificate's TBS without the SCT list, so it
  equals `x509.Certificate.tbs_precertificate_bytes` of the final certificate.
* Not thread-safe: one factory per writer.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import ipaddress
import random
import struct
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from ctlib.ct.leaf import (
    encode_precert_chain_entry,
    encode_precert_leaf,
    encode_x509_chain,
    encode_x509_leaf,
)

EntryType = Literal["x509", "precert"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_DER = serialization.Encoding.DER

SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
DV_POLICY = x509.ObjectIdentifier("2.23.140.1.2.1")
OV_POLICY = x509.ObjectIdentifier("2.23.140.1.2.2")
VALIDITY = dt.timedelta(days=90)
BACKDATE = dt.timedelta(hours=1)  # as CAs do, against clients with slow clocks
_PKI_ORG = "ct-airflow Test PKI"
_TRUST_ORG = "ct-airflow Test Trust Services"  # a second operator, for issuer_org variety

# Share of new certificates issued as precertificates, and share of those whose final
# certificate (with embedded SCT) is logged too; a few entries later, as a CA would.
PRECERT_SHARE = 0.55
FINAL_SHARE = 0.4
FINAL_DELAY = (1, 8)


@dataclass(frozen=True, slots=True)
class GeneratedEntry:
    """One log entry: the exact get-entries bytes plus what went into it, for tests."""

    leaf_input: bytes
    extra_data: bytes
    entry_type: EntryType
    names: tuple[str, ...]  # SAN dNSNames then iPAddresses, as text
    timestamp_ms: int
    cert_der: bytes  # the certificate, or for a precert entry the pre_certificate
    tbs_der: bytes | None  # precert entries: the leaf's TBSCertificate (no poison)


# --------------------------------------------------------------------------- names

_SUBDOMAINS = (
    "www", "mail", "shop", "api", "app", "portal", "login", "cdn", "static", "dev",
    "staging", "vpn", "webmail", "autodiscover", "blog", "secure", "m", "admin", "git",
    "status", "docs", "support", "auth", "pay", "store", "img", "news", "remote", "intranet",
)  # fmt: skip
_WORDS = (
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
    "soylent", "vandelay", "nakatomi", "oscorp", "cyberdyne", "gringotts", "monarch",
    "blue", "green", "red", "north", "south", "river", "stone", "cloud", "data", "net",
    "tech", "media", "digital", "solutions", "systems", "labs", "group", "health", "bank",
    "travel", "energy", "logistics", "games", "studio", "market", "capital", "foods",
    "garden", "pixel", "rocket", "harbor", "summit", "maple", "cedar", "falcon", "orbit",
)  # fmt: skip
_TLDS = (
    ("com", 40), ("net", 8), ("org", 7), ("io", 5), ("de", 6), ("co.uk", 4), ("fr", 3),
    ("nl", 3), ("app", 2), ("dev", 2), ("info", 2), ("xyz", 2), ("com.br", 2), ("jp", 2),
    ("ru", 2), ("online", 1), ("shop", 1), ("co", 2), ("ca", 2), ("com.au", 2), ("es", 2),
)  # fmt: skip
_IDN_LABELS = (
    "münchen", "bücher", "köln", "zürich", "españa", "café", "çay", "grün",
    "日本", "例え", "пример", "москва", "ελληνικά", "中文网", "한국", "blåbær", "øl",
)  # fmt: skip
_CITIES = (
    ("US", "California", "San Francisco"), ("US", "New York", "New York"),
    ("DE", "Bayern", "München"), ("GB", "England", "London"), ("FR", "Île-de-France", "Paris"),
    ("NL", "Noord-Holland", "Amsterdam"), ("JP", "Tokyo", "Chiyoda-ku"),
)  # fmt: skip


class NameGenerator:
    """Deterministic plausible hostnames from word lists, driven by the given Random."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        tlds, weights = zip(*_TLDS)
        self._tlds: tuple[str, ...] = tlds
        self._tld_weights: tuple[int, ...] = weights

    def registered_domain(self) -> str:
        rng = self._rng
        roll = rng.random()
        if roll < 0.06:
            label = rng.choice(_IDN_LABELS).encode("idna").decode("ascii")  # xn--...
        elif roll < 0.45:
            label = f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}"
        elif roll < 0.8:
            label = rng.choice(_WORDS) + rng.choice(_WORDS)
        else:
            label = f"{rng.choice(_WORDS)}{rng.randrange(1, 999)}"
        return f"{label}.{rng.choices(self._tlds, self._tld_weights)[0]}"

    def hostnames(self) -> list[str]:
        """One certificate's DNS names: the first one is the natural CN."""
        rng = self._rng
        domain = self.registered_domain()
        roll = rng.random()
        if roll < 0.3:
            return [domain, f"www.{domain}"]
        if roll < 0.45:
            return [f"*.{domain}", domain]
        if roll < 0.6:
            return [f"{rng.choice(_SUBDOMAINS)}.{domain}"]
        if roll < 0.75:
            picked = rng.sample(_SUBDOMAINS, rng.randrange(2, 8))
            return [domain] + [f"{sub}.{domain}" for sub in picked]
        if roll < 0.85:
            deep = f"{rng.choice(_SUBDOMAINS)}.{rng.choice(('eu', 'us', 'ap', 'int'))}"
            return [f"{deep}.{domain}"]
        if roll < 0.92:
            # Hosting-style multi-tenant certificate: several unrelated domains.
            return [domain] + [self.registered_domain() for _ in range(rng.randrange(2, 6))]
        return [domain]

    def ip_addresses(self) -> list[IPAddress]:
        """Documentation-range addresses (RFC 5737 / RFC 3849): never anyone's real host."""
        rng = self._rng
        if rng.random() < 0.7:
            net = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
            return [ipaddress.ip_address(f"{net}.{rng.randrange(1, 255)}")]
        return [ipaddress.ip_address(f"2001:db8::{rng.randrange(1, 0xFFFF):x}")]


# --------------------------------------------------------------------------- PKI


def _new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP384R1() if kind == "p384" else ec.SECP256R1())


def _spki_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        _DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, slots=True, eq=False)
class Issuer:
    """A CA that signs: its certificate, key, and the values every child repeats."""

    name: x509.Name
    key: PrivateKey
    cert: x509.Certificate
    cert_der: bytes
    chain: tuple[bytes, ...]  # DER, this CA first, up to and including the root
    x509_extra_data: bytes  # extra_data of every x509 entry it issues: shared, not copied
    key_hash: bytes  # SHA-256 of the SPKI DER: a precert leaf's issuer_key_hash
    aki: x509.AuthorityKeyIdentifier  # for certificates this CA issues
    aia: x509.AuthorityInformationAccess  # likewise

    @property
    def cn(self) -> str:
        return str(self.name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _ca(cn: str, org: str, country: str, key: PrivateKey, parent: Issuer | None) -> Issuer:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, country),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(parent.name if parent else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=365))
        .not_valid_after(now + dt.timedelta(days=(20 if parent is None else 5) * 365))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=None if parent is None else 0), critical=True
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
    )
    if parent is not None:
        builder = builder.add_extension(parent.aki, critical=False)
    cert = builder.sign(parent.key if parent else key, hashes.SHA256())
    der = cert.public_bytes(_DER)
    chain = (der, *(parent.chain if parent else ()))
    return Issuer(
        name=name,
        key=key,
        cert=cert,
        cert_der=der,
        chain=chain,
        x509_extra_data=encode_x509_chain(chain),
        key_hash=hashlib.sha256(_spki_der(key)).digest(),
        aki=x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
        aia=_aia(cn),
    )


@dataclass(frozen=True, slots=True)
class LeafKey:
    """A subscriber key of the reusable pool (only its public half is needed)."""

    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    ski: x509.SubjectKeyIdentifier


@dataclass(frozen=True, slots=True)
class TestPKI:
    """Two roots, three intermediates (with issuance weights) and a pool of leaf keys."""

    __test__ = False  # not a pytest test class, despite the name

    roots: tuple[Issuer, ...]
    intermediates: tuple[Issuer, ...]
    weights: tuple[int, ...]
    leaf_keys: tuple[LeafKey, ...]

    @classmethod
    def generate(cls) -> TestPKI:
        """Fresh keys throughout (a few RSA keys: tens of milliseconds)."""
        root1 = _ca("ct-airflow Test Root X1", _PKI_ORG, "US", _new_key("rsa"), None)
        root2 = _ca("ct-airflow Test Root X2", _TRUST_ORG, "DE", _new_key("p256"), None)
        intermediates = (
            _ca("Local Test RSA CA R1", _PKI_ORG, "US", _new_key("rsa"), root1),
            _ca("Local Test ECC CA E1", _PKI_ORG, "US", _new_key("p256"), root1),
            _ca("Local Test ECC CA E2", _TRUST_ORG, "DE", _new_key("p256"), root2),
        )
        # Leaf keys: mostly P-256, some RSA-2048, a P-384; reused across certificates.
        kinds = ["p256"] * 6 + ["rsa"] * 3 + ["p384"]
        keys = []
        for kind in kinds:
            public = _new_key(kind).public_key()
            keys.append(LeafKey(public, x509.SubjectKeyIdentifier.from_public_key(public)))
        return cls((root1, root2), intermediates, (25, 45, 30), tuple(keys))

    def issuers_by_fingerprint(self) -> dict[bytes, bytes]:
        """Every CA certificate that appears in a chain, keyed by SHA-256 of its DER: what a
        static-ct-api log serves at issuer/<hex>."""
        return {
            hashlib.sha256(der).digest(): der
            for issuer in self.intermediates + self.roots
            for der in issuer.chain
        }


_shared_lock = threading.Lock()


@functools.cache
def _shared_pki() -> TestPKI:
    return TestPKI.generate()


def shared_pki() -> TestPKI:
    """One PKI per process, so that every local log sees the same CAs (as in reality)."""
    with _shared_lock:
        return _shared_pki()


# --------------------------------------------------------------------------- SCTs


def _der_octet_string(body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x04" + length + body


def sct_list_extension(
    log_id: bytes,
    timestamp_ms: int,
    signed_leaf: bytes,
    log_key: ec.EllipticCurvePrivateKey,
    extensions: bytes = b"",
) -> x509.UnrecognizedExtension:
    """The embedded-SCT extension holding one SCT v1 from the given log.

    `signed_leaf` is the precert's MerkleTreeLeaf: its bytes are exactly the SCT's
    digitally-signed input (version 0, certificate_timestamp 0, then the same
    TimestampedEntry), so the SCT verifies against the log's key. `extensions` must be
    that TimestampedEntry's CtExtensions (a static-ct-api log's leaf_index), which the SCT
    repeats.
    """
    signature = log_key.sign(signed_leaf, ec.ECDSA(hashes.SHA256()))
    sct = (
        b"\x00"  # v1
        + log_id
        + struct.pack(">QH", timestamp_ms, len(extensions))
        + extensions
        + b"\x04\x03"  # sha256, ecdsa
        + struct.pack(">H", len(signature))
        + signature
    )
    sct_list = struct.pack(">HH", len(sct) + 2, len(sct)) + sct
    return x509.UnrecognizedExtension(SCT_LIST_OID, _der_octet_string(sct_list))


# --------------------------------------------------------------------------- factory


@dataclass(frozen=True, slots=True)
class _PendingFinal:
    due: int  # entry count at which to emit it
    builder: x509.CertificateBuilder
    issuer: Issuer
    names: tuple[str, ...]
    precert_leaf: bytes
    precert_timestamp_ms: int
    precert_extensions: bytes


class CertFactory:
    """Generates log entries: see the module docstring.

    `sct_key`/`sct_log_id` sign the SCTs embedded in final certificates; pass the log's
    own key and id so the SCTs verify against that log. Without them a throwaway
    key is used (the SCTs are then only syntactically valid).
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        pki: TestPKI | None = None,
        sct_key: ec.EllipticCurvePrivateKey | None = None,
        sct_log_id: bytes | None = None,
    ) -> None:
        self._rng = random.Random(seed)
        self._names = NameGenerator(self._rng)
        self.pki = pki or shared_pki()
        self._sct_key = sct_key or ec.generate_private_key(ec.SECP256R1())
        self._sct_log_id = sct_log_id or hashlib.sha256(_spki_der(self._sct_key)).digest()
        self._count = 0
        self._pending: deque[_PendingFinal] = deque()

    def next_entry(
        self,
        timestamp_ms: int,
        *,
        names: Sequence[str] | None = None,
        entry_type: EntryType | None = None,
        extensions: bytes = b"",
    ) -> GeneratedEntry:
        """The next entry, logged at `timestamp_ms` with these CtExtensions in its leaf (a
        static-ct-api log passes the entry's leaf_index extension; RFC 6962 logs none).

        With `names`, a new certificate for exactly those DNS names (A-labels: IDNs in
        punycode; IP literals become iPAddress SANs) is issued now, as `entry_type` if
        given, else as the mix decides. Raises ValueError if `names` is empty.
        Without, a due final certificate is emitted first, else a new certificate.
        """
        self._count += 1
        forced = names is not None or entry_type is not None
        if not forced and self._pending and self._pending[0].due <= self._count:
            return self._final(self._pending.popleft(), timestamp_ms, extensions)
        rng = self._rng
        if entry_type is None:
            entry_type = "precert" if rng.random() < PRECERT_SHARE else "x509"
        issuer = rng.choices(self.pki.intermediates, self.pki.weights)[0]
        if names is None:
            dns = self._names.hostnames()
            ips = self._names.ip_addresses() if rng.random() < 0.03 else []
        else:
            dns, ips = _split_names(names)
        builder, names_out = self._builder(issuer, timestamp_ms, dns, ips)
        if entry_type == "x509":
            cert_der = builder.sign(issuer.key, hashes.SHA256()).public_bytes(_DER)
            leaf = encode_x509_leaf(timestamp_ms, cert_der, extensions)
            extra = issuer.x509_extra_data
            return GeneratedEntry(leaf, extra, "x509", names_out, timestamp_ms, cert_der, None)
        return self._precert(builder, issuer, names_out, timestamp_ms, extensions)

    def _builder(
        self,
        issuer: Issuer,
        timestamp_ms: int,
        dns: list[str],
        ips: list[IPAddress],
    ) -> tuple[x509.CertificateBuilder, tuple[str, ...]]:
        rng = self._rng
        leaf_key = rng.choice(self.pki.leaf_keys)
        issued = dt.datetime.fromtimestamp(timestamp_ms // 1000, dt.UTC)
        not_before = issued - BACKDATE
        serial = bytearray(rng.randbytes(16))
        serial[0] = (serial[0] & 0x7F) or 0x01  # positive, exactly 16 bytes in DER
        san: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
        san += [x509.IPAddress(ip) for ip in ips]
        first = dns[0] if dns else str(ips[0]) if ips else ""
        roll = rng.random()
        attrs = []
        ov = roll < 0.12
        if ov:
            country, state, city = rng.choice(_CITIES)
            suffix = rng.choice(("Inc.", "GmbH", "Ltd", "S.A.", "LLC"))
            org = f"{rng.choice(_WORDS).title()} {suffix}"
            attrs += [
                x509.NameAttribute(NameOID.COUNTRY_NAME, country),
                x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, state),
                x509.NameAttribute(NameOID.LOCALITY_NAME, city),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            ]
        # About one in ten DV certificates has no subject at all (the SAN is then critical).
        has_cn = bool(first) and len(first) <= 64 and (ov or roll > 0.22)
        if has_cn:
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, first))
        key_usage = isinstance(leaf_key.public_key, rsa.RSAPublicKey)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(issuer.name)
            .public_key(leaf_key.public_key)
            .serial_number(int.from_bytes(serial, "big"))
            .not_valid_before(not_before)
            .not_valid_after(not_before + VALIDITY - dt.timedelta(seconds=1))
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=key_usage,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(leaf_key.ski, critical=False)
            .add_extension(issuer.aki, critical=False)
            .add_extension(issuer.aia, critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=not attrs)
            .add_extension(_policies(ov), critical=False)
        )
        return builder, tuple(dns) + tuple(str(ip) for ip in ips)

    def _precert(
        self,
        builder: x509.CertificateBuilder,
        issuer: Issuer,
        names: tuple[str, ...],
        timestamp_ms: int,
        extensions: bytes,
    ) -> GeneratedEntry:
        # The leaf's TBS is the final certificate's TBS minus the SCT list: the same
        # builder signed without poison. The poison goes last, where the SCT list will.
        tbs_der = builder.sign(issuer.key, hashes.SHA256()).tbs_certificate_bytes
        poisoned = builder.add_extension(x509.PrecertPoison(), critical=True)
        precert_der = poisoned.sign(issuer.key, hashes.SHA256()).public_bytes(_DER)
        leaf = encode_precert_leaf(timestamp_ms, issuer.key_hash, tbs_der, extensions)
        extra = encode_precert_chain_entry(precert_der, issuer.chain)
        if self._rng.random() < FINAL_SHARE:
            due = self._count + self._rng.randint(*FINAL_DELAY)
            pending = _PendingFinal(due, builder, issuer, names, leaf, timestamp_ms, extensions)
            self._pending.append(pending)
        return GeneratedEntry(leaf, extra, "precert", names, timestamp_ms, precert_der, tbs_der)

    def _final(self, pending: _PendingFinal, timestamp_ms: int, extensions: bytes) -> GeneratedEntry:
        sct = sct_list_extension(
            self._sct_log_id,
            pending.precert_timestamp_ms,
            pending.precert_leaf,
            self._sct_key,
            pending.precert_extensions,
        )
        final = pending.builder.add_extension(sct, critical=False)
        cert_der = final.sign(pending.issuer.key, hashes.SHA256()).public_bytes(_DER)
        leaf = encode_x509_leaf(timestamp_ms, cert_der, extensions)
        extra = pending.issuer.x509_extra_data
        return GeneratedEntry(leaf, extra, "x509", pending.names, timestamp_ms, cert_der, None)


def _split_names(names: Sequence[str]) -> tuple[list[str], list[IPAddress]]:
    dns: list[str] = []
    ips: list[IPAddress] = []
    for name in names:
        try:
            ips.append(ipaddress.ip_address(name))
        except ValueError:
            dns.append(name)
    if not dns and not ips:
        raise ValueError("a certificate needs at least one name")
    return dns, ips


def _aia(ca_cn: str) -> x509.AuthorityInformationAccess:
    host = ca_cn.lower().replace(" ", "-")
    ocsp = x509.UniformResourceIdentifier(f"http://ocsp.{host}.test")
    ca_issuers = x509.UniformResourceIdentifier(f"http://crt.{host}.test/ca.der")
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP, ocsp),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, ca_issuers),
        ]
    )


@functools.cache
def _policies(ov: bool) -> x509.CertificatePolicies:
    return x509.CertificatePolicies([x509.PolicyInformation(OV_POLICY if ov else DV_POLICY, None)])
