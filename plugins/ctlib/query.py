"""`python -m ctlib.query`: SQL over the lake (ctlib.lake.query).

An entry point operators' scripts use; the code lives there.
"""

from ctlib.lake.query import main

if __name__ == "__main__":
    raise SystemExit(main())
