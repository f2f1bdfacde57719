"""A faithful re-implementation of x0rz/phishing_catcher's domain scoring, as the baseline.

Written here from the project's published logic (``catch_phishing.py`` ``score_domain`` and its
``suspicious.yaml``), standalone: it imports nothing from ``ctlib.downstream.score``. Contract:
``score_domain(domain, issuer_org=None) -> int``, higher is more suspicious; the project logs
names scoring >= 75 (``ALERT_THRESHOLD``).

What it does, in the original's order, quirks included:

- +20 for each suspicious TLD the full name ends with (checked before the wildcard strip);
- a leading ``*.`` is removed;
- the public suffix is dropped (``subdomain + "." + domain``, as ``tld.get_tld`` gives it,
  private suffixes included); with no subdomain that string starts with a ``.``, which is what
  the original scores;
- + round(Shannon entropy * 10);
- look-alike characters are mapped to ASCII (``unconfuse``; only when the string starts with
  ``xn--``, as in the original, so a punycode registrable label is never decoded);
- +10 if the first word is com/net/org (``com-account.example.info``);
- + the weight of every keyword that is a substring;
- +70 for every (keyword of weight >= 70, word) pair at Levenshtein distance exactly 1,
  words being the ``\\W+``-split string minus email/mail/cloud;
- + 3 per ``-`` when there are >= 4 (not for ``xn--`` names), + 3 per ``.`` when there are >= 3;
- +10 when the issuer organisation is exactly "Let's Encrypt" (the eval has no issuer).

Differences, all minor: the look-alike table is derived from Unicode's confusables as shipped by
``confusable_homoglyphs`` plus diacritic stripping (the original ships its own subset of the same
TR39 data), tldextract's bundled Public Suffix List snapshot stands in for the ``tld`` package's.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache

import tldextract
from confusable_homoglyphs import confusables as _confusables
from rapidfuzz.distance import Levenshtein

ALERT_THRESHOLD = 75

# suspicious.yaml, keywords (latest published version).
KEYWORDS: dict[str, int] = {
    # Generic suspicious
    "login": 25, "log-in": 25, "sign-in": 25, "signin": 25, "account": 30, "verification": 25,
    "verify": 30, "webscr": 25, "password": 25, "credential": 25, "support": 25, "activity": 25,
    "security": 25, "update": 25, "authentication": 30, "authenticate": 30, "authorize": 25,
    "wallet": 25, "alert": 25, "purchase": 25, "transaction": 25, "recover": 25, "unlock": 25,
    "confirm": 20, "live": 15, "office": 15, "service": 15, "manage": 15, "portal": 15,
    "invoice": 15, "secure": 10, "customer": 10, "client": 10, "bill": 10, "online": 10,
    "safe": 10, "form": 10, "drive": 15, "confirmation": 10, "pay": 20,
    # Apple iCloud
    "appleid": 70, "icloud": 60, "iforgot": 60, "itunes": 50, "apple": 30,
    # Email
    "office365": 50, "microsoft": 60, "windows": 30, "protonmail": 70, "tutanota": 60,
    "hotmail": 60, "gmail": 70, "outlook": 60, "yahoo": 60, "google": 60, "yandex": 60,
    # Social media
    "twitter": 60, "facebook": 60, "tumblr": 60, "reddit": 60, "youtube": 40, "linkedin": 60,
    "instagram": 60, "flickr": 60, "whatsapp": 60,
    # Cryptocurrency
    "localbitcoin": 70, "poloniex": 60, "coinhive": 70, "bithumb": 60, "kraken": 50,
    "bitstamp": 60, "bittrex": 60, "blockchain": 70, "bitflyer": 60, "coinbase": 60,
    "hitbtc": 60, "lakebtc": 60, "bitfinex": 60, "bitconnect": 60, "coinsbank": 60,
    # Bank/money
    "paypal": 70, "moneygram": 60, "westernunion": 60, "bankofamerica": 60, "wellsfargo": 60,
    "citigroup": 60, "santander": 60, "morganstanley": 60, "barclays": 50, "hsbc": 50,
    "scottrade": 60, "ameritrade": 60, "merilledge": 60, "bank": 15,
    # Ecommerce
    "amazon": 60, "overstock": 60, "alibaba": 60, "aliexpress": 60, "leboncoin": 70,
    "ebay": 60, "rakuten": 50,
    # Other
    "netflix": 70, "hulu": 50, "skype": 60, "github": 20, "onedrive": 45, "dropbox": 60,
    "docomo": 60, "gitlab": 10, "jira": 20,
    # Miscellaneous & SE tricks
    "cgi-bin": 50, "-com.": 30, ".net-": 30, ".org-": 30, ".com-": 30, ".net.": 30,
    ".org.": 30, ".com.": 30, ".gov-": 30, ".gov.": 30, ".gouv-": 40, "-gouv-": 40,
    ".gouv.": 40,
    # FR specific
    "suivi": 50, "laposte": 50,
}

# suspicious.yaml, tlds (latest published version).
TLDS: tuple[str, ...] = tuple(
    "." + t
    for t in (
        "accountant accountants agency airforce army asia band bank bid bike blackfriday blue "
        "business cafe cam casa cc center cf christmas click cloud club country creditcard "
        "cricket cymru date desi diet download email equipment eus express faith fun futbol ga "
        "gb gdn gq help hospital host immo info institute jetzt kim life limited link loan lol "
        "ltda men ml mom nagoya navy network one online organic party press promo pub pw racing "
        "red reise reisen ren repair review rodeo ryukyu schule science services shop site "
        "soccer soy space store stream study support systems tech technology tk today tokyo top "
        "trade trading viajes vip webcam website whoswho win work world wtf xin xn--tckwe xyz "
        "yokohama"
    ).split()
)

_STRONG = tuple(k for k, s in KEYWORDS.items() if s >= 70)
_GENERIC_WORDS = {"email", "mail", "cloud"}
_WORDS = re.compile(r"\W+")
# The tld package's get_tld searches private suffixes too; no network: bundled snapshot only.
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


def entropy(string: str) -> float:
    """Shannon entropy of `string` in bits per character."""
    n = len(string)
    return -sum(c / n * math.log2(c / n) for c in (string.count(ch) for ch in dict.fromkeys(string)))


@lru_cache(maxsize=4096)
def _ascii_of(char: str) -> str:
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if base.isascii():
        return base.lower()
    for entry in _confusables.confusables_data.get(char, ()):
        glyph = entry["c"]
        if glyph.isascii() and glyph.isalnum():
            return glyph.lower()
    return char


def unconfuse(domain: str) -> str:
    """Decode a leading-punycode string and map look-alike characters to ASCII."""
    if domain.startswith("xn--"):
        try:
            domain = domain.encode("ascii").decode("idna")
        except UnicodeError:
            pass
    return "".join(ch if ch.isascii() else _ascii_of(ch) for ch in domain)


def score_domain(domain: str, issuer_org: str | None = None) -> int:
    """phishing_catcher's score of one DNS name (lower-cased here, as its callback does)."""
    domain = domain.lower()
    score = 0
    for t in TLDS:
        if domain.endswith(t):
            score += 20
    if domain.startswith("*."):
        domain = domain[2:]
    parts = _EXTRACT(domain)
    if parts.suffix:  # get_tld fails silently on unknown suffixes: the name is kept whole
        domain = ".".join([parts.subdomain, parts.domain])
    score += int(round(entropy(domain) * 10)) if domain else 0
    domain = unconfuse(domain)
    words = _WORDS.split(domain)
    if words[0] in ("com", "net", "org"):
        score += 10
    for word, weight in KEYWORDS.items():
        if word in domain:
            score += weight
    for key in _STRONG:
        for word in words:
            if word not in _GENERIC_WORDS and Levenshtein.distance(word, key) == 1:
                score += 70
    if "xn--" not in domain and domain.count("-") >= 4:
        score += domain.count("-") * 3
    if domain.count(".") >= 3:
        score += domain.count(".") * 3
    if issuer_org == "Let's Encrypt":
        score += 10
    return score


if __name__ == "__main__":
    import sys

    for line in sys.argv[1:] or sys.stdin:
        name = line.strip()
        if name:
            print(f"{name}\t{score_domain(name)}")
