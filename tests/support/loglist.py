"""The real signed CT log list of the shared CT data (`SIGNED_LIST`) and a minimal valid list
made from its first log (`one_log_list()`), for tests to break."""

from __future__ import annotations

import copy
import json

from tests.paths import CTDATA

SIGNED_LIST = CTDATA / "loglist" / "google_log_list_v3_v80.14_2026-01-02.json"


def one_log_list() -> dict:
    """A log list (as JSON data) with one operator and one log: the signed list's first."""
    data = json.loads(SIGNED_LIST.read_text())
    return {"version": "1", "operators": [{"name": "Op", "logs": [copy.deepcopy(data["operators"][0]["logs"][0])], "tiled_logs": []}]}
