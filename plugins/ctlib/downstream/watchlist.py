"""A watchlist in certspotter's format, and which of a certificate's names it matches. Pure.

The file (CT_WATCHLIST) holds one item per line; `#` starts a comment, blank lines are skipped:

    .example.com        the domain and every name under it
    www.example.com     exactly that name
    192.0.2.10          that IP address (in the certificate's IP SANs)
    198.51.100.0/24     any address of that network

Matching (`Watchlist.match`):
- names compare case-insensitively, without a trailing dot, and IDNs in Unicode or punycode
  alike (both sides are brought to punycode, IDNA 2008 with UTS 46 mapping);
- a certificate's wildcard `*.example.com` covers every name one label under example.com:
  it matches a watched `.example.com`, and a watched `www.example.com`, which it covers (not
  `a.b.example.com`: a wildcard covers one label);
- a watched `.example.com` matches a wildcard for a zone under it too (`*.dev.example.com`).

`Watchlist.match` looks each name up by its suffixes (`WatchIndex`), so its cost depends on
the name's labels, not on the watchlist's length; `WatchItem.matches_name` states the rules
one item at a time (the tests hold the two to the same answers). The ct_watch DAG
(ctlib.downstream.watching) and `python -m ctlib.watch` (ctlib.downstream.watch_query) build
on this module.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import idna

CRTSH = "https://crt.sh/?q="
"""A certificate's page on crt.sh: this followed by its sha256 (of a precert or a certificate)."""


class WatchlistError(ValueError):
    """A line of the watchlist is not a name, a domain or an IP address; names file and line."""


def normalize_name(name: str) -> str:
    """A DNS name as compared: lower case, no trailing dot, every label in punycode (a label
    IDNA refuses, such as one with an underscore, is kept as lower-case text)."""
    name = name.strip().rstrip(".").lower()
    if name.isascii():  # nearly every name in a certificate: nothing to encode
        return name
    labels = []
    for label in name.split("."):
        if label.isascii() or label == "*":
            labels.append(label)
            continue
        try:
            labels.append(idna.encode(label, uts46=True).decode("ascii"))
        except idna.IDNAError:
            labels.append(label)
    return ".".join(labels)


@dataclass(frozen=True, slots=True)
class WatchItem:
    """One line of the watchlist: `text` as written, `kind` "domain" (a leading dot: the name
    and everything under it), "name" (exactly it) or "ip" (an address or network)."""

    text: str
    kind: str
    name: str = ""  # normalized, for "domain" and "name"
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def matches_name(self, cert_name: str) -> bool:
        """Whether `cert_name` (normalized) is this item's, a wildcard counting for what it covers."""
        if self.kind == "ip":
            return False
        wildcard = cert_name.startswith("*.")
        base = cert_name[2:] if wildcard else cert_name
        if self.kind == "domain":
            if base == self.name or base.endswith("." + self.name):
                return True
            # *.example.com covers example.com's children, so a watched child of it (only).
            return wildcard and self.name.endswith("." + base) and "." not in self.name[: -len(base) - 1]
        if not wildcard:
            return cert_name == self.name
        return self.name.endswith("." + base) and "." not in self.name[: -len(base) - 1]

    def matches_ip(self, address: str) -> bool:
        ip = _address(address)
        return self.network is not None and ip is not None and ip in self.network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


# A watched name's labels once normalized (punycode is ASCII): letters, digits, '-' and '_'
# (certificates carry underscores), at most 63 characters, the whole name at most 253.
_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_MAX_NAME = 253


def _shown(text: str) -> str:
    """`text` for an error message: repr, cut short (a line may be megabytes long)."""
    return repr(text) if len(text) <= 100 else repr(text[:100]) + "..."


def parse_item(text: str) -> WatchItem:
    """One watchlist entry (no comment); ValueError naming what is wrong."""
    try:
        return WatchItem(text, "ip", network=ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    domain = text.startswith(".")
    name = normalize_name(text[1:] if domain else text)
    labels = name.split(".")
    # Only characters a certificate's DNS name can hold: a mistyped network (10.0.0/24,
    # 198.51.100.0/33), a control character or an unencodable IDN label would otherwise
    # be kept as a name that never matches, and the operator would never know.
    if not name or len(name) > _MAX_NAME or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{_shown(text)} is not a DNS name, a .domain or an IP address")
    if labels[-1].isdigit():  # 192.0.2.300: an address that is not one, not a name (no TLD is numeric)
        raise ValueError(f"{_shown(text)} is not a valid IP address, and not a DNS name")
    return WatchItem(text, "domain" if domain else "name", name=name)


def _parent(name: str) -> str:
    return name.partition(".")[2]


class WatchIndex:
    """The name items of a watchlist by the names they are looked up under: a domain item by
    its name (found among a certificate name's suffixes), a name item by itself, and both by
    their parent, where a wildcard one label above them finds them."""

    def __init__(self, items: Sequence[WatchItem]) -> None:
        self.domains: dict[str, list[int]] = {}
        self.names: dict[str, list[int]] = {}
        self.children: dict[str, list[int]] = {}
        self.ips = [k for k, item in enumerate(items) if item.kind == "ip"]
        for position, item in enumerate(items):
            if item.kind == "ip":
                continue
            (self.domains if item.kind == "domain" else self.names).setdefault(item.name, []).append(position)
            self.children.setdefault(_parent(item.name), []).append(position)

    def positions(self, name: str) -> list[int]:
        """The positions of the items that match `name` (normalized), as
        WatchItem.matches_name decides."""
        wildcard = name.startswith("*.")
        base = name[2:] if wildcard else name
        found: list[int] = []
        if wildcard:
            found += self.children.get(base, ())
        else:
            found += self.names.get(name, ())
        suffix = base
        while suffix:
            found += self.domains.get(suffix, ())
            suffix = _parent(suffix)
        return found


@dataclass(frozen=True)
class Watchlist:
    items: tuple[WatchItem, ...]
    index: WatchIndex = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", WatchIndex(self.items))

    def match(self, dns_names: Iterable[str], ip_addresses: Iterable[str] = ()) -> list[tuple[WatchItem, list[str]]]:
        """Each item that matches, with the certificate's names (as given, each once) it
        matched, in the watchlist's order."""
        hits: dict[int, list[str]] = {}
        for name in dns_names:
            for position in self.index.positions(normalize_name(name)):
                found = hits.setdefault(position, [])
                if name not in found:
                    found.append(name)
        if self.index.ips:
            addresses = [(a, _address(a)) for a in ip_addresses]  # each parsed once, not once per item
            for position in self.index.ips:
                network = self.items[position].network
                matched = [a for a, ip in addresses if ip is not None and ip in network]  # type: ignore[operator]
                if matched:
                    hits[position] = matched
        return [(self.items[position], hits[position]) for position in sorted(hits)]


def parse_watchlist(text: str, source: str = "watchlist") -> Watchlist:
    """The items of a watchlist's text; WatchlistError names the file and line of a bad one.
    Repeated items are kept once."""
    items: dict[str, WatchItem] = {}
    # Lines as editors and grep count them ("\n", a "\r" before it stripped below), not
    # str.splitlines, which also breaks at \x0b, \x1c, \x85, U+2028 ... and so names
    # other line numbers than the operator sees.
    for number, line in enumerate(text.split("\n"), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            item = parse_item(entry)
        except ValueError as err:
            raise WatchlistError(f"{source}:{number}: {err}") from None
        items.setdefault(f"{item.kind}:{item.name or item.network}", item)
    return Watchlist(tuple(items.values()))


def load_watchlist(path: str | Path) -> Watchlist:
    """The watchlist file at `path` (read anew at every call: it is re-read at every run)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise WatchlistError(f"cannot read the watchlist {path}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:  # a ValueError, but one naming neither the file nor the line
        line = data[: err.start].count(b"\n") + 1
        raise WatchlistError(f"{path}:{line}: not UTF-8 text (byte {data[err.start]:#04x})") from None
    return parse_watchlist(text, str(path))


def watched(watchlist: Watchlist, rows: Sequence[dict]) -> list[tuple[dict, WatchItem, list[str]]]:
    """(row, item, matched names) for each certificate row ({dns_names, ip_addresses, ...})
    and each item it matches."""
    return [(row, item, hits) for row in rows
            for item, hits in watchlist.match(row.get("dns_names") or (), row.get("ip_addresses") or ())]
