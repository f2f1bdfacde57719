"""`python -m ctlib.watch`: the issuances in the lake that a watchlist's names cover
(ctlib.downstream.watch_query).

An entry point operators' scripts use; the code lives there.
"""

from ctlib.downstream.watch_query import main

if __name__ == "__main__":
    raise SystemExit(main())
