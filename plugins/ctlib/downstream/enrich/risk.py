"""The combined 0..100 risk of a domain: phishing score, threat intel and registration age."""

from __future__ import annotations

from datetime import date

from ctlib.downstream.enrich.passivetotal import PassiveTotalResult
from ctlib.downstream.enrich.threatstream import ThreatIndicator, ThreatStreamResult

SCORE_POINTS = 40.0  # points for a phishing score exactly at its alert threshold
SCORE_CAP_RATIO = 1.5  # a score above 1.5x the threshold adds nothing more (60 points)
INTEL_POINTS = 40.0  # points for the worst possible threat-intel indicator
SEVERITY_WEIGHT = {"low": 0.4, "medium": 0.6, "high": 0.85, "very-high": 1.0}
STATUS_WEIGHT = {"active": 1.0, "inactive": 0.4, "falsepos": 0.0}
OTHER_STATUS_WEIGHT = 0.7  # a status ThreatStream did not document
UNKNOWN_CONFIDENCE_WEIGHT = 0.5  # confidence -1
PHISH_C2_TYPES = frozenset({"phish", "phishing", "c2"})
OTHER_TYPE_WEIGHT = 0.75  # malware, apt, spam, ...: bad, but less telling for phishing
YOUNG_DAYS = 30
YOUNG_POINTS = (10.0, 10.0)  # flat + linear: +20 on the day of registration, +10 at 30 days
OLD_DAYS = 365
POINTS_PER_YEAR = 5.0  # subtracted per year of age once a domain is a year old ...
OLD_MAX = 15.0  # ... up to this many
COMPROMISED_POINTS = 5.0  # PassiveTotal everCompromised: a hijacked domain hosting a kit


def indicator_weight(indicator: ThreatIndicator) -> float:
    """0..1: confidence x severity x status x threat type of one indicator."""
    confidence = (
        UNKNOWN_CONFIDENCE_WEIGHT if indicator.confidence < 0 else min(indicator.confidence, 100) / 100
    )
    status = STATUS_WEIGHT.get(indicator.status, OTHER_STATUS_WEIGHT)
    kind = 1.0 if _is_phish_or_c2(indicator) else OTHER_TYPE_WEIGHT
    return confidence * SEVERITY_WEIGHT.get(indicator.severity, SEVERITY_WEIGHT["low"]) * status * kind


def _is_phish_or_c2(indicator: ThreatIndicator) -> bool:
    return indicator.threat_type in PHISH_C2_TYPES or indicator.itype.startswith(("phish_", "c2_"))


def combined_risk(
    score: float,
    threshold: float,
    pt: PassiveTotalResult | None,
    ts: ThreatStreamResult | None,
    now: date,
) -> tuple[float, tuple[str, ...]]:
    """Risk 0..100 (one decimal) of a domain, and the reasons that moved it.

    risk = clamp(S + I + A + C, 0, 100), where

    - S, phishing score: 40 x min(score / threshold, 1.5), at least 0. A score at its
      alert threshold gives 40, one at 1.5x the threshold or above gives 60.
    - I, threat intel (ThreatStream): 40 x the largest weight among the indicators, where
      weight = c x v x s x t with
        c = confidence / 100 (0.5 when confidence is -1, unknown),
        v = severity: low 0.4, medium 0.6, high 0.85, very-high 1.0,
        s = status: active 1.0, inactive 0.4, falsepos 0 (other statuses 0.7),
        t = 1.0 for phish/c2 threat types (or phish_*/c2_* itypes), otherwise 0.75.
      No indicators, or no ThreatStream result, gives 0.
    - A, registration age (PassiveTotal WHOIS `registered`, age in days on `now`):
      under 30 days +10 + 10 x (1 - age / 30), so +20 on the day of registration;
      30..364 days 0; from one year -5 per year of age, at most -15; unknown 0.
    - C, compromise: +5 when PassiveTotal says the domain was ever compromised.

    The risk is non-decreasing in `score` and in every indicator's confidence, and
    non-increasing in the domain's age. Raises ValueError when `threshold` is not > 0.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    reasons: list[str] = []
    ratio = max(0.0, score / threshold)
    total = SCORE_POINTS * min(ratio, SCORE_CAP_RATIO)
    reasons.append(f"phishing score {score:.4g} is {ratio:.2f}x the alert threshold {threshold:.4g} (+{total:.1f})")

    if ts is not None and ts.indicators:
        worst = max(ts.indicators, key=indicator_weight)
        points = INTEL_POINTS * indicator_weight(worst)
        total += points
        confidence = "unknown" if worst.confidence < 0 else str(worst.confidence)
        reasons.append(
            f"ThreatStream: {worst.status or 'unknown-status'} {worst.itype or worst.threat_type or 'indicator'}"
            f" (threat type {worst.threat_type or 'unknown'}), confidence {confidence},"
            f" severity {worst.severity} (+{points:.1f})"
        )

    if pt is not None and pt.registered is not None:
        age = max(0, (now - pt.registered).days)
        if age < YOUNG_DAYS:
            flat, slope = YOUNG_POINTS
            points = flat + slope * (1 - age / YOUNG_DAYS)
            total += points
            reasons.append(f"registered {age} days ago, on {pt.registered.isoformat()} (+{points:.1f})")
        elif age >= OLD_DAYS:
            years = age / 365.25
            points = min(OLD_MAX, POINTS_PER_YEAR * years)
            total -= points
            reasons.append(f"registered {years:.1f} years ago, on {pt.registered.isoformat()} (-{points:.1f})")

    if pt is not None and pt.ever_compromised:
        total += COMPROMISED_POINTS
        reasons.append(f"PassiveTotal: domain was compromised before (+{COMPROMISED_POINTS:.1f})")

    return round(min(100.0, max(0.0, total)), 1), tuple(reasons)
