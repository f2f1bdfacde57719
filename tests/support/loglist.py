"""The real signed CT log list of the shared CT data (`SIGNED_LIST`), a minimal valid list
made from its first log (`one_log_list()`), and a list of two local logs (`two_local_logs()`)
with `edited` copies, for tests to break."""

from __future__ import annotations

import copy
import json

from tests.paths import CTDATA

SIGNED_LIST = CTDATA / "loglist" / "google_log_list_v3_v80.14_2026-01-02.json"


def one_log_list() -> dict:
    """A log list (as JSON data) with one operator and one log: the signed list's first."""
    data = json.loads(SIGNED_LIST.read_text())
    return {"version": "1", "operators": [{"name": "Op", "logs": [copy.deepcopy(data["operators"][0]["logs"][0])], "tiled_logs": []}]}


def two_local_logs() -> dict:
    """A valid list of two local logs, "Hostile Good Log" and "Hostile Other Log" (their keys
    are real P-256 keys); nothing answers at their URLs once it returns."""
    from ctlib.testing.ctlog import LogServer

    server = LogServer()
    try:
        server.add_log("Hostile Good Log")
        server.add_log("Hostile Other Log")
        return server.log_list()
    finally:
        server.stop()


def edited(template: dict, first: dict | None = None, operator: str | None = None, extra: dict | None = None) -> dict:
    """A copy of `template` whose first log takes the fields of `first`, whose operator is
    named `operator`, and, with `extra`, a third log: the second one's copy with those fields."""
    data = copy.deepcopy(template)
    logs = data["operators"][0]["logs"]
    if first:
        logs[0].update(first)
    if extra is not None:
        logs.append({**copy.deepcopy(logs[1]), **extra})
    if operator is not None:
        data["operators"][0]["name"] = operator
    return data
