"""Threat-intel enrichment of suspicious registered domains.

- `connections`: provider credentials from Airflow Connections, and the `ctlib.http`
  session each provider client builds (its auth, the enrichment's retry/body policy).
- `passivetotal`: RiskIQ PassiveTotal v2 client (WHOIS, passive DNS, enrichment). The
  service was retired in 2025; the client detects that and switches itself off.
- `threatstream`: Anomali ThreatStream v2 intelligence client (paged indicator look-ups).
- `risk`: the combined 0..100 risk of a domain from its phishing score and the above.
- `cache`: the `enrichment` lake table (schema, writer) and the TTL / per-run caches.

`normalize_domain` (here) is how every module keys a domain.

API keys live only in `connections.ProviderCredentials` and the HTTP session's auth; no
message, log line, Variable or Parquet column built here contains one.
"""


def normalize_domain(domain: str) -> str:
    """A DNS name as the enrichment keys it: lower-case, no surrounding blanks or trailing
    dot. Raises ValueError when nothing is left."""
    name = domain.strip().rstrip(".").lower()
    if not name:
        raise ValueError("empty domain name")
    return name
