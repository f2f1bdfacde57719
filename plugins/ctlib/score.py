"""`python -m ctlib.score`: score DNS names (ctlib.downstream.score).

An entry point operators' scripts use; the code lives there.
"""

from ctlib.downstream.score.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
