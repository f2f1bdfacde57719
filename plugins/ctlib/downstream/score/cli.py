"""Score DNS names from the shell: `python -m ctlib.score [options] [NAME ...]`.

Names come from the arguments or, when there are none, from standard input, one per line
(blank lines skipped). One tab-separated line per name goes to standard output:

    name <TAB> score (one decimal) <TAB> alert (yes|no) <TAB> rules

`rules` is `rule=weight` for every rule that fired, strongest first, comma-separated, e.g.
`brand_in_subdomain:paypal=60,fake_tld=35,keyword:login=25`; `-` when none did.
Exit status 0, or 2 on bad options or unreadable lists.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from ctlib.downstream.score.lists import DEFAULT_FOLDER, ScoringListError, load_lists
from ctlib.downstream.score.rules import Score, Scorer


def format_line(result: Score, threshold: float) -> str:
    """The output line of one result; `alert` is judged against `threshold`."""
    rules = ",".join(f"{rule}={weight:g}" for rule, weight in result.rules) or "-"
    alert = "yes" if result.score >= threshold else "no"
    return f"{result.name}\t{result.score:.1f}\t{alert}\t{rules}"


def _names(args: Sequence[str], stdin: Iterable[str]) -> Iterable[str]:
    if args:
        yield from args
        return
    for line in stdin:
        name = line.strip()
        if name:
            yield name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctlib.score", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="DNS names (default: one per line on stdin)")
    parser.add_argument("--threshold", type=float, help="alert at or above this score (default: the lists')")
    parser.add_argument("--issuer", help="certificate issuer (organisation), e.g. \"Let's Encrypt\"")
    parser.add_argument(
        "--lists", type=Path, default=DEFAULT_FOLDER, help="folder of the list files (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    try:
        scorer = Scorer(load_lists(args.lists))
    except ScoringListError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    threshold = scorer.threshold if args.threshold is None else args.threshold
    out = sys.stdout
    for name in _names(args.names, sys.stdin):
        out.write(format_line(scorer.score(name, issuer=args.issuer), threshold) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
