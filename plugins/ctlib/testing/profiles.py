"""Load profiles for the local CT log server: which logs, how fast, how they answer.

`firehose_profile()` is the 2026 CT firehose as DESIGN.md section 7 plans for it, in one
place for every benchmark: 40 usable logs, 16 of them tiled (static-ct-api), growing
3,200 entries/s together, skewed like the real list:

* 3 hot shards at 500/s each: a Let's Encrypt-like tiled log and two Google-like RFC 6962
  logs answering at most 32 entries per get-entries;
* 6 logs at 150/s each: a Cloudflare-like log (cap 256), a Sectigo-like log (cap 192) and
  four tiled logs (DigiCert-, Let's Encrypt-, Sectigo- and Geomys-like);
* the other 31 sharing the remaining 800/s (about 25.8/s each): the older and next shards
  of the same operators and the smaller ones (TrustAsia-, IPng-like), 11 of them tiled.

Every RFC 6962 log caps get-entries as its operator does: 32 (Google), 192 (Sectigo) or 256
(Cloudflare and the others); tiled logs have no cap (a data tile holds 256 entries). Every
request to any log waits a uniformly random 50-150 ms (`latency`), as a remote log's round
trip does. Other totals and log counts keep the shape: the weights 500 : 150 : 800/31 are
scaled to `total_rate`, the first 3 logs are hot, the next 6 medium, the rest slow, and the
tiled ones are picked hot first (the Let's Encrypt-like shard), then medium, then spread
evenly over the slow ones.

Operators are spelt as Google's log list spells them ("Google", "Let's Encrypt", ...), so
the pipeline's per-operator limits (include/log_limits.yaml) apply to the local logs as they
would to the real ones; log names are "Local <Operator> '<Shard>' log" (slug
local_google_argon2026h1_log): local test logs shaped like the real list's, not claims about
any real log's behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctlib.testing.ctlog import LocalCTLog, LogServer

HOT_RATE = 500.0
MEDIUM_RATE = 150.0
SLOW_SHARE = 800.0  # shared by the slow logs of the 40-log profile
FIREHOSE_RATE = 3200.0
FIREHOSE_LOGS = 40
FIREHOSE_TILED = 16
LATENCY = (0.05, 0.15)
_HOT, _MEDIUM = 3, 6
_SLOW_40 = FIREHOSE_LOGS - _HOT - _MEDIUM  # 31: the slow logs' weight is SLOW_SHARE / 31 each

CAPS = {"Google": 32, "Sectigo": 192, "Cloudflare": 256, "DigiCert": 256, "TrustAsia": 256}


@dataclass(frozen=True, slots=True)
class LogSpec:
    """One log of a profile: LogServer.add_log(name, tiled=..., rate=..., operator=...,
    replay=True, faults=Faults(cap=cap or Faults.cap, latency=latency))."""

    name: str  # the log list description (its slug names the log)
    operator: str
    tiled: bool
    rate: float  # entries per second
    cap: int | None  # most entries per get-entries; None for a tiled log
    latency: tuple[float, float] = LATENCY  # seconds, uniform, every request


# (operator, shard) in the order each tier uses them, one list per API.
_CLASSIC = {
    "hot": [("Google", "Argon2026h1"), ("Google", "Xenon2026h1")],
    "medium": [("Cloudflare", "Nimbus2026"), ("Sectigo", "Mammoth2026h1")],
    "slow": [
        ("Google", "Argon2026h2"), ("Google", "Xenon2026h2"), ("Google", "Argon2027h1"),
        ("Google", "Xenon2027h1"), ("Cloudflare", "Nimbus2027"), ("Sectigo", "Sabre2026h1"),
        ("Sectigo", "Sabre2026h2"), ("Sectigo", "Mammoth2026h2"), ("DigiCert", "Yeti2026"),
        ("DigiCert", "Nessie2026"), ("DigiCert", "Yeti2027"), ("DigiCert", "Nessie2027"),
        ("TrustAsia", "Log2026a"), ("TrustAsia", "Log2026b"), ("Google", "Argon2027h2"),
        ("Google", "Xenon2027h2"), ("Sectigo", "Sabre2027h1"), ("Sectigo", "Mammoth2027h1"),
        ("Cloudflare", "Nimbus2028"), ("TrustAsia", "Log2027a"),
    ],
}  # fmt: skip
_TILED = {
    "hot": [("Let's Encrypt", "Sycamore2026h1")],
    "medium": [
        ("DigiCert", "Wyvern2026h1"), ("Let's Encrypt", "Willow2026h1"),
        ("Sectigo", "Elephant2026h1"), ("Geomys", "Tuscolo2026h1"),
    ],
    "slow": [
        ("Let's Encrypt", "Sycamore2026h2"), ("Let's Encrypt", "Willow2026h2"),
        ("DigiCert", "Wyvern2026h2"), ("DigiCert", "Sphinx2026h1"), ("DigiCert", "Sphinx2026h2"),
        ("Sectigo", "Tiger2026h1"), ("Sectigo", "Tiger2026h2"), ("Sectigo", "Elephant2026h2"),
        ("Geomys", "Tuscolo2026h2"), ("IPng Networks", "Halloumi2026h1"),
        ("IPng Networks", "Gouda2026h1"), ("TrustAsia", "Luoshu2026"),
    ],
}  # fmt: skip
# Which slots of a tier become tiled first: hot slot 0 (the Let's Encrypt-like shard);
# medium slots 2..5, then 1, 0 (the Cloudflare- and Sectigo-like ones stay classic longest).
_TILED_FIRST = {"hot": (0, 1, 2), "medium": (2, 3, 4, 5, 1, 0)}


def _tiled_slots(tiers: list[str], tiled: int) -> set[int]:
    """Positions (in `tiers`) of the `tiled` logs: hot first, then medium, then slow ones
    spread evenly; what is still missing after that, from the remaining slots in order."""
    order: list[int] = []
    for tier in ("hot", "medium"):
        slots = [i for i, t in enumerate(tiers) if t == tier]
        order += [slots[k] for k in _TILED_FIRST[tier] if k < len(slots)][: 1 if tier == "hot" else 4]
    slow = [i for i, t in enumerate(tiers) if t == "slow"]
    want_slow = min(len(slow), max(0, tiled - len(order)))
    order += [slow[(2 * k + 1) * len(slow) // (2 * want_slow)] for k in range(want_slow)] if want_slow else []
    order += [i for i in range(len(tiers)) if i not in order]
    return set(order[:tiled])


def firehose_profile(
    total_rate: float = FIREHOSE_RATE, logs: int = FIREHOSE_LOGS, tiled: int = FIREHOSE_TILED
) -> list[LogSpec]:
    """The firehose's logs (see the module docstring), hot first; rates sum to `total_rate`.

    Raises ValueError unless total_rate > 0, logs >= 1 and 0 <= tiled <= logs."""
    if not total_rate > 0 or logs < 1 or not 0 <= tiled <= logs:
        raise ValueError(f"need total_rate > 0, logs >= 1, 0 <= tiled <= logs; got {total_rate}, {logs}, {tiled}")
    hot = min(_HOT, logs)
    medium = min(_MEDIUM, logs - hot)
    tiers = ["hot"] * hot + ["medium"] * medium + ["slow"] * (logs - hot - medium)
    weight = {"hot": HOT_RATE, "medium": MEDIUM_RATE, "slow": SLOW_SHARE / _SLOW_40}
    slow = len(tiers) - hot - medium
    scale = total_rate / (HOT_RATE * hot + MEDIUM_RATE * medium + SLOW_SHARE * slow / _SLOW_40)
    tiled_at = _tiled_slots(tiers, tiled)
    used = {True: {t: 0 for t in weight}, False: {t: 0 for t in weight}}
    specs = []
    for i, tier in enumerate(tiers):
        is_tiled = i in tiled_at
        operator, shard = _name(tier, is_tiled, used[is_tiled][tier])
        used[is_tiled][tier] += 1
        specs.append(
            LogSpec(
                name=f"Local {operator} '{shard}' log",
                operator=operator,
                tiled=is_tiled,
                rate=weight[tier] * scale,
                cap=None if is_tiled else CAPS.get(operator, 256),
            )
        )
    return specs


def _name(tier: str, tiled: bool, k: int) -> tuple[str, str]:
    """The k-th (operator, shard) of a tier and API; past the catalogue, numbered extras of
    the slow list's operators, in turn."""
    catalogue = (_TILED if tiled else _CLASSIC)[tier]
    if k < len(catalogue):
        return catalogue[k]
    base = (_TILED if tiled else _CLASSIC)["slow"]
    operator, shard = base[k % len(base)]
    return operator, f"{shard}-{tier}{k}"


def add_profile(
    server: LogServer, specs: Sequence[LogSpec], *, initial_size: int = 0, growing: bool = True,
    pool_size: int | None = None,
) -> list[LocalCTLog]:
    """Host one replay log per spec on `server` (in order; seeds 1, 2, ...), each holding
    `initial_size` published entries, answering with the spec's cap and latency, and growing
    at the spec's rate once the server runs (`growing=False`: rate 0, so the caller can start
    growth later by setting `log.rate = spec.rate`). `pool_size`: entries of the shared replay
    pool (default ctlib.testing.replay.DEFAULT_POOL_SIZE). Returns the logs, in the specs' order."""
    from ctlib.testing.ctlog import Faults
    from ctlib.testing.replay import DEFAULT_POOL_SIZE

    return [
        server.add_log(
            spec.name,
            initial_size=initial_size,
            rate=spec.rate if growing else 0.0,
            faults=Faults(cap=spec.cap or Faults.cap, latency=spec.latency),
            tiled=spec.tiled,
            replay=True,
            operator=spec.operator,
            pool_size=pool_size or DEFAULT_POOL_SIZE,
        )
        for spec in specs
    ]
