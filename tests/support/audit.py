"""The lake audit (`python -m ctlib.audit`) run in the test's process, and the assertion
that it finds nothing lost and nothing doubled."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path


def audit(*args: str) -> tuple[int, str]:
    """`python -m ctlib.audit ARGS` in this process (states from the test's Airflow Variables)."""
    from ctlib.ops.audit import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(args))
    return code, out.getvalue()


def assert_audit_clean(lake: Path | str, slug: str, *extra: str) -> str:
    """The audit of `slug` in the lake at `lake` (a folder, or a location such as
    s3://bucket/prefix with the AWS variables set) exits 0: nothing lost, nothing doubled.
    Returns its table."""
    code, report = audit("--log", slug, "--lake", str(lake), *extra)
    print(report)
    assert code == 0, f"audit of {slug} found problems:\n{report}"
    return report
