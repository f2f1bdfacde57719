"""The watchlist (ctlib.downstream.watchlist): certspotter's format and its matching rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctlib.downstream.watchlist import WatchlistError, load_watchlist, normalize_name, parse_watchlist
from tests.paths import PROJECT_ROOT

LIST = """
# our domains
.Example.COM.          # the zone and everything under it
www.example.org
bücher.example         # an IDN, written in Unicode
192.0.2.10
2001:db8::/32
.example.com           # again: kept once
"""


def _matched(names, ips=()):
    return [(item.text, hits) for item, hits in parse_watchlist(LIST).match(names, ips)]


def test_format_comments_blank_lines_and_repeats():
    watchlist = parse_watchlist(LIST)
    assert [(i.kind, i.name or str(i.network)) for i in watchlist.items] == [
        ("domain", "example.com"), ("name", "www.example.org"), ("name", "xn--bcher-kva.example"),
        ("ip", "192.0.2.10/32"), ("ip", "2001:db8::/32"),
    ]


@pytest.mark.parametrize(("names", "expected"), [
    (["example.com"], [(".Example.COM.", ["example.com"])]),
    (["A.B.EXAMPLE.com."], [(".Example.COM.", ["A.B.EXAMPLE.com."])]),
    (["*.example.com"], [(".Example.COM.", ["*.example.com"])]),
    (["*.dev.example.com"], [(".Example.COM.", ["*.dev.example.com"])]),
    (["notexample.com", "example.com.evil.net"], []),
    (["www.example.org"], [("www.example.org", ["www.example.org"])]),
    (["*.example.org"], [("www.example.org", ["*.example.org"])]),  # the wildcard covers it
    (["*.www.example.org", "a.www.example.org", "example.org"], []),  # it is exactly one name
    (["*.org"], []),  # a wildcard covers one label: not www.example.org
    (["BÜCHER.example"], [("bücher.example", ["BÜCHER.example"])]),
    (["xn--bcher-kva.example"], [("bücher.example", ["xn--bcher-kva.example"])]),
])
def test_names_match_case_insensitively_wildcards_by_what_they_cover_idns_both_ways(names, expected):
    assert _matched(names) == expected


def test_ip_addresses_and_networks():
    assert _matched([], ["192.0.2.10", "192.0.2.11"]) == [("192.0.2.10", ["192.0.2.10"])]
    assert _matched([], ["2001:DB8::1", "not an address"]) == [("2001:db8::/32", ["2001:DB8::1"])]
    assert _matched(["192.0.2.10"]) == [], "an IP watch item matches IP SANs, not DNS names"


def test_one_certificate_can_match_several_items():
    assert [text for text, _ in _matched(["mail.example.com", "www.example.org"], ["192.0.2.10"])] == [
        ".Example.COM.", "www.example.org", "192.0.2.10"]


def test_bad_lines_name_file_and_line(tmp_path):
    with pytest.raises(WatchlistError, match=r"mine.txt:3: 'bad name' is not a DNS name"):
        parse_watchlist("ok.example\n\nbad name\n", "mine.txt")
    with pytest.raises(WatchlistError, match="is not a DNS name"):
        parse_watchlist("*.example.com")  # watch .example.com instead
    with pytest.raises(WatchlistError, match="cannot read the watchlist"):
        load_watchlist(tmp_path / "missing.txt")
    assert normalize_name("WWW.Example.COM.") == "www.example.com"


def test_the_bundled_example_parses():
    watchlist = load_watchlist(PROJECT_ROOT / "include" / "watchlist.txt")
    assert [i.kind for i in watchlist.items] == ["domain", "name", "ip"]


_LABELS = ["a", "b", "www", "example", "com", "xn--bcher-kva"]
_name = st.lists(st.sampled_from(_LABELS), min_size=1, max_size=4).map(".".join)


@settings(max_examples=300, deadline=None)
@given(items=st.lists(st.tuples(st.booleans(), _name), min_size=1, max_size=8),
       names=st.lists(st.tuples(st.booleans(), _name), max_size=6))
def test_the_index_answers_as_the_rules_one_item_at_a_time(items, names):
    """Watchlist.match finds items by the name's suffixes; WatchItem.matches_name states the
    rules one item at a time. Both must agree on any list and any names, wildcards included."""
    watchlist = parse_watchlist("\n".join(("." if domain else "") + name for domain, name in items))
    cert_names = [("*." if wildcard else "") + name for wildcard, name in names]
    one_by_one = [(item, [n for n in dict.fromkeys(cert_names) if item.matches_name(normalize_name(n))]) for item in watchlist.items]
    assert watchlist.match(cert_names) == [(item, hits) for item, hits in one_by_one if hits]
