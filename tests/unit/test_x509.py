"""Certificate field extraction: real certificates, bare TBS wrapping, tbs_sha256, bad input."""

from __future__ import annotations

import hashlib
import ipaddress
import random
import warnings
from datetime import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ctlib.ct.leaf import parse_extra_data, parse_merkle_tree_leaf
from ctlib.decode.x509 import (
    PRECERT_SIGNING_EKU,
    SCT_LIST_OID,
    CertError,
    cert_fields,
    cert_fields_and_tbs_sha256,
    certificate_serial,
    certificate_tbs,
    format_serial,
    is_precert_signing_certificate,
    load_certificate,
    spki_sha256,
    split_tbs,
    tbs_fields,
    tbs_sha256_of_certificate,
    wrap_tbs,
)
from tests.paths import CTDATA
from tests.support.certs import DER, NOT_AFTER, NOT_BEFORE, Ca, leaf_builder, make_ca, make_precert_pair, name, sct_list_value
from tests.support.real_entries import REAL, REAL_IDS, RealEntry

# --- real certificates ------------------------------------------------------------------


def real_fields(entry: RealEntry):
    leaf = parse_merkle_tree_leaf(entry.leaf_input)
    if leaf.entry_type == "x509":
        assert leaf.cert_der is not None
        return cert_fields(leaf.cert_der)
    assert leaf.tbs_der is not None
    return tbs_fields(leaf.tbs_der)


@pytest.mark.parametrize("entry", REAL, ids=REAL_IDS)
def test_real_certificate_fields_match_the_facts(entry: RealEntry) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation (or other) warnings on real data
        fields = real_fields(entry)
    facts = entry.facts
    assert fields.issuer == facts["issuer"]  # RFC 4514 exactly as the facts spell it
    assert fields.serial == facts["serial_hex"]
    assert ([fields.subject_cn] if fields.subject_cn is not None else []) == facts["subject_cn"]
    assert list(fields.dns_names) == facts["san_dns"]
    assert list(fields.ip_addresses) == facts["san_ip"]
    assert fields.not_before == datetime.fromisoformat(facts["not_before"])
    assert fields.not_after == datetime.fromisoformat(facts["not_after"])
    assert fields.not_before.tzinfo is not None
    assert fields.key_type == "RSA" and fields.key_bits in (1024, 2048)
    assert fields.signature_algorithm in ("sha1WithRSAEncryption", "sha256WithRSAEncryption")


def test_pilot_entry_0_every_field() -> None:
    fields = real_fields(REAL[REAL_IDS.index("pilot_get-entries_0-3.json#0")])
    assert fields.subject == "CN=mail.google.com,O=Google Inc,L=Mountain View,ST=California,C=US"
    assert (fields.subject_cn, fields.issuer_cn, fields.issuer_org) == (
        "mail.google.com",
        "Google Internet Authority",
        "Google Inc",
    )
    assert (fields.is_ca, fields.key_type, fields.key_bits) == (False, "RSA", 1024)
    assert fields.signature_algorithm == "sha1WithRSAEncryption"


def test_certificate_without_cn_or_san() -> None:
    entry = REAL[REAL_IDS.index("unverified-log_get-entries_ct-testcert_no-CN.json#0")]
    with warnings.catch_warnings():
        # Its issuer's AKI has authorityCertSerialNumber 0, which cryptography warns about.
        warnings.simplefilter("error")
        fields = real_fields(entry)
    assert fields.subject == "L=Erw Wen,ST=Wales,O=Certificate Transparency,C=GB"
    assert fields.subject_cn is None and fields.issuer_cn is None
    assert fields.issuer_org == "Certificate Transparency CA"
    assert fields.dns_names == () and fields.ip_addresses == ()
    assert fields.serial == "6"


@pytest.mark.parametrize("entry", [e for e in REAL if e.entry_type == "x509"], ids=lambda e: f"{e.source}#{e.position}")
def test_wrapped_tbs_decodes_like_the_certificate(entry: RealEntry) -> None:
    der = parse_merkle_tree_leaf(entry.leaf_input).cert_der
    assert der is not None
    tbs = certificate_tbs(der)
    assert tbs == load_certificate(der).tbs_certificate_bytes
    wrapped = load_certificate(wrap_tbs(tbs))
    assert wrapped.tbs_certificate_bytes == tbs
    assert tbs_fields(tbs) == cert_fields(der)


@pytest.mark.filterwarnings("ignore:Parsed a serial number")  # our own .extensions read below
@pytest.mark.parametrize("entry", [e for e in REAL if e.entry_type == "x509"], ids=lambda e: f"{e.source}#{e.position}")
def test_fast_tbs_sha256_agrees_with_the_reference(entry: RealEntry) -> None:
    der = parse_merkle_tree_leaf(entry.leaf_input).cert_der
    assert der is not None
    fields, tbs_sha256 = cert_fields_and_tbs_sha256(der)
    assert fields == cert_fields(der)
    cert = load_certificate(der)
    assert tbs_sha256 == tbs_sha256_of_certificate(cert)
    has_scts = any(ext.oid == SCT_LIST_OID for ext in cert.extensions)
    reference = cert.tbs_precertificate_bytes if has_scts else cert.tbs_certificate_bytes
    assert tbs_sha256 == hashlib.sha256(reference).hexdigest()


def test_precert_entry_issuer_key_hash_is_chain0_spki() -> None:
    entry = REAL[REAL_IDS.index("ctgo_get-entries_precert_and_x509.json#0")]
    leaf = parse_merkle_tree_leaf(entry.leaf_input)
    extra = parse_extra_data("precert", entry.extra_data)
    assert spki_sha256(extra.chain[0]) == leaf.issuer_key_hash
    assert spki_sha256(extra.chain[1]) != leaf.issuer_key_hash
    assert extra.pre_certificate is not None and leaf.tbs_der is not None
    assert certificate_serial(extra.pre_certificate) == split_tbs(leaf.tbs_der).serial
    assert not any(is_precert_signing_certificate(load_certificate(c)) for c in extra.chain)


def test_real_certificate_with_embedded_scts() -> None:
    pem = (CTDATA / "static-ct" / "navigli2025h2_example_cert_with_scts.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    der = cert.public_bytes(DER)
    fields, tbs_sha256 = cert_fields_and_tbs_sha256(der)
    assert fields.dns_names == ("harderradiofmjump.rad.io",)
    assert tbs_sha256 == tbs_sha256_of_certificate(cert)
    assert tbs_sha256 == hashlib.sha256(cert.tbs_precertificate_bytes).hexdigest()
    assert tbs_sha256 != hashlib.sha256(certificate_tbs(der)).hexdigest()


# --- precert / final certificate --------------------------------------------------------


def test_precert_and_final_certificate_share_tbs_sha256() -> None:
    pair = make_precert_pair()
    final = load_certificate(pair.final_der)
    # cryptography really reads our SCT list extension.
    scts = final.extensions.get_extension_for_oid(SCT_LIST_OID).value
    assert isinstance(scts, x509.PrecertificateSignedCertificateTimestamps)
    assert [s.log_id for s in scts] == [pair.sct_log_id]
    assert [s.timestamp for s in scts] == [datetime(2025, 1, 2, 3, 4, 5)]
    precert = load_certificate(pair.precert_der)
    assert precert.extensions.get_extension_for_class(x509.PrecertPoison).critical

    tbs_sha256 = tbs_sha256_of_certificate(final)
    assert tbs_sha256 == hashlib.sha256(pair.tbs_der).hexdigest()
    assert cert_fields_and_tbs_sha256(pair.final_der)[1] == tbs_sha256
    # ...and not by accident: the raw TBSs of all three differ.
    assert hashlib.sha256(final.tbs_certificate_bytes).hexdigest() != tbs_sha256
    assert precert.tbs_certificate_bytes not in (final.tbs_certificate_bytes, pair.tbs_der)
    assert tbs_fields(pair.tbs_der) == cert_fields(pair.final_der)


def test_tbs_sha256_without_sct_list_hashes_the_plain_tbs() -> None:
    pair = make_precert_pair()
    precert = load_certificate(pair.precert_der)
    assert tbs_sha256_of_certificate(precert) == hashlib.sha256(precert.tbs_certificate_bytes).hexdigest()


def test_precert_signing_certificate_is_recognised() -> None:
    ca = make_ca()
    psc = make_ca("Precert Signer", issuer=ca, eku=[PRECERT_SIGNING_EKU])
    server = make_ca("Server EKU", issuer=ca, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    assert is_precert_signing_certificate(psc.cert)
    assert not is_precert_signing_certificate(server.cert)
    assert not is_precert_signing_certificate(ca.cert)
    assert spki_sha256(psc.der) == psc.key_hash


# --- synthetic variety ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "key_type", "key_bits"),
    [
        (rsa.generate_private_key(65537, 2048), "RSA", 2048),
        (ec.generate_private_key(ec.SECP384R1()), "EC", 384),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519", 256),
        (ed448.Ed448PrivateKey.generate(), "Ed448", 456),
        (dsa.generate_private_key(2048), "DSA", 2048),
    ],
    ids=["rsa", "ec", "ed25519", "ed448", "dsa"],
)
def test_key_types(key, key_type: str, key_bits: int) -> None:
    ca = make_ca()
    der = leaf_builder(ca, serial=5, cn="k.example", dns=["k.example"], key=key.public_key()).sign(
        ca.key, hashes.SHA256()
    ).public_bytes(DER)
    fields = cert_fields(der)
    assert (fields.key_type, fields.key_bits) == (key_type, key_bits)
    assert fields.signature_algorithm == "ecdsa-with-SHA256"


def test_key_size_cache_keeps_curves_apart() -> None:
    ca = make_ca()
    curves = [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1(), ec.SECP256R1(), ec.SECP384R1()]
    bits = []
    for curve in curves:
        key = ec.generate_private_key(curve).public_key()
        builder = leaf_builder(ca, serial=6, cn="c.example", dns=[], key=key)
        bits.append(cert_fields(builder.sign(ca.key, hashes.SHA256()).public_bytes(DER)).key_bits)
    assert bits == [256, 384, 521, 256, 384]


def test_san_ip_addresses_idn_and_ca_flags() -> None:
    ca = make_ca()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("Ünïcode CN, with comma", "Org"))
        .issuer_name(ca.cert.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(1)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("xn--bcher-kva.example"),
                    x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
                    x509.DNSName("b.example"),
                    x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
                ]
            ),
            critical=False,
        )
        .sign(ca.key, hashes.SHA384())
    )
    fields = cert_fields(cert.public_bytes(DER))
    assert fields.dns_names == ("xn--bcher-kva.example", "b.example")  # A-labels, in order
    assert fields.ip_addresses == ("192.0.2.7", "2001:db8::1")
    assert fields.is_ca is None  # no basicConstraints
    assert fields.subject_cn == "Ünïcode CN, with comma"
    assert fields.subject == "CN=Ünïcode CN\\, with comma,O=Org,C=GB"
    assert (fields.issuer_cn, fields.issuer_org) == ("Decoder Test CA", "Decoder Tests")
    assert fields.signature_algorithm == "ecdsa-with-SHA384"
    assert cert_fields(ca.der).is_ca is True


def test_negative_serial_is_hex_with_minus_and_does_not_warn() -> None:
    ca = make_ca()
    der = leaf_builder(ca, serial=0x7F1234, cn="neg.example", dns=[]).sign(ca.key, hashes.SHA256()).public_bytes(DER)
    assert der.count(b"\x02\x03\x7f\x12\x34") == 1
    negative = der.replace(b"\x02\x03\x7f\x12\x34", b"\x02\x03\xff\x12\x34")  # signature now invalid: irrelevant
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fields = cert_fields(negative)
    assert fields.serial == "-edcc" == format_serial(-0xEDCC)
    assert format_serial(0x0ABC) == "abc"


def test_lazily_rejected_extension_becomes_cert_error() -> None:
    ca = make_ca()
    # A basicConstraints whose value is not a SEQUENCE: loads fine, fails on .extensions.
    bad = x509.UnrecognizedExtension(x509.oid.ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x01\xff")
    der = (
        x509.CertificateBuilder()
        .subject_name(name("bad.example"))
        .issuer_name(ca.cert.subject)
        .public_key(ca.key.public_key())
        .serial_number(3)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(bad, critical=False)
        .sign(ca.key, hashes.SHA256())
        .public_bytes(DER)
    )
    load_certificate(der)  # cryptography accepts it at load time...
    with pytest.raises(CertError, match="cannot decode certificate"):
        cert_fields(der)  # ...and rejects it only when the extensions are read
    with pytest.raises(CertError):
        is_precert_signing_certificate(load_certificate(der))
    with pytest.raises(CertError, match="cannot decode precert TBSCertificate"):
        tbs_fields(certificate_tbs(der))


def test_truncated_and_garbage_der_raise_only_cert_error() -> None:
    der = make_precert_pair().final_der
    rng = random.Random(5280)
    samples = [der[:cut] for cut in range(0, len(der), 7)]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) for _ in range(300)]
    for _ in range(300):
        mutated = bytearray(der)
        mutated[rng.randrange(len(der))] = rng.randrange(256)
        samples.append(bytes(mutated))
    for sample in samples:
        for decode in (cert_fields, tbs_fields, spki_sha256, certificate_serial):
            try:
                decode(sample)
            except CertError:
                pass
    with pytest.raises(CertError, match="truncated DER"):
        cert_fields(der[:100])
    with pytest.raises(CertError, match="not exactly one DER SEQUENCE"):
        tbs_fields(certificate_tbs(der) + b"\x00")


# --- the extension reader agrees with cryptography ----------------------------------------


def _with_extensions(ca: Ca, extensions: list[tuple[x509.ExtensionType, bool]]) -> bytes:
    builder = (
        x509.CertificateBuilder().subject_name(name("ext.example")).issuer_name(ca.cert.subject)
        .public_key(ca.key.public_key()).serial_number(77).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(DER)


@pytest.mark.parametrize("extensions", [
    [],  # no extensions field at all
    [(x509.BasicConstraints(ca=True, path_length=3), True)],
    [(x509.BasicConstraints(ca=False, path_length=None), False)],
    [(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_network("192.0.2.0/24")),
                                   x509.IPAddress(ipaddress.ip_network("2001:db8::/32")),
                                   x509.RFC822Name("a@b.example"), x509.DNSName("*.wild.example"),
                                   x509.UniformResourceIdentifier("https://u.example/")]), True)],
    [(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"), b"\x05\x00"), True),
     (x509.SubjectAlternativeName([x509.DNSName(f"n{i}.example") for i in range(300)]), False)],
], ids=["none", "ca-critical", "not-ca", "san-networks-and-other-names", "unknown-critical-and-300-names"])
def test_extension_reader_matches_cryptography(extensions) -> None:
    der = _with_extensions(make_ca(), extensions)
    cert = load_certificate(der)
    fields = cert_fields(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns, ips = san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = None
    assert (list(fields.dns_names), list(fields.ip_addresses), fields.is_ca) == (dns, ips, is_ca)
    assert cert_fields_and_tbs_sha256(der)[1] == hashlib.sha256(cert.tbs_certificate_bytes).hexdigest()


def test_sct_list_as_the_only_extension_leaves_an_empty_extensions_field() -> None:
    ca = make_ca()
    sct_ext = x509.UnrecognizedExtension(SCT_LIST_OID, sct_list_value(b"\x11" * 32, 1_700_000_000_000, b"\x30\x00"))
    der = _with_extensions(ca, [(sct_ext, False)])
    cert = load_certificate(der)
    assert cert_fields_and_tbs_sha256(der)[1] == hashlib.sha256(cert.tbs_precertificate_bytes).hexdigest()


def test_repeated_extension_is_a_cert_error() -> None:
    der = _with_extensions(make_ca(), [(x509.BasicConstraints(ca=False, path_length=None), False)])
    tbs = certificate_tbs(der)
    parts = split_tbs(tbs)
    # The same extensions twice over, re-wrapped: [3] { SEQUENCE { ext, ext } } ending the TBS.
    doubled = parts.extensions * 2
    sequence = b"\x30" + bytes((len(doubled),)) + doubled
    header = 4 if tbs[1] == 0x82 else 3  # the TBS SEQUENCE's own tag and length
    body = tbs[header : parts.extensions_at] + b"\xa3" + bytes((len(sequence),)) + sequence
    with pytest.raises(CertError, match="appears twice"):
        tbs_fields(b"\x30\x82" + len(body).to_bytes(2, "big") + body)
