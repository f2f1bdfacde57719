"""Task bodies of the operations DAGs (dags/ct_maintenance.py: ct_compact and ct_health;
dags/ct_ops.py: ct_loglist_refresh): build settings and the state store from the
environment and Airflow, call the library, turn its outcomes into task states. Imported
only when a task runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ctlib.settings import Settings


def compaction_targets_task(only_log: str | None) -> list[dict[str, Any]]:
    """One target per log (and table) to compact; `only_log` (a slug) restricts to one log."""
    from ctlib.ingest.state import VariableStateStore
    from ctlib.lake.compaction import compaction_targets

    return compaction_targets(Settings.from_env(), VariableStateStore(), only_log)


def compact_task(target: dict[str, Any], days_back: int | None) -> dict[str, Any]:
    """Compact one target's closed days (any lake filesystem: a local disk or an object store);
    a failure fails the task, and the next hourly run starts over safely (ctlib.lake.compaction)."""
    from ctlib.lake.compaction import compact_target

    return compact_target(Settings.from_env(), target, days_back)


def health_task() -> dict[str, Any]:
    """Check every monitored log and write the health rows; fail (without retry: the next
    check is 5 minutes away) when a log lags or stalls beyond its thresholds."""
    from airflow.sdk.exceptions import AirflowFailException

    from ctlib.ops.health import run_health_check

    healths, path, failure = run_health_check(Settings.from_env())
    if failure:
        raise AirflowFailException(failure)
    return {"file": path, "statuses": {h.slug: h.status for h in healths}}


def loglist_refresh_task(outlet_events: Any) -> dict[str, Any]:
    """Download, verify and install a new log-list snapshot; wake the frozen logs it changed
    (their wake-up assets, through LOGLIST_WAKE_ALIAS)."""
    from ctlib.airflow.assets import LOGLIST_WAKE_ALIAS, wake_asset
    from ctlib.ct.loglist_sync import installed_list, refresh_snapshot, woken_logs

    settings = Settings.from_env()
    before = installed_list(settings)
    loglist = refresh_snapshot(settings)
    if loglist is None:
        return {"downloaded": False}
    woken = woken_logs(before, loglist, datetime.now(UTC))
    for slug in woken:
        outlet_events[LOGLIST_WAKE_ALIAS].add(wake_asset(slug), extra={"log": slug, "version": loglist.version})
    return {"downloaded": True, "version": loglist.version, "monitored": len(loglist.monitored()), "woken": woken}
