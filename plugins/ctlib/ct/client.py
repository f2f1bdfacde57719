"""`open_client`: the LogClient (ctlib.ct.types) of a log, RFC 6962 or static-ct-api as the
log list entry says, so ingest never asks which API a log speaks.
"""

from __future__ import annotations

from ctlib.ct.limits import limits_for
from ctlib.ct.loglist import CTLog
from ctlib.ct.rfc6962 import RFC6962Client
from ctlib.ct.static import StaticClient
from ctlib.ct.types import LogClient
from ctlib.http import HttpPolicy, HttpSession
from ctlib.settings import Settings


def open_client(log: CTLog, settings: Settings, *, share: int = 1) -> LogClient:
    """A client of `log` whose session sends at most 1/`share` of the log's request rate
    (ctlib.ct.limits): `share` is how many clients of the log may run at once (a mapped fetch
    task: CT_FETCH_PARALLELISM). Raises ctlib.ct.limits.LimitsError if the limits file is bad."""
    limits = limits_for(log, settings)
    session = HttpSession(log.slug, HttpPolicy.from_settings(settings), requests_per_second=limits.rate(share))
    if log.kind == "rfc6962":
        return RFC6962Client(log, session, max_batch=limits.entries_per_request)
    return StaticClient(log, session, settings)
