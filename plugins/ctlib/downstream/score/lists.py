"""The editable lists behind the phishing scorer, loaded from `include/scoring/`.

One YAML file per list, each documented at its top: `scoring.yaml` (threshold, rule weights,
limits), `keywords.yaml`, `brands.yaml`, `tlds.yaml`, `platforms.yaml`, `free_cas.yaml`,
`not_typos.yaml`. `load_lists(folder)` reads and checks them all and returns one frozen
`ScoringLists`; any malformed entry raises `ScoringListError` naming the file and the entry.
Everything is lower-cased here so the scorer compares plain strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ctlib.settings import PROJECT_ROOT

DEFAULT_FOLDER = PROJECT_ROOT / "include" / "scoring"

_TERM = re.compile(r"^[a-z0-9]+$")
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_KEYWORD = re.compile(r"^[a-z0-9.-]+$")

# Rules every scoring.yaml must weigh, and limits it must set: a typo in a key fails loudly.
RULES: frozenset[str] = frozenset(
    [
        "brand_homoglyph", "brand_in_subdomain", "brand_on_platform", "brand_typo",
        "brand_in_domain", "brand_other_tld", "brand_typo_subdomain", "brand_typo_embedded",
        "brand_cctld", "multi_brand", "fake_tld", "gov_lure", "idn_lookalike", "mixed_script",
        "shared_platform_psl", "random_label", "numeric_label", "random_subdomain", "many_hyphens",
        "deep_nesting", "deep_nesting_per_label", "deep_nesting_cap", "many_dots", "long_label",
        "entropy", "entropy_cap", "wildcard"
    ]
)
LIMITS: frozenset[str] = frozenset(
    [
        "hyphens", "nesting", "dots", "long_label", "entropy", "keyword_cap", "min_substring_len",
        "min_prefix_len", "min_fuzzy_len", "min_embedded_len", "min_deletion_len", "fuzzy_long_len",
        "common_word_factor"
    ]
)


class ScoringListError(ValueError):
    """A list file is missing or malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Brand:
    """A brand: the terms that name it in DNS labels and the registrable domains it owns.

    `strict_terms` are ordinary words (apple, orange): they match whole tokens only, never by
    edit distance.
    """

    name: str
    terms: tuple[str, ...]
    domains: frozenset[str]
    strict_terms: tuple[str, ...] = ()


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class ScoringLists:
    """Everything the scorer reads from the list files (immutable once loaded)."""

    threshold: float
    weights: Mapping[str, float]
    limits: Mapping[str, float]
    keywords: Mapping[str, float]
    brands: tuple[Brand, ...]
    tlds: Mapping[str, float]
    platforms: Mapping[str, float]
    free_cas: tuple[tuple[str, float], ...]
    not_typos: frozenset[str] = field(default_factory=frozenset)

    @property
    def owned_domains(self) -> Mapping[str, str]:
        """Registrable domain -> the brand owning it (the first brand listing it)."""
        owned: dict[str, str] = {}
        for brand in self.brands:
            for domain in brand.domains:
                owned.setdefault(domain, brand.name)
        return MappingProxyType(owned)


# libyaml's loader when PyYAML was built with it: the same documents, ~7x faster to read.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
    except FileNotFoundError:
        raise ScoringListError(f"{path}: missing") from None
    except yaml.YAMLError as exc:
        raise ScoringListError(f"{path}: not valid YAML: {exc}") from None


def _weights(path: Path, raw: Any, key_pattern: re.Pattern[str] | None = None) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ScoringListError(f"{path}: expected a mapping of name: weight")
    out: dict[str, float] = {}
    for key, value in raw.items():
        name = str(key).strip().lower()
        if key_pattern is not None and not key_pattern.match(name):
            raise ScoringListError(f"{path}: {key!r} is not a valid entry")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScoringListError(f"{path}: {key!r} has weight {value!r}, not a number")
        out[name] = float(value)
    return out


def _brands(path: Path, raw: Any) -> tuple[Brand, ...]:
    if not isinstance(raw, dict) or not isinstance(raw.get("brands"), dict):
        raise ScoringListError(f"{path}: expected a top-level 'brands' mapping")
    brands = []
    for name, spec in raw["brands"].items():
        name = str(name).strip().lower()
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ScoringListError(f"{path}: brand {name!r} must be a mapping")
        unknown = set(spec) - {"terms", "strict_terms", "domains"}
        if unknown:
            raise ScoringListError(f"{path}: brand {name!r} has unknown keys {sorted(unknown)}")
        strict = tuple(str(t).strip().lower() for t in spec.get("strict_terms") or [])
        default = [] if strict else [name]
        terms = tuple(str(t).strip().lower() for t in spec.get("terms") or default)
        domains = frozenset(str(d).strip().lower().rstrip(".") for d in spec.get("domains") or [])
        for term in terms + strict:
            if not _TERM.match(term):
                raise ScoringListError(f"{path}: brand {name!r}: term {term!r} is not [a-z0-9]+")
        for domain in domains:
            if "." not in domain or not _DOMAIN.match(domain):
                raise ScoringListError(f"{path}: brand {name!r}: {domain!r} is not a domain name")
        brands.append(Brand(name, terms, domains, strict))
    return tuple(brands)


def _section(path: Path, raw: Any, key: str, required: frozenset[str]) -> dict[str, float]:
    values = _weights(path, (raw or {}).get(key) if isinstance(raw, dict) else None)
    missing = required - set(values)
    unknown = set(values) - required
    if missing or unknown:
        raise ScoringListError(f"{path}: {key}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return values


def load_lists(folder: Path | str = DEFAULT_FOLDER) -> ScoringLists:
    """Read and check every list file of `folder` (default: the project's include/scoring)."""
    folder = Path(folder)
    scoring = _read(folder / "scoring.yaml")
    if not isinstance(scoring, dict) or not isinstance(scoring.get("threshold"), int | float):
        raise ScoringListError(f"{folder / 'scoring.yaml'}: 'threshold' must be a number")
    not_typos = _read(folder / "not_typos.yaml") or []
    if not isinstance(not_typos, list):
        raise ScoringListError(f"{folder / 'not_typos.yaml'}: expected a list of words")
    free_cas = _weights(folder / "free_cas.yaml", _read(folder / "free_cas.yaml"))
    return ScoringLists(
        threshold=float(scoring["threshold"]),
        weights=_frozen(_section(folder / "scoring.yaml", scoring, "weights", RULES)),
        limits=_frozen(_section(folder / "scoring.yaml", scoring, "limits", LIMITS)),
        keywords=_frozen(_weights(folder / "keywords.yaml", _read(folder / "keywords.yaml"), _KEYWORD)),
        brands=_brands(folder / "brands.yaml", _read(folder / "brands.yaml")),
        tlds=_frozen(_weights(folder / "tlds.yaml", _read(folder / "tlds.yaml"), _DOMAIN)),
        platforms=_frozen(_weights(folder / "platforms.yaml", _read(folder / "platforms.yaml"), _DOMAIN)),
        free_cas=tuple(free_cas.items()),
        not_typos=frozenset(str(w).strip().lower() for w in not_typos),
    )
