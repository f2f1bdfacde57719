"""Baseline decoder for bench/decode_bench.py: CT entries parsed the way the original Faust
project and Cali Dog's "Parsing Certificate Transparency Lists Like a Boss" article (and
their certstream / axeman code) do it.

* `construct` Structs for the MerkleTreeLeaf header, the ASN.1Cert framing, the x509
  certificate chain of extra_data and the PrecertChainEntry;
* pyOpenSSL `crypto.load_certificate(FILETYPE_ASN1, ...)` for the leaf certificate and for
  every certificate of the chain (for a precert entry, the leaf is the PrecertChainEntry's
  pre_certificate, read from extra_data as the article does);
* one dict per entry: for the leaf and each chain certificate, the subject (aggregated and
  C/ST/L/O/OU/CN), the extensions by short name with their text (subjectAltName as
  "DNS:a, DNS:b"), not_before/not_after, serial number and SHA-1 fingerprint; then
  `all_domains` from the CN and the SAN's DNS names.

Deviations, all forced by today's packages, none making the baseline slower:
* construct 2.10 removed `Embedded`; PreCertEntry spells the embedded CertificateChain's two
  fields (ChainLength, Chain) out, which parses identically.
* pyOpenSSL 26 (the first release accepting cryptography 50) removed `X509.get_extension`
  and `X509Extension`: the extension loop walks `cert.to_cryptography().extensions`
  instead (pyOpenSSL's documented replacement), with the SAN rendered as OpenSSL's
  `str(extension)` did and the other extensions as `str()` of their value. The original
  called `get_extension(i)` twice per extension and printed each with X509V3_EXT_print.
* certstream also base64-encodes each certificate's DER (`as_der`); left out here, as the
  benchmark asks for the fields only.

    from faust_baseline import parse_entry, parse_json_entry
    parse_entry(leaf_input, extra_data)   # bytes, as in a decoded get-entries answer
    parse_json_entry({"leaf_input": b64, "extra_data": b64})   # as the article's loop
"""

from __future__ import annotations

import base64
import datetime
from collections import OrderedDict
from typing import Any

from construct import Byte, Bytes, Enum, GreedyBytes, GreedyRange, Int16ub, Int24ub, Int64ub, Struct, Terminated, this
from cryptography import x509
from OpenSSL import crypto

MerkleTreeHeader = Struct(
    "Version" / Byte,
    "MerkleLeafType" / Byte,
    "Timestamp" / Int64ub,
    "LogEntryType" / Enum(Int16ub, X509LogEntryType=0, PrecertLogEntryType=1),
    "Entry" / GreedyBytes,
)

Certificate = Struct(
    "Length" / Int24ub,
    "CertData" / Bytes(this.Length),
)

CertificateChain = Struct(
    "ChainLength" / Int24ub,
    "Chain" / GreedyRange(Certificate),
)

PreCertEntry = Struct(
    "LeafCert" / Certificate,
    # Embedded(CertificateChain) in the article (construct < 2.10):
    "ChainLength" / Int24ub,
    "Chain" / GreedyRange(Certificate),
    Terminated,
)

_TIME = "%Y%m%d%H%M%SZ"


def _general_name(name: x509.GeneralName) -> str:
    """One SAN entry the way OpenSSL prints it."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP Address:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    return f"othername:{name.value!r}"


def dump_extensions(certificate: crypto.X509) -> dict[str, str]:
    extensions: dict[str, str] = {}
    for extension in certificate.to_cryptography().extensions:
        name = ""
        try:
            name = extension.oid._name  # OpenSSL's short names: subjectAltName, keyUsage, ...
            if name == "Unknown OID":
                continue
            value = extension.value
            if isinstance(value, x509.SubjectAlternativeName):
                extensions[name] = ", ".join(_general_name(n) for n in value)
            else:
                extensions[name] = str(value)
        except Exception:  # as certstream: an unreadable extension is "NULL"
            extensions[name] = "NULL"
    return extensions


def _timestamp(raw: bytes | None) -> float:
    try:
        return datetime.datetime.strptime(raw.decode("ascii"), _TIME).timestamp()
    except Exception:
        return 0


def dump_cert(certificate: crypto.X509) -> dict[str, Any]:
    subject = certificate.get_subject()
    return {
        "subject": {
            "aggregated": repr(subject)[18:-2],  # "<X509Name object '/C=US/CN=...'>"
            "C": subject.C,
            "ST": subject.ST,
            "L": subject.L,
            "O": subject.O,
            "OU": subject.OU,
            "CN": subject.CN,
        },
        "extensions": dump_extensions(certificate),
        "not_before": _timestamp(certificate.get_notBefore()),
        "not_after": _timestamp(certificate.get_notAfter()),
        "serial_number": "{0:X}".format(certificate.get_serial_number()),
        "fingerprint": certificate.digest("sha1").decode("ascii"),
    }


def add_all_domains(cert_data: dict[str, Any]) -> dict[str, Any]:
    leaf = cert_data["leaf_cert"]
    all_domains = []
    if leaf["subject"]["CN"]:
        all_domains.append(leaf["subject"]["CN"])
    san = leaf["extensions"].get("subjectAltName")
    if san:
        for entry in san.split(", "):
            if entry.startswith("DNS:"):
                all_domains.append(entry.replace("DNS:", ""))
    leaf["all_domains"] = list(OrderedDict.fromkeys(all_domains))
    return cert_data


def parse_entry(leaf_input: bytes, extra_data: bytes) -> dict[str, Any]:
    """One entry as a certstream-style dict; raises on a malformed entry."""
    leaf_cert = MerkleTreeHeader.parse(leaf_input)
    cert_data: dict[str, Any] = {}
    if leaf_cert.LogEntryType == "X509LogEntryType":
        cert_data["update_type"] = "X509LogEntry"
        chain = [crypto.load_certificate(crypto.FILETYPE_ASN1, Certificate.parse(leaf_cert.Entry).CertData)]
        extra = CertificateChain.parse(extra_data)
        for cert in extra.Chain:
            chain.append(crypto.load_certificate(crypto.FILETYPE_ASN1, cert.CertData))
    else:
        cert_data["update_type"] = "PrecertLogEntry"
        extra = PreCertEntry.parse(extra_data)
        chain = [crypto.load_certificate(crypto.FILETYPE_ASN1, extra.LeafCert.CertData)]
        for cert in extra.Chain:
            chain.append(crypto.load_certificate(crypto.FILETYPE_ASN1, cert.CertData))
    cert_data.update(
        {
            "timestamp": leaf_cert.Timestamp,
            "leaf_cert": dump_cert(chain[0]),
            "chain": [dump_cert(c) for c in chain[1:]],
        }
    )
    return add_all_domains(cert_data)


def parse_json_entry(entry: dict[str, str]) -> dict[str, Any]:
    """As the article's loop over a get-entries answer: base64 first."""
    return parse_entry(base64.b64decode(entry["leaf_input"]), base64.b64decode(entry["extra_data"]))


def parse_entries(entries: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """(dicts, failures) for RawEntry-like objects; a failing entry is counted, not raised,
    as certstream logs and skips it."""
    out, failed = [], 0
    for entry in entries:
        try:
            out.append(parse_entry(entry.leaf_input, entry.extra_data))
        except Exception:
            failed += 1
    return out, failed
