"""Certificates for the watchlist tests: a watchlist and a log's entries that match it in
every way it can (a precertificate and, later, its final certificate; a wildcard; an IDN;
an IP SAN) or must not."""

from __future__ import annotations

from ctlib.testing.certs import CertFactory, GeneratedEntry

WATCHLIST = """
.example.com
www.example.org
bücher.example
192.0.2.10
"""
T0 = 1_764_000_000_000  # 2025-11-24


def watched_entries() -> list[GeneratedEntry]:
    """A precertificate for login.example.com (index 0), *.example.org (1), an IDN (2), an IP
    SAN (3), names that must not match (4), ordinary certificates, and last the
    precertificate's final certificate."""
    factory = CertFactory(seed=7)
    entries = [
        factory.next_entry(T0, names=["login.example.com", "other.net"], entry_type="precert"),
        factory.next_entry(T0 + 1_000, names=["*.example.org"], entry_type="x509"),
        factory.next_entry(T0 + 2_000, names=["xn--bcher-kva.example"], entry_type="x509"),
        factory.next_entry(T0 + 3_000, names=["192.0.2.10", "host.example.net"], entry_type="x509"),
        factory.next_entry(T0 + 4_000, names=["notexample.com", "example.com.evil.net", "*.org"], entry_type="x509"),
    ]
    for k in range(200):
        entries.append(factory.next_entry(T0 + 10_000 + k))
        if entries[-1].entry_type == "x509" and "login.example.com" in entries[-1].names:
            return entries
    raise AssertionError("no final certificate for the precertificate")
