"""`python -m ctlib.audit`: audit the lake and the Kafka topic against the watermarks (ctlib.ops.audit).

An entry point operators' scripts use; the code lives there.
"""

from ctlib.ops.audit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
