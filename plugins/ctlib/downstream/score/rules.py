"""Score DNS names for phishing: which rules fire, their weights, and whether the sum alerts.

`Scorer(lists).score(name, issuer=None) -> Score`. The name is lower-cased, a trailing dot and
any leading `*.` are dropped, then split with the Public Suffix List (tldextract's bundled
snapshot, private suffixes and the listed hosting platforms counted as suffixes: the tenant of
`x.github.io` is a registrable domain of its own) into subdomain labels, the registrable label
and the suffix. A name under a registrable domain that a brand owns scores 0 (rule
`brand_owned:<brand>`). Otherwise the score is the sum of:

- the strongest brand rule (brand_homoglyph, brand_in_subdomain, brand_on_platform, brand_typo,
  brand_in_domain, brand_other_tld, brand_typo_subdomain, brand_typo_embedded, brand_cctld)
  plus multi_brand when several brands appear;
- keyword:<word> (capped), suspicious_tld:<tld>, shared_platform:<suffix>, fake_tld, gov_lure;
- structure: idn_lookalike, mixed_script, random_label, random_subdomain, numeric_label,
  many_hyphens, deep_nesting, many_dots, long_label, entropy, wildcard;
- free_ca:<ca> when the issuer string names a free CA.

Labels are compared after punycode decoding and mapping every character to its confusable
ASCII skeleton (Unicode TR39 confusables via `confusable_homoglyphs`, then accents dropped), so
`xn--pypal-4ve.com` (with a Cyrillic "а") reads `paypal`. Brands match exactly (substring, or whole
token for short terms) or by edit distance (OSA: a transposition is one edit), the allowed
distance growing with the term's length, after folding ASCII look-alikes (0/o, 1/i/l, rn/m).

Speed (about 25,000 distinct names/s on one core, bench/score_eval.py): every label's analysis
is cached, with the per-label parts of the name-level rules (fake_tld, gov_lure, long_label)
worked out there once; so are the registrable domain's share of the verdict (most names of a
certificate share it: x.com, www.x.com), the verdict of a bare registrable domain (worked out
only when such a name comes), each token's edit-distance candidates, each issuer's free-CA
rule and every name's result; all caches are bounded LRUs. Keywords are found by one regex
compiled as a trie; the public-suffix splitter is built once per process. The analyses are
pure, so one Scorer may be shared between threads.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import NamedTuple

import idna
import tldextract
from confusable_homoglyphs import confusables as _confusables
from rapidfuzz import process
from rapidfuzz.distance import OSA

from ctlib.downstream.score.lists import Brand, ScoringLists, load_lists

_CACHE_NAMES = 1 << 16
_CACHE_LABELS = 1 << 16


@dataclass(frozen=True)
class Score:
    """The verdict on one DNS name.

    `rules` lists (rule, weight) for every rule that fired with a non-zero weight, strongest
    first; `score` is their sum; `alert` is score >= the threshold. `registered_domain` is the
    registrable domain (a platform tenant counts as one); `brand` the brand the name
    impersonates (or owns, with rule brand_owned), if any.
    """

    name: str
    score: float
    alert: bool
    rules: tuple[tuple[str, float], ...]
    registered_domain: str
    brand: str | None


# --- Text helpers ---------------------------------------------------------------------------

_HEX = frozenset("0123456789abcdef")
_NOT_LETTER = re.compile(r"[^a-z]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=8192)
def _skeleton_char(char: str) -> str:
    """ASCII look-alike of one non-ASCII character (TR39 confusable, else the letter without
    its accents); the character itself when it has none."""
    for entry in _confusables.confusables_data.get(char, ()):
        glyph = entry["c"]
        if len(glyph) == 1 and glyph.isascii() and glyph.isalnum():
            return glyph.lower()
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if base and base.isascii():
        return base.lower()
    return char


def skeleton(text: str) -> str:
    """`text` with every non-ASCII character replaced by its ASCII look-alike where one exists."""
    if text.isascii():
        return text
    return "".join(ch if ch.isascii() else _skeleton_char(ch) for ch in text)


def decode_label(label: str) -> str:
    """The Unicode form of an `xn--` label (lenient: raw punycode if IDNA rejects it)."""
    if not label.startswith("xn--"):
        return label
    try:
        return idna.decode(label)
    except (idna.IDNAError, UnicodeError, ValueError):
        try:
            return label[4:].encode("ascii").decode("punycode")
        except (UnicodeError, ValueError):
            return label


# Scripts that legitimately share a label (Japanese kana with kanji, Korean with hanja).
_CJK = frozenset({"CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "HANGUL"})


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else ""


def is_mixed_script(text: str) -> bool:
    """Latin letters mixed with letters of another (non-CJK) script in `text`: the paypal
    spelled with a Cyrillic "а" of a homograph attack."""
    scripts = {_script(c) for c in text if c.isalpha()}
    return "LATIN" in scripts and bool(scripts - {"LATIN"} - _CJK)


_CLOG = [0.0] + [c * math.log2(c) for c in range(1, 256)]  # c log2 c, the hot part of entropy


def entropy(text: str) -> float:
    """Shannon entropy of `text`, bits per character."""
    n = len(text)
    if not n:
        return 0.0
    # Counts in order of first appearance (as Counter would give them: the same float sum);
    # str.count per distinct character is cheaper than a Counter on names this short.
    counts = map(text.count, dict.fromkeys(text))
    # H = log2 n - (1/n) sum c log2 c; no count reaches 256 in a DNS name (at most 253 long).
    if n < 256:
        return math.log2(n) - sum(map(_CLOG.__getitem__, counts)) / n
    return math.log2(n) - sum(_CLOG[c] if c < 256 else c * math.log2(c) for c in counts) / n


_FLIP = re.compile(r"(?=[0-9][a-z]|[a-z][0-9])")
_CONSONANT_RUN = re.compile(r"[b-df-hj-np-tv-xz]{6}")


def looks_random(label: str) -> bool:
    """A label that looks machine-generated: hex-like, letters and digits interleaved
    (a1b2c-style), or words with no vowels for 6 letters in a row or almost none at all."""
    if len(label) < 6:
        return False
    alnum = label.replace("-", "")
    if len(alnum) >= 10 and set(alnum) <= _HEX and not alnum.isdigit() and not alnum.isalpha():
        return True
    if len(_FLIP.findall(alnum)) >= 3:
        return True
    letters = len(_NOT_LETTER.sub("", label))
    if letters >= 8 and sum(map(label.count, "aeiou")) < 0.15 * letters:
        return True
    return _CONSONANT_RUN.search(label) is not None


def is_numeric(label: str) -> bool:
    """Mostly digits (473621, 3659vip3 is not; 55100-55100tz02 is)."""
    digits = sum(map(label.count, "0123456789"))
    return digits >= 4 and digits * 2 >= len(label.replace("-", ""))


# --- Brand matching -------------------------------------------------------------------------

# ASCII look-alikes folded together before edit-distance matching (both sides): paypa1, g00gle,
# teiegram and teleqram read as the brand. One character for one, so positions are kept;
# the two-letter look-alikes ("rn" for "m", "vv" for "w") are tried as a second reading.
_FOLD = str.maketrans("01iq3457", "ollgeast")
_FOLD_PAIRS = (("rn", "m"), ("vv", "w"))


def fold(text: str) -> str:
    """`text` with ASCII look-alike characters mapped to one representative each."""
    return text.translate(_FOLD)


@dataclass(frozen=True)
class BrandHit:
    """A brand found in one label: `kind` is exact, typo (the whole token within 1-2 edits or
    look-alike characters) or embedded (1 edit, inside a longer token); `whole` when the label
    is nothing but the term; `common` when the term is an ordinary word or a 2-3 letter
    abbreviation (orange, booking, ups), weaker evidence of the brand."""

    brand: str
    term: str
    kind: str
    whole: bool = False
    common: bool = False


_KIND_ORDER = {"exact": 0, "typo": 1, "embedded": 2}


@dataclass(frozen=True)
class MatchLimits:
    """Term lengths that decide how a term may match (scoring.yaml `limits`)."""

    min_substring: int = 5
    min_prefix: int = 4
    min_fuzzy: int = 5
    min_embedded: int = 8
    min_deletion: int = 7
    long_len: int = 9


@dataclass(frozen=True, slots=True)
class _Term:
    """A substring term, precomputed for the scan."""

    term: str
    folded: str
    brand: str
    edits: int  # edits tolerated for a whole token


_ANCHOR = 3  # characters looked up per label position


class BrandMatcher:
    """Finds brand terms in one (skeleton, lower-case ASCII) label.

    Every position of the label is looked up by its next three characters: the terms starting
    there are compared in place (exact), and so are the heads and tails of long terms (a term
    one edit away inside a longer token keeps its head or its tail intact). Whole tokens are
    compared by edit distance (rapidfuzz, in C) with the terms of nearby length that share
    their first or last character.
    """

    def __init__(self, brands: Iterable[Brand], limits: MatchLimits, not_typos: frozenset[str]) -> None:
        self._not_typos = not_typos
        self._token: dict[str, str] = {}  # whole tokens only: strict and short terms
        self._affix: dict[str, str] = {}  # a token, its start or its end: short terms from min_prefix
        substring: dict[str, str] = {}  # anywhere in the label: term -> brand
        for brand in brands:
            for term in brand.strict_terms:
                self._token.setdefault(term, brand.name)
            for term in brand.terms:
                if len(term) >= limits.min_substring:
                    substring.setdefault(term, brand.name)
                elif len(term) >= limits.min_prefix:
                    self._affix.setdefault(term, brand.name)
                else:
                    self._token.setdefault(term, brand.name)
        self._affix_lengths = sorted({len(t) for t in self._affix})
        self._typo_terms = lru_cache(maxsize=_CACHE_LABELS)(self._find_typo_terms)
        # (token length, first, last character) -> the terms of both _by_length lists, merged once.
        self._choices: dict[tuple[int, str, str], list[str]] = {}
        self._terms: dict[str, _Term] = {}
        # Three characters -> (terms starting with them, long terms whose head or tail does).
        self._at: dict[str, tuple[list[str], list[str]]] = {}
        # (token length, first or last character) -> terms worth a distance: a typo keeps the
        # term's first or its last character (both changed is two edits at the ends).
        self._by_length: dict[tuple[int, str, str], list[str]] = {}
        for term, brand_name in substring.items():
            folded = fold(term)
            if folded in self._terms:
                continue
            k = 2 if len(term) >= limits.long_len else 1
            self._terms[folded] = _Term(term, folded, brand_name, k)
            self._at.setdefault(folded[:_ANCHOR], ([], []))[0].append(folded)
            if len(term) >= limits.min_embedded:
                head, tail = _head_tail(folded)
                for part in {head[:_ANCHOR], tail[:_ANCHOR]}:
                    self._at.setdefault(part, ([], []))[1].append(folded)
            if len(term) >= limits.min_fuzzy:
                # Dropping a letter of a short term mostly gives a plain word (gmail -> mail).
                shortest = len(folded) - (k if len(term) >= limits.min_deletion else 0)
                for size in range(shortest, len(folded) + k + 1):
                    self._by_length.setdefault((size, folded[0], ""), []).append(folded)
                    self._by_length.setdefault((size, "", folded[-1]), []).append(folded)
        # The shortest text the scan can find anything in: a substring term, or a token of a
        # length compared by edit distance (an embedded term is longer than its term).
        self._min_scan = min([len(t) for t in self._terms] + [size for size, _, _ in self._by_length], default=0)

    def match(self, text: str) -> tuple[BrandHit, ...]:
        """Every brand in `text` (one label), the best kind per brand, longest terms only."""
        hits: dict[str, BrandHit] = {}

        def add(hit: BrandHit) -> None:
            old = hits.get(hit.brand)
            if old is None or (_KIND_ORDER[hit.kind], hit.common, not hit.whole) < (
                _KIND_ORDER[old.kind], old.common, not old.whole
            ):
                hits[hit.brand] = hit

        flat = text.replace("-", "").replace("_", "")
        for word in [text] if text.isalpha() else _NOT_LETTER.split(text):
            if not word:
                continue
            brand = self._token.get(word)
            if brand:
                add(BrandHit(brand, word, "exact", word == flat, common=True))
            for size in self._affix_lengths:
                for term in (word[:size], word[-size:]):
                    brand = self._affix.get(term)
                    if brand:
                        add(BrandHit(brand, term, "exact", word == flat))
        if not text.isalpha():
            for raw in _NOT_ALNUM.split(text):
                folded = raw.translate(_FOLD)
                brand = self._token.get(folded) if folded != raw else None
                if brand:  # app1e, g00gle: a short or ordinary-word term in look-alikes
                    add(BrandHit(brand, folded, "typo", folded == fold(flat), common=True))
        elif (folded := text.translate(_FOLD)) != text and folded in self._token:
            add(BrandHit(self._token[folded], folded, "typo", True, common=True))
        # Shorter than every term and every typo length: nothing for the scan to find.
        if len(flat) >= self._min_scan:
            self._scan(text, flat, add, variant=False)
            for pair, single in _FOLD_PAIRS:
                if pair in flat:
                    self._scan(text.replace(pair, single), flat.replace(pair, single), add, variant=True)
        if len(hits) < 2:
            return tuple(hits.values())
        found = list(hits.values())
        # "metamask" also starts with the term "meta": the longer term names the brand.
        kept = [h for h in found if not any(o.term != h.term and h.term in o.term for o in found)]
        return tuple(sorted(kept, key=lambda h: (_KIND_ORDER[h.kind], h.brand)))

    def _scan(self, text: str, flat: str, add: Callable[[BrandHit], None], *, variant: bool) -> None:
        folded_flat = flat.translate(_FOLD)
        at, terms = self._at, self._terms
        found: set[str] = set()
        embed: set[str] = set()
        get = at.get
        # Only the positions where some term is anchored (a comprehension: most positions have none).
        entries = [
            (i, entry) for i in range(len(folded_flat) - _ANCHOR + 1)
            if (entry := get(folded_flat[i : i + _ANCHOR])) is not None
        ]
        for i, (starting, anchored) in entries:
            if anchored:
                embed.update(anchored)
            for folded in starting:
                if folded_flat.startswith(folded, i):
                    t = terms[folded]
                    found.add(folded)
                    # Folding keeps positions: the raw label spells the term, or only its look-alike.
                    if not variant and flat.startswith(t.term, i):
                        add(BrandHit(t.brand, t.term, "exact", flat == t.term))
                    else:
                        add(BrandHit(t.brand, t.term, "typo", folded_flat == folded))
        tokens = self._tokens(text)
        typo_terms = self._typo_terms
        for _, token in tokens:  # whole tokens 1 edit (2 for long terms) from a term
            for t in typo_terms(token):
                add(BrandHit(t.brand, t.term, "typo", token == folded_flat))
        if not embed:
            return
        for folded in embed - found:
            t = terms[folded]
            for raw, token in tokens:
                if len(token) > len(folded) + 1 and self._embedded(raw, token, folded):
                    add(BrandHit(t.brand, t.term, "embedded"))
                    break

    def _find_typo_terms(self, token: str) -> tuple[_Term, ...]:
        """The terms 1 edit (2 for long terms) from `token`, closest first, ties in list order
        (cached per token by `_typo_terms`: tokens such as login or secure recur in many labels)."""
        key = (len(token), token[0], token[-1])
        choices = self._choices.get(key)
        if choices is None:
            choices = self._by_length.get((key[0], key[1], ""), [])
            ends = self._by_length.get((key[0], "", key[2]))
            if ends:
                choices = list(dict.fromkeys(choices + ends))
            self._choices[key] = choices  # bounded: lengths x first x last characters
        if not choices:
            return ()
        terms = self._terms
        return tuple(
            t for folded, dist, _ in process.extract(token, choices, scorer=OSA.distance, score_cutoff=2, limit=None)
            if 0 < dist <= (t := terms[folded]).edits
        )

    def _tokens(self, text: str) -> list[tuple[str, str]]:
        """(raw, folded) tokens of a label for edit-distance matching, listed words left out."""
        out = []
        not_typos = self._not_typos
        for raw in [text] if text.isalnum() else _NOT_ALNUM.split(text):
            if raw and raw not in not_typos:
                folded = raw.translate(_FOLD)
                out.append((raw, folded))
                if not folded.isalpha():
                    # Digits left after folding pad a brand out (amazom6): try the letters alone.
                    out.extend((p, p) for p in _NOT_LETTER.split(folded) if p and p not in not_typos)
        return out

    def _embedded(self, raw: str, token: str, term: str) -> bool:
        """A substring of (folded) `token` one edit from `term`, not a listed word.

        One edit (a transposition included) leaves the term's head or its tail intact, so
        only windows starting at the head or ending at the tail are compared.
        """
        size = len(term)
        head, tail = _head_tail(term)
        windows: set[tuple[int, int]] = set()
        at = token.find(head)
        while at != -1:
            windows.update((at, at + width) for width in (size - 1, size, size + 1))
            at = token.find(head, at + 1)
        at = token.find(tail)
        while at != -1:
            end = at + len(tail)
            windows.update((end - width, end) for width in (size - 1, size, size + 1))
            at = token.find(tail, at + 1)
        for a, b in windows:
            if (a >= 0 and b <= len(token) and raw[a:b] not in self._not_typos
                    and OSA.distance(token[a:b], term, score_cutoff=1) <= 1):
                return True
        return False


def _head_tail(term: str) -> tuple[str, str]:
    """The first and last h characters of `term`, h = (len - 2) // 2: one edit, a transposition
    of two neighbours included, cannot touch both."""
    h = (len(term) - 2) // 2
    return term[:h], term[-h:]


# --- Per-label analysis ---------------------------------------------------------------------


class LabelInfo(NamedTuple):
    """What the scorer needs to know about one DNS label (cached per label).

    Immutable like the dataclasses here, but a NamedTuple: one is built per new label, on the
    hot path, and it is ~6x cheaper to build than a frozen dataclass."""

    text: str  # lower-case ASCII skeleton
    idn: bool  # the label was punycode
    lookalike: bool  # IDN whose skeleton is plain ASCII (accented Latin reads as ASCII)
    mixed_script: bool
    random: bool
    numeric: bool
    hyphens: int  # not counting the two of "xn--"
    tokens: tuple[str, ...]  # split on - and _
    keywords: tuple[str, ...]
    hits: tuple[BrandHit, ...]
    # Per-label parts of the name-level rules, worked out once here rather than for every name.
    length: int  # of the label as written (long_label)
    fake_sub: bool  # as a subdomain label, it writes a TLD: com, com-x, x-net (fake_tld)
    com_edge: bool  # as the registrable label, it starts or ends with the token com
    second_level: bool  # a token is a registry's second-level label (co, go, gob)
    gov: bool  # a token is a government word (gov_lure)


# Rule precedence among brand rules when weights tie: stronger evidence first.
_BRAND_RULES = (
    "brand_homoglyph", "brand_in_subdomain", "brand_on_platform", "brand_typo", "brand_in_domain",
    "brand_other_tld", "brand_typo_subdomain", "brand_typo_embedded", "brand_cctld",
)
_BRAND_RANK = {rule: i for i, rule in enumerate(_BRAND_RULES)}
_FAKE_TLDS = frozenset({"com", "net", "org", "edu"})
# Second-level labels of country registries: "co" in co.jp, "go" in go.jp, "gob" in gob.mx.
_SECOND_LEVEL = frozenset({"com", "co", "net", "org", "edu", "gov", "gob", "gouv", "go", "or", "ne", "ac"})
_GOV_TOKENS = frozenset({"gov", "gouv", "gob", "govt"})
_TOKENS = re.compile(r"[\-_]+")


def fake_tld(labels: list[LabelInfo], cctlds: frozenset[str]) -> bool:
    """A TLD written into the name's own labels: paypal.com.evil.xyz, usps.com-track.top,
    paypal-com.xyz, smbc.co.jp.example.com, cao-go-jp.co. `labels` exclude the public suffix,
    the registrable label last."""
    *subs, reg = labels
    for label in subs:
        if label.fake_sub:  # com, com-x or x-com as a label of its own
            return True
    # A registrable label may well end in -net or -org (cyber-net.de); -com and com- it seldom does.
    if reg.com_edge:
        return True
    for label in labels:
        if label.second_level:
            break
    else:
        return False
    tokens = [t for lb in labels for t in lb.tokens]
    return any(a in _SECOND_LEVEL and b in cctlds for a, b in pairwise(tokens))


def gov_lure(labels: list[LabelInfo], suffix: str) -> bool:
    """A government word (gov, gouv, gob) as a token outside a government suffix, and not
    a government's own registrable domain (gov.uz)."""
    for label in labels:
        if label.gov:
            break
    else:
        return False
    if _GOV_TOKENS.intersection(suffix.split(".")):
        return False
    return not (labels[-1].text in _GOV_TOKENS and len(suffix.rsplit(".", 1)[-1]) == 2)


def longest_match_pattern(words: Iterable[str]) -> re.Pattern[str]:
    """A regex whose `findall` gives, scanning left to right, the longest of `words` at each
    match (as the alternation of the words, longest first, would) but compiled as a trie:
    `log(?:in)?` rather than `login|log`, so each position costs one branch, not one per word."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def branch(node: dict[str, dict]) -> str:
        alternatives = [re.escape(char) + branch(child) for char, child in sorted(node.items()) if char]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
        # Greedy: a longer word through this node is tried before the word ending here.
        return f"(?:{body})?" if "" in node else body

    return re.compile(branch(trie))


class _Registrable(NamedTuple):
    """The part of a verdict that depends on the registrable domain only (cached per domain;
    a NamedTuple for the same reason as LabelInfo)."""

    registered: str
    suffix: str
    owner: str | None
    label: LabelInfo
    brand_rules: tuple[tuple[str, float, str], ...]  # (rule, weight, brand)
    rules: tuple[tuple[str, float], ...]  # platform or TLD, random/numeric label


@lru_cache(maxsize=4)
def _suffix_splitter(platforms: tuple[str, ...]) -> tldextract.TLDExtract:
    """The public-suffix splitter for a list of hosting platforms, built once per process (its
    suffix trie takes ~40 ms) and shared by every Scorer of those lists; read-only once built.
    No network at run time: the bundled PSL snapshot only, no cache directory."""
    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True,
        include_psl_private_domains=True, extra_suffixes=platforms,
    )


class Scorer:
    """Scores DNS names with the rules above and the lists of `include/scoring/`.

    `lists` defaults to `load_lists()` (the project's include/scoring). `score(name, issuer)`
    is pure given the lists; results are cached per (name, issuer), label analyses per label
    and the registrable domain's share of the work per registrable domain.
    """

    def __init__(self, lists: ScoringLists | None = None) -> None:
        self._lists = lists if lists is not None else load_lists()
        lists = self._lists
        self._w = lists.weights
        self._limit = lists.limits
        self._owned = lists.owned_domains
        self._extract = _suffix_splitter(tuple(lists.platforms))
        limits = MatchLimits(*(int(self._limit[k]) for k in (
            "min_substring_len", "min_prefix_len", "min_fuzzy_len", "min_embedded_len",
            "min_deletion_len", "fuzzy_long_len")))
        self._matcher = BrandMatcher(lists.brands, limits, lists.not_typos)
        self._cctlds = frozenset(t for t in self._extract.tlds if len(t) == 2 and t.isalpha())
        self._keywords = longest_match_pattern(lists.keywords) if lists.keywords else None
        self._label = lru_cache(maxsize=_CACHE_LABELS)(self._analyse_label)
        self._registrable = lru_cache(maxsize=_CACHE_LABELS)(self._analyse_registrable)
        self._alone = lru_cache(maxsize=_CACHE_LABELS)(self._analyse_alone)
        self._cached = lru_cache(maxsize=_CACHE_NAMES)(self._score)
        self._issuer_ca = lru_cache(maxsize=1024)(self._free_ca)  # a few issuers sign most names
        self._threshold = lists.threshold

    @property
    def threshold(self) -> float:
        """Alert at or above this score (scoring.yaml)."""
        return self._lists.threshold

    @property
    def lists(self) -> ScoringLists:
        return self._lists

    def score(self, name: str, issuer: str | None = None) -> Score:
        """Score one DNS name; `issuer` (e.g. the issuer's organisation) enables free_ca."""
        return self._cached(name, issuer)

    # -- internals --

    def _analyse_label(self, label: str) -> LabelInfo:
        uni = decode_label(label)
        idn = uni != label or not label.isascii()  # an A-label, or a U-label given as such
        text = skeleton(uni)
        if "-" in text or "_" in text:
            tokens = tuple(filter(None, _TOKENS.split(text)))
        else:
            tokens = (text,) if text else ()
        several = len(tokens) > 1
        # Positional: the hot path, and a NamedTuple builds faster so (fields in LabelInfo order).
        return LabelInfo(
            text,
            idn,
            idn and text.isascii(),  # lookalike
            idn and is_mixed_script(uni),  # mixed_script
            not idn and looks_random(label),  # random
            is_numeric(label),
            label.count("-") - (2 if label.startswith("xn--") else 0),  # hyphens
            tokens,
            tuple(dict.fromkeys(self._keywords.findall(text))) if self._keywords else (),  # keywords
            self._matcher.match(text) if text.isascii() else (),  # hits
            len(label),  # length
            text in _FAKE_TLDS or (several and (tokens[0] in _FAKE_TLDS or tokens[-1] in _FAKE_TLDS)),  # fake_sub
            several and "com" in (tokens[0], tokens[-1]),  # com_edge
            not _SECOND_LEVEL.isdisjoint(tokens),  # second_level
            not _GOV_TOKENS.isdisjoint(tokens),  # gov
        )

    def _analyse_registrable(self, reg_label: str, suffix: str, is_private: bool) -> _Registrable:
        w = self._w
        registered = f"{reg_label}.{suffix}"
        owner = self._owned.get(registered)
        info = self._label(reg_label)
        if owner is not None:
            return _Registrable(registered, suffix, owner, info, (), ())
        platform = self._lists.platforms.get(suffix)
        if platform is None and is_private:
            platform = w["shared_platform_psl"]
        if reg_label == "www":  # the platform's own site, not a tenant
            platform = None
        tld = suffix.rsplit(".", 1)[-1]
        brand_rules = []
        for hit in info.hits:
            rule = self._registrable_brand_rule(hit, info, platform is not None, tld)
            brand_rules.append((rule, self._brand_weight(rule, hit), hit.brand))
        rules: list[tuple[str, float]] = []
        if platform is not None:
            rules.append((f"shared_platform:{suffix}", platform))
        else:
            tld_weight = self._lists.tlds.get(suffix)
            key = suffix
            if tld_weight is None:
                tld_weight, key = self._lists.tlds.get(tld), tld
            if tld_weight:
                rules.append((f"suspicious_tld:{key}", tld_weight))
        if info.random:
            rules.append(("random_label", w["random_label"]))
        elif info.numeric:
            rules.append(("numeric_label", w["numeric_label"]))
        return _Registrable(registered, suffix, None, info, tuple(brand_rules), tuple(rules))

    def _analyse_alone(
        self, reg_label: str, suffix: str, is_private: bool
    ) -> tuple[tuple[tuple[str, float], ...], str | None]:
        """The rules and brand of the name that is the registrable domain alone (or its www):
        most names of a certificate are, so this is cached per registrable domain, and only
        worked out when such a name comes (a name with subdomain labels never needs it)."""
        fired, brand = self._combine(self._registrable(reg_label, suffix, is_private), [], reg_label)
        return tuple(fired), brand

    def _brand_weight(self, rule: str, hit: BrandHit) -> float:
        # An ordinary word (booking.example.com) is a brand far less often than "paypal" is;
        # spelled in look-alike characters it is no accident.
        common = hit.common and rule != "brand_homoglyph"
        return self._w[rule] * (self._limit["common_word_factor"] if common else 1.0)

    def _registrable_brand_rule(self, hit: BrandHit, reg: LabelInfo, on_platform: bool, tld: str) -> str:
        if reg.idn:
            return "brand_homoglyph"
        if on_platform:
            return "brand_on_platform" if hit.kind != "embedded" else "brand_typo_embedded"
        if hit.kind == "typo":
            return "brand_typo"
        if hit.kind == "embedded":
            return "brand_typo_embedded"
        if hit.whole:
            # The brand's own name under another TLD: country TLDs are often the brand's own.
            return "brand_cctld" if len(tld) == 2 else "brand_other_tld"
        return "brand_in_domain"

    def _free_ca(self, issuer: str | None) -> tuple[str, float] | None:
        if not issuer:
            return None
        lowered = issuer.lower()
        for needle, weight in self._lists.free_cas:
            if needle in lowered:
                return "free_ca:" + re.sub(r"[^a-z0-9.]+", "_", needle.replace("'", "")).strip("_"), weight
        return None

    def _score(self, name: str, issuer: str | None) -> Score:
        host = name.strip().lower().rstrip(".")
        wildcard = host.startswith("*.")
        while host.startswith("*."):
            host = host[2:]
        parts = self._extract(host)
        suffix, reg_label = parts.suffix, parts.domain
        if not suffix or not reg_label:  # an IP address, a bare suffix, an unknown TLD
            return Score(name, 0.0, False, (), suffix, None)
        is_private = parts.is_private
        reg = self._registrable(reg_label, suffix, is_private)
        if reg.owner is not None:
            return Score(name, 0.0, False, ((f"brand_owned:{reg.owner}", 0.0),), reg.registered, reg.owner)
        subs = [s for s in parts.subdomain.split(".") if s and s != "www"] if parts.subdomain else []
        if subs:
            fired, brand = self._combine(reg, [self._label(s) for s in subs], ".".join([*subs, reg_label]))
        else:
            alone, brand = self._alone(reg_label, suffix, is_private)
            fired = list(alone)
        w = self._w
        if host.count(".") > self._limit["dots"]:
            fired.append(("many_dots", w["many_dots"]))
        if wildcard:
            fired.append(("wildcard", w["wildcard"]))
        ca = self._issuer_ca(issuer)
        if ca:
            fired.append(ca)
        rules = tuple(sorted(((r, float(x)) for r, x in fired if x), key=lambda r: -r[1]))
        total = float(round(sum(x for _, x in rules), 6))
        return Score(name, total, total >= self._threshold, rules, reg.registered, brand)

    def _combine(
        self, reg: _Registrable, subs: list[LabelInfo], body: str
    ) -> tuple[list[tuple[str, float]], str | None]:
        """The rules of a name given its registrable part, its subdomain labels (www left out)
        and `body`, the name without suffix and www."""
        w, limit = self._w, self._limit
        labels = [*subs, reg.label]
        fired: list[tuple[str, float]] = []

        # Brands: keep the strongest rule; several brands add multi_brand.
        brand_rules = list(reg.brand_rules)
        for info in subs:
            for hit in info.hits:
                if info.idn:
                    rule = "brand_homoglyph"
                elif hit.kind == "exact":
                    rule = "brand_in_subdomain"
                elif hit.kind == "typo":
                    rule = "brand_typo_subdomain"
                else:
                    rule = "brand_typo_embedded"
                brand_rules.append((rule, self._brand_weight(rule, hit), hit.brand))
        brand: str | None = None
        if brand_rules:
            rule, weight, brand = max(brand_rules, key=lambda r: (r[1], -_BRAND_RANK[r[0]]))
            fired.append((f"{rule}:{brand}", weight))
            if any(b != brand for _, _, b in brand_rules):
                fired.append(("multi_brand", w["multi_brand"]))

        # Lure words anywhere but in the public suffix (a platform's name is part of it).
        found = [k for info in labels for k in info.keywords]
        if found:
            keywords = self._lists.keywords
            budget = limit["keyword_cap"]
            for word in sorted(dict.fromkeys(found), key=lambda k: -keywords[k]):
                weight = min(keywords[word], budget)
                if weight > 0:
                    fired.append((f"keyword:{word}", weight))
                    budget -= weight

        fired.extend(reg.rules)
        if fake_tld(labels, self._cctlds):
            fired.append(("fake_tld", w["fake_tld"]))
        if gov_lure(labels, reg.suffix):
            fired.append(("gov_lure", w["gov_lure"]))
        # One pass over the labels for the structural rules (mixed_script and lookalike imply idn).
        mixed = lookalike = False
        hyphens = longest = 0
        for info in labels:
            hyphens += info.hyphens
            if info.length > longest:
                longest = info.length
            if info.idn:
                mixed = mixed or info.mixed_script
                lookalike = lookalike or info.lookalike
        if mixed:
            fired.append(("mixed_script", w["mixed_script"]))
        elif lookalike:
            fired.append(("idn_lookalike", w["idn_lookalike"]))
        for info in subs:
            if info.random:
                fired.append(("random_subdomain", w["random_subdomain"]))
                break
        if hyphens > limit["hyphens"]:
            fired.append(("many_hyphens", w["many_hyphens"]))
        extra = len(subs) - limit["nesting"]
        if extra > 0:
            nesting = min(w["deep_nesting"] + w["deep_nesting_per_label"] * (extra - 1), w["deep_nesting_cap"])
            fired.append(("deep_nesting", nesting))
        if longest > limit["long_label"]:  # the longest label of `body`
            fired.append(("long_label", w["long_label"]))
        # Continuous, so that names with the same discrete rules still rank by randomness.
        bits = entropy(body) - limit["entropy"]
        if bits > 0:
            fired.append(("entropy", round(min(w["entropy"] * bits, w["entropy_cap"]), 1)))
        return fired, brand
