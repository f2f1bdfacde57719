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
`xn--pypal-4ve.com` reads `pàypal` -> `paypal`. Brands match exactly (substring, or whole
token for short terms) or by edit distance (OSA: a transposition is one edit), the allowed
distance growing with the term's length. The per-label work is cached (most names of a
certificate share their registrable label), and so is every name's result.

Not thread-safe for concurrent first use of one Scorer (caches); one Scorer per worker.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import idna
import tldextract
from confusable_homoglyphs import confusables as _confusables
from rapidfuzz.distance import OSA

from ctlib.score.lists import Brand, ScoringLists, load_lists

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

_VOWELS = frozenset("aeiou")
_HEX = frozenset("0123456789abcdef")
_NOT_LETTER = re.compile(r"[^a-z]+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=8192)
def _skeleton_char(char: str) -> str:
    """ASCII look-alike of one non-ASCII character ('' for combining marks; itself if none)."""
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


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0] if name else ""


def is_mixed_script(text: str) -> bool:
    """More than one script among the letters of `text` (Latin + Cyrillic, ...)."""
    scripts = {_script(c) for c in text if c.isalpha()}
    return len(scripts) > 1


def entropy(text: str) -> float:
    """Shannon entropy of `text`, bits per character."""
    n = len(text)
    if not n:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def looks_random(label: str) -> bool:
    """A label that looks machine-generated: hex-like, letters and digits interleaved, or
    letters with almost no vowels or a long consonant run. Short labels never do."""
    if len(label) < 6:
        return False
    alnum = label.replace("-", "")
    if len(alnum) >= 10 and set(alnum) <= _HEX and not alnum.isdigit() and not alnum.isalpha():
        return True
    flips = sum(1 for a, b in zip(alnum, alnum[1:]) if a.isdigit() != b.isdigit())
    if flips >= 4:
        return True
    letters = _NOT_LETTER.sub("", label)
    if len(letters) < 6:
        return False
    if sum(c in _VOWELS for c in letters) / len(letters) < 0.15:
        return True
    run = longest = 0
    for c in letters:
        run = 0 if c in _VOWELS or c == "y" else run + 1
        longest = max(longest, run)
    return longest >= 5


def is_numeric(label: str) -> bool:
    """Mostly digits (473621, 3659vip3 is not; 55100-55100tz02 is)."""
    digits = sum(c.isdigit() for c in label)
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
    is nothing but the term."""

    brand: str
    term: str
    kind: str
    whole: bool = False


_KIND_ORDER = {"exact": 0, "typo": 1, "embedded": 2}


@dataclass(frozen=True)
class MatchLimits:
    """Term lengths that decide how a term may match (scoring.yaml `limits`)."""

    min_substring: int = 5
    min_prefix: int = 4
    min_fuzzy: int = 5
    min_embedded: int = 7
    long_len: int = 9


class BrandMatcher:
    """Finds brand terms in one (skeleton, lower-case ASCII) label."""

    def __init__(self, brands: Iterable[Brand], limits: MatchLimits, not_typos: frozenset[str]) -> None:
        self._limits = limits
        self._not_typos = not_typos
        self._token: dict[str, str] = {}  # whole tokens only: strict and short terms
        self._prefix: dict[str, str] = {}  # a token or its start: short terms from min_prefix
        self._substring: dict[str, str] = {}  # anywhere in the label: term -> brand
        for brand in brands:
            for term in brand.strict_terms:
                self._token.setdefault(term, brand.name)
            for term in brand.terms:
                if len(term) >= limits.min_substring:
                    self._substring.setdefault(term, brand.name)
                elif len(term) >= limits.min_prefix:
                    self._prefix.setdefault(term, brand.name)
                else:
                    self._token.setdefault(term, brand.name)
        self._unfold: dict[str, str] = {}
        for term in self._substring:
            self._unfold.setdefault(fold(term), term)
        # Bigram index of the folded terms: a string within k edits (a transposition counting
        # as one) of a term of length L keeps at least L-1-3k of its bigrams, so only a handful
        # of terms ever reach an edit-distance computation.
        self._bigrams: dict[str, list[str]] = {}
        for folded in self._unfold:
            for gram in {folded[i : i + 2] for i in range(len(folded) - 1)}:
                self._bigrams.setdefault(gram, []).append(folded)

    def _edits(self, term: str) -> int:
        return 2 if len(term) >= self._limits.long_len else 1

    def match(self, text: str) -> tuple[BrandHit, ...]:
        """Every brand in `text` (one label), the best kind per brand, longest terms only."""
        hits: dict[str, BrandHit] = {}

        def add(hit: BrandHit) -> None:
            old = hits.get(hit.brand)
            if old is None or (_KIND_ORDER[hit.kind], not hit.whole) < (_KIND_ORDER[old.kind], not old.whole):
                hits[hit.brand] = hit

        flat = text.replace("-", "").replace("_", "")
        for word in _NOT_LETTER.split(text):
            if not word:
                continue
            brand = self._token.get(word)
            if brand:
                add(BrandHit(brand, word, "exact", word == flat))
            for term, brand in self._prefix.items():
                if word.startswith(term):
                    add(BrandHit(brand, term, "exact", word == flat))
        self._scan(text, flat, add, variant=False)
        for pair, single in _FOLD_PAIRS:
            if pair in flat:
                self._scan(text.replace(pair, single), flat.replace(pair, single), add, variant=True)
        found = list(hits.values())
        # "metamask" also starts with the term "meta": the longer term names the brand.
        kept = [h for h in found if not any(o.term != h.term and h.term in o.term for o in found)]
        return tuple(sorted(kept, key=lambda h: (_KIND_ORDER[h.kind], h.brand)))

    def _scan(self, text: str, flat: str, add: Callable[[BrandHit], None], *, variant: bool) -> None:
        folded_flat = fold(flat)
        counts: Counter[str] = Counter()
        for gram in {folded_flat[i : i + 2] for i in range(len(folded_flat) - 1)}:
            counts.update(self._bigrams.get(gram, ()))
        if not counts:
            return
        tokens = [t for t in _NOT_ALNUM.split(text) if t and t not in self._not_typos]
        folded_tokens = [fold(t) for t in tokens]
        for folded, shared in counts.items():
            term = self._unfold[folded]
            brand = self._substring[term]
            if not variant and term in flat:
                add(BrandHit(brand, term, "exact", flat == term))
            elif folded in folded_flat:
                # Read only through look-alike characters: a deliberate misspelling.
                add(BrandHit(brand, term, "typo", folded_flat == folded))
            elif len(term) >= self._limits.min_fuzzy:
                k = self._edits(term)
                if shared < len(folded) - 1 - 3 * k:
                    continue
                for token in folded_tokens:
                    if abs(len(token) - len(folded)) <= k:
                        if OSA.distance(token, folded, score_cutoff=k) <= k:
                            add(BrandHit(brand, term, "typo", token == folded_flat))
                            break
                    elif len(term) >= self._limits.min_embedded and len(token) > len(folded) + 1:
                        if _embedded(token, folded):
                            add(BrandHit(brand, term, "embedded"))
                            break


def _embedded(token: str, term: str) -> bool:
    """A substring of `token` exactly one edit from `term`."""
    size = len(term)
    for width in (size - 1, size, size + 1):
        for start in range(len(token) - width + 1):
            if OSA.distance(token[start : start + width], term, score_cutoff=1) <= 1:
                return True
    return False


# --- Per-label analysis ---------------------------------------------------------------------


@dataclass(frozen=True)
class LabelInfo:
    """What the scorer needs to know about one DNS label (cached per label)."""

    text: str  # lower-case ASCII skeleton
    idn: bool  # the label was punycode
    lookalike: bool  # IDN whose skeleton is plain ASCII (accented Latin reads as ASCII)
    mixed_script: bool
    random: bool
    numeric: bool
    hits: tuple[BrandHit, ...]


# Rule precedence among brand rules when weights tie: stronger evidence first.
_BRAND_RULES = (
    "brand_homoglyph", "brand_in_subdomain", "brand_on_platform", "brand_typo", "brand_in_domain",
    "brand_other_tld", "brand_typo_subdomain", "brand_typo_embedded", "brand_cctld",
)
_FAKE_TLDS = frozenset({"com", "net", "org", "edu"})
_GOV_TOKENS = frozenset({"gov", "gouv", "gob", "govt"})
_TOKENS = re.compile(r"[.\-_]+")


class Scorer:
    """Scores DNS names with the rules above and the lists of `include/scoring/`.

    `lists` defaults to `load_lists()` (the project's include/scoring). `score(name, issuer)`
    is pure given the lists; results are cached per (name, issuer).
    """

    def __init__(self, lists: ScoringLists | None = None) -> None:
        self._lists = lists if lists is not None else load_lists()
        lists = self._lists
        self._w = lists.weights
        self._limit = lists.limits
        self._owned = lists.owned_domains
        # No network at run time: the bundled PSL snapshot only, no cache directory.
        self._extract = tldextract.TLDExtract(
            suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True,
            include_psl_private_domains=True, extra_suffixes=tuple(lists.platforms),
        )
        limits = MatchLimits(*(int(self._limit[k]) for k in (
            "min_substring_len", "min_prefix_len", "min_fuzzy_len", "min_embedded_len", "fuzzy_long_len")))
        self._matcher = BrandMatcher(lists.brands, limits, lists.not_typos)
        words = sorted(lists.keywords, key=len, reverse=True)  # longest first: "verification" wins
        self._keywords = re.compile("|".join(map(re.escape, words))) if words else None
        self._label = lru_cache(maxsize=_CACHE_LABELS)(self._analyse_label)
        self._cached = lru_cache(maxsize=_CACHE_NAMES)(self._score)

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
        idn = uni != label
        text = skeleton(uni)
        return LabelInfo(
            text=text,
            idn=idn,
            lookalike=idn and text.isascii(),
            mixed_script=idn and is_mixed_script(uni),
            random=not idn and looks_random(label),
            numeric=is_numeric(label),
            hits=self._matcher.match(text) if text.isascii() else (),
        )

    def _free_ca(self, issuer: str | None) -> tuple[str, float] | None:
        if not issuer:
            return None
        lowered = issuer.lower()
        for needle, weight in self._lists.free_cas:
            if needle in lowered:
                return "free_ca:" + re.sub(r"[^a-z0-9.]+", "_", needle.replace("'", "")).strip("_"), weight
        return None

    def _score(self, name: str, issuer: str | None) -> Score:
        w = self._w
        host = name.strip().lower().rstrip(".")
        fired: list[tuple[str, float]] = []
        wildcard = host.startswith("*.")
        while host.startswith("*."):
            host = host[2:]
        parts = self._extract(host)
        suffix, reg_label = parts.suffix, parts.domain
        if not suffix or not reg_label:  # an IP address, a bare suffix, an unknown TLD
            return Score(name, 0.0, False, (), "" if not suffix else suffix, None)
        registered = f"{reg_label}.{suffix}"
        owner = self._owned.get(registered)
        if owner is not None:
            return Score(name, 0.0, False, ((f"brand_owned:{owner}", 0.0),), registered, owner)

        subs = [s for s in parts.subdomain.split(".") if s] if parts.subdomain else []
        platform = self._lists.platforms.get(suffix)
        if platform is None and parts.is_private:
            platform = w["shared_platform_psl"]
        on_platform = platform is not None
        reg = self._label(reg_label)
        sub_infos = [self._label(s) for s in subs if s != "www"]
        tld = suffix.rsplit(".", 1)[-1]

        # Brands: keep the strongest rule; several brands add multi_brand.
        brand_rules: list[tuple[str, float, str]] = []
        for hit in reg.hits:
            rule = self._registrable_brand_rule(hit, reg, on_platform, tld)
            brand_rules.append((rule, w[rule], hit.brand))
        for info in sub_infos:
            for hit in info.hits:
                if info.idn:
                    rule = "brand_homoglyph"
                elif hit.kind == "exact":
                    rule = "brand_in_subdomain"
                elif hit.kind == "typo":
                    rule = "brand_typo_subdomain"
                else:
                    rule = "brand_typo_embedded"
                brand_rules.append((rule, w[rule], hit.brand))
        brand: str | None = None
        if brand_rules:
            rule, weight, brand = max(brand_rules, key=lambda r: (r[1], -_BRAND_RULES.index(r[0])))
            fired.append((f"{rule}:{brand}", weight))
            if len({b for _, _, b in brand_rules}) > 1:
                fired.append(("multi_brand", w["multi_brand"]))

        # Lure words in everything but the public suffix (the platform's name excluded too).
        texts = [i.text for i in sub_infos] + [reg.text]
        if self._keywords is not None:
            found = dict.fromkeys(m.group(0) for m in self._keywords.finditer(".".join(texts)))
            budget = self._limit["keyword_cap"]
            for word in sorted(found, key=lambda k: -self._lists.keywords[k]):
                weight = min(self._lists.keywords[word], budget)
                if weight > 0:
                    fired.append((f"keyword:{word}", weight))
                    budget -= weight

        if on_platform:
            fired.append((f"shared_platform:{suffix}", platform))
        else:
            tld_weight = self._lists.tlds.get(suffix, self._lists.tlds.get(tld))
            if tld_weight:
                fired.append((f"suspicious_tld:{suffix if suffix in self._lists.tlds else tld}", tld_weight))

        tokens = [t for t in _TOKENS.split(".".join(texts)) if t]
        labels = [i.text for i in sub_infos] + [reg.text]
        if any(lb in _FAKE_TLDS for lb in labels[:-1]) or any(
            lb.startswith(tuple(t + "-" for t in _FAKE_TLDS)) or lb.endswith(tuple("-" + t for t in _FAKE_TLDS))
            for lb in labels
        ) or any(a == "co" and len(b) == 2 for a, b in zip(labels, labels[1:])):
            fired.append(("fake_tld", w["fake_tld"]))
        if _GOV_TOKENS.intersection(tokens) and not _GOV_TOKENS.intersection(suffix.split(".")):
            fired.append(("gov_lure", w["gov_lure"]))

        infos = [*sub_infos, reg]
        if any(i.mixed_script for i in infos):
            fired.append(("mixed_script", w["mixed_script"]))
        elif any(i.lookalike for i in infos):
            fired.append(("idn_lookalike", w["idn_lookalike"]))
        if reg.random:
            fired.append(("random_label", w["random_label"]))
        elif reg.numeric:
            fired.append(("numeric_label", w["numeric_label"]))
        if any(i.random for i in sub_infos):
            fired.append(("random_subdomain", w["random_subdomain"]))

        body = host[: -len(suffix) - 1]
        if body.count("-") - 2 * body.count("xn--") > self._limit["hyphens"]:
            fired.append(("many_hyphens", w["many_hyphens"]))
        extra = len(sub_infos) - int(self._limit["nesting"])
        if extra > 0:
            nesting = min(w["deep_nesting"] + w["deep_nesting_per_label"] * (extra - 1), w["deep_nesting_cap"])
            fired.append(("deep_nesting", nesting))
        if host.count(".") > self._limit["dots"]:
            fired.append(("many_dots", w["many_dots"]))
        if any(len(lb) > self._limit["long_label"] for lb in [*subs, reg_label]):
            fired.append(("long_label", w["long_label"]))
        if entropy(body) >= self._limit["entropy"]:
            fired.append(("entropy", w["entropy"]))
        if wildcard:
            fired.append(("wildcard", w["wildcard"]))
        ca = self._free_ca(issuer)
        if ca:
            fired.append(ca)

        rules = tuple(sorted(((r, float(x)) for r, x in fired if x), key=lambda r: -r[1]))
        total = float(round(sum(x for _, x in rules), 6))
        return Score(name, total, total >= self.threshold, rules, registered, brand)

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
