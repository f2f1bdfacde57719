"""Evaluate ctlib.downstream.score against the phishing_catcher baseline on the labelled hostnames.

Data (tests.paths.PHISHING): ``labelled_hostnames.tsv`` (host, label phishing|benign, source,
first_seen, shared_platform) plus ``idn_homographs.txt`` (every line a phishing name).

For each scorer and each target false-positive rate it reports the recall at the lowest
threshold whose FPR on the benign set does not exceed the target: a name alerts when its score
is strictly above the threshold, and the threshold is a benign score (or -inf), so ties at the
threshold never alert and the realised FPR is never above the target. Also ROC AUC (ties count
one half) and the recall on names with ``shared_platform=0`` (at the same thresholds).

Figures are given on all names and on two halves split by a hash of the registered domain:
``tune`` (the half the lists and weights were tuned on) and ``holdout`` (never looked at while
tuning).

Throughput: names per second of CPU time on one core, scoring the distinct labelled names with
a fresh Scorer (best of 3), and on a certificate-like stream of them; with ``--before REV`` the
same measurement of the scorer at git revision REV (its ``plugins`` and ``include`` exported to
a temporary folder, run in a subprocess), so a change is measured against the old code on the
same machine, names and method.

``python bench/score_eval.py [--out bench/results/score_eval.json] [--before HEAD~1]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import tldextract

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `tests` and `bench` importable
    sys.path.insert(0, str(ROOT))

from bench import phishing_catcher_baseline as baseline  # noqa: E402

FPRS: tuple[float, ...] = (0.0075, 0.025)
DEFAULT_OUT = ROOT / "bench" / "results" / "score_eval.json"
_EXTRACT = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True)


@dataclass(frozen=True)
class Example:
    """One labelled name; `half` is "tune" or "holdout" (stable: a hash of the registered domain)."""

    host: str
    phishing: bool
    shared_platform: bool
    half: str


def half_of(host: str) -> str:
    """The split a name belongs to. Whole registered domains go to one side, so near-duplicate
    names of one campaign domain never straddle the split."""
    parts = _EXTRACT(host.removeprefix("*."))
    key = parts.top_domain_under_public_suffix or host
    return "tune" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "holdout"


def load_examples(folder: Path) -> list[Example]:
    """The labelled hostnames plus the IDN homographs (as phishing, not on a shared platform
    unless the TSV says so: they are listed bare)."""
    out: list[Example] = []
    with (folder / "labelled_hostnames.tsv").open(newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            host = row["host"].strip().lower()
            out.append(Example(host, row["label"] == "phishing", row["shared_platform"] == "1", half_of(host)))
    for line in (folder / "idn_homographs.txt").read_text().splitlines():
        host = line.strip().lower()
        if host:
            out.append(Example(host, True, False, half_of(host)))
    return out


@dataclass(frozen=True)
class AtFpr:
    """Recall at one target FPR: `threshold` (alert when score > threshold), the realised FPR."""

    target_fpr: float
    threshold: float
    fpr: float
    recall: float
    recall_not_shared: float


def threshold_at(benign: Sequence[float], target_fpr: float) -> float:
    """Lowest threshold t (a benign score, or -inf) with #{benign > t} / n <= target_fpr."""
    ordered = sorted(benign)
    n = len(ordered)
    allowed = math.floor(target_fpr * n + 1e-9)  # benign names that may score above t
    if allowed >= n:
        return -math.inf
    # t must be >= the (n - allowed)-th smallest score; any tie with it stays at or below t.
    return ordered[n - allowed - 1]


def roc_auc(benign: Sequence[float], phishing: Sequence[float]) -> float:
    """P(phishing score > benign score) + 0.5 P(equal), by ranks (Mann-Whitney U)."""
    pooled = sorted([(s, 0) for s in benign] + [(s, 1) for s in phishing])
    rank_sum, i = 0.0, 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            j += 1
        mid_rank = (i + j + 1) / 2  # average 1-based rank of the tie group
        rank_sum += mid_rank * sum(label for _, label in pooled[i:j])
        i = j
    n_pos, n_neg = len(phishing), len(benign)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def evaluate(scores: Sequence[float], examples: Sequence[Example]) -> dict:
    """Figures for one scorer's `scores` (aligned with `examples`)."""
    benign = [s for s, e in zip(scores, examples, strict=True) if not e.phishing]
    phish = [(s, e) for s, e in zip(scores, examples, strict=True) if e.phishing]
    not_shared = [s for s, e in phish if not e.shared_platform]
    result: dict = {"n_benign": len(benign), "n_phishing": len(phish), "n_phishing_not_shared": len(not_shared)}
    at = []
    for target in FPRS:
        t = threshold_at(benign, target)
        at.append(
            AtFpr(
                target_fpr=target,
                threshold=t,
                fpr=sum(s > t for s in benign) / len(benign),
                recall=sum(s > t for s, _ in phish) / len(phish),
                recall_not_shared=sum(s > t for s in not_shared) / max(len(not_shared), 1),
            )
        )
    result["at_fpr"] = [asdict(a) for a in at]
    result["roc_auc"] = roc_auc(benign, [s for s, _ in phish])
    return result


def score_all(score: Callable[[str], float], examples: Sequence[Example]) -> list[float]:
    return [float(score(e.host)) for e in examples]


def scorers() -> dict[str, Callable[[str], float]]:
    """The two scorers compared: name -> function of a DNS name to its score."""
    from ctlib.downstream.score import Scorer

    ours = Scorer()
    return {"phishing_catcher": baseline.score_domain, "ctlib.downstream.score": lambda n: ours.score(n).score}


def throughput(names: Sequence[str], repeats: int = 3, *, detail: bool = False) -> dict[str, float]:
    """Names per second of ctlib.downstream.score on one core (per second of this process's CPU time,
    so other load on the machine does not count), best of `repeats` runs, each run with a
    fresh Scorer (cold caches): `unique` scores every distinct name once; `certificates` scores
    them as certificates log them (each name with its www. sibling, and every certificate
    twice, as precertificate and certificate), which is what the per-name and
    per-registrable-domain caches are for. With `detail`, also `unique_names` (how many) and
    `unique_cpu_seconds` (of the best run)."""
    try:
        from ctlib.downstream.score import Scorer
    except ImportError:  # a revision before the layered packages
        from ctlib.score import Scorer

    distinct = list(dict.fromkeys(names))
    stream = [n for name in distinct for n in (name, "www." + name.removeprefix("www."))] * 2
    best: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for label, batch in (("unique", distinct), ("certificates", stream)):
        for _ in range(repeats):
            scorer = Scorer()
            scorer.score("warm-up.example.com")  # loads the suffix list outside the timing
            start = time.process_time()
            for name in batch:
                scorer.score(name)
            elapsed = max(time.process_time() - start, 1e-9)
            if len(batch) / elapsed > best.get(label, 0.0):
                best[label], seconds[label] = len(batch) / elapsed, elapsed
    if detail:
        best.update(unique_names=len(distinct), unique_cpu_seconds=seconds["unique"])
    return best


def throughput_at(revision: str, names: Sequence[str], repeats: int = 3) -> dict:
    """`throughput(names, detail=True)` of the scorer as it was at git `revision`: its
    `plugins` and `include` folders are exported (`git archive`) to a temporary folder and
    measured in a subprocess by this module's own `throughput`, with that `plugins` first on
    the path (checked: the subprocess reports where it imported ctlib from)."""
    with tempfile.TemporaryDirectory(prefix="score-before-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", revision, "plugins", "include"],
                                 check=True, capture_output=True).stdout
        tar_path = Path(tmp) / "tree.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp, filter="data")
        names_file = Path(tmp) / "names.txt"
        names_file.write_text("\n".join(names) + "\n")
        code = (
            "import json, sys; sys.path.insert(1, sys.argv[1]); import ctlib;"
            "from bench.score_eval import throughput;"
            "names = open(sys.argv[2]).read().split();"
            "print(json.dumps({'ctlib': ctlib.__file__, **throughput(names, int(sys.argv[3]), detail=True)}))"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(tmp) / "plugins"), str(ROOT)])}
        out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(names_file), str(repeats)],
                             check=True, capture_output=True, text=True, env=env).stdout
        result = json.loads(out.strip().splitlines()[-1])
        if not Path(result.pop("ctlib")).resolve().is_relative_to(Path(tmp).resolve()):
            raise RuntimeError(f"the scorer of {revision} was not the one imported")
    return {"revision": revision, **result}


def run(folder: Path, before: str | None = None) -> dict:
    """Every figure, for every scorer, on all names and on each half; the scorer's throughput,
    and with `before` (a git revision) the throughput of the scorer at that revision."""
    examples = load_examples(folder)
    report: dict = {"fprs": list(FPRS), "scorers": {}}
    for name, fn in scorers().items():
        scores = score_all(fn, examples)
        per_split = {"all": evaluate(scores, examples)}
        for half in ("tune", "holdout"):
            idx = [i for i, e in enumerate(examples) if e.half == half]
            per_split[half] = evaluate([scores[i] for i in idx], [examples[i] for i in idx])
        report["scorers"][name] = per_split
    ours, base = report["scorers"]["ctlib.downstream.score"], report["scorers"]["phishing_catcher"]
    report["recall_ratio"] = {  # ctlib.downstream.score's recall over the baseline's, per split and FPR
        split: {
            f"{m['target_fpr']:.4f}": m["recall"] / b["recall"] if b["recall"] else None
            for m, b in zip(ours[split]["at_fpr"], base[split]["at_fpr"], strict=True)
        }
        for split in ("all", "tune", "holdout")
    }
    hosts = [e.host for e in examples]
    now = throughput(hosts, detail=True)
    report["names_per_second"] = {"unique": now["unique"], "certificates": now["certificates"]}
    report["throughput"] = {  # CPU time on one core, distinct labelled names, best of 3
        "distinct_names": now["unique_names"],
        "cpu_seconds": now["unique_cpu_seconds"],
        "names_per_second": now["unique"],
        "certificate_stream_names_per_second": now["certificates"],
        "before": None,
    }
    if before:
        then = throughput_at(before, hosts)
        report["throughput"]["before"] = {
            "revision": then["revision"],
            "distinct_names": then["unique_names"],
            "cpu_seconds": then["unique_cpu_seconds"],
            "names_per_second": then["unique"],
            "certificate_stream_names_per_second": then["certificates"],
        }
    return report


def _print(report: dict) -> None:
    for name, figures in report["scorers"].items():
        print(name)
        for split in ("all", "tune", "holdout"):
            f = figures[split]
            cells = "  ".join(
                f"R@{a['target_fpr']:.2%}={a['recall']:.3f} (not shared {a['recall_not_shared']:.3f}, "
                f"t>{a['threshold']:g}, fpr {a['fpr']:.3%})"
                for a in f["at_fpr"]
            )
            print(f"  {split:8s} n={f['n_phishing']}/{f['n_benign']}  AUC={f['roc_auc']:.3f}  {cells}")
    for split, ratios in report["recall_ratio"].items():
        cells = "  ".join(f"{float(fpr):.2%}: {r:.1f}x" if r else f"{float(fpr):.2%}: n/a" for fpr, r in ratios.items())
        print(f"recall ctlib.downstream.score / phishing_catcher, {split:8s} {cells}")
    t = report["throughput"]
    print(f"ctlib.downstream.score throughput (CPU time, one core, best of 3): {t['names_per_second']:,.0f} names/s "
          f"on {t['distinct_names']:,} distinct names ({t['cpu_seconds']:.3f} s), "
          f"{t['certificate_stream_names_per_second']:,.0f} names/s on a certificate-like stream")
    if t["before"]:
        b = t["before"]
        print(f"  before ({b['revision']}): {b['names_per_second']:,.0f} names/s ({b['cpu_seconds']:.3f} s), "
              f"{b['certificate_stream_names_per_second']:,.0f} names/s on the stream; "
              f"now {t['names_per_second'] / b['names_per_second']:.2f}x")


def _finite(obj):
    """JSON has no infinities: an unbounded threshold (-inf) is written as null."""
    if isinstance(obj, float) and math.isinf(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    from tests.paths import PHISHING

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default: %(default)s)")
    ap.add_argument("--data", type=Path, default=PHISHING, help="folder of the labelled data")
    ap.add_argument("--before", metavar="REV", help="also measure the scorer at this git revision (e.g. HEAD~1)")
    args = ap.parse_args(argv)
    report = run(args.data, before=args.before)
    _print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(_finite(report), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
