"""Every asset and asset alias of ct-airflow, defined once. DAG files and task bodies import
them from here, so a URI or a name cannot drift between the producer and its consumers.

- `ct://certs` (CERTS): new certs/ and errors/ files of one committed ingest run. The
  producing ingest DAG announces it through its log's alias (`certs_alias`), whichever of its
  tasks committed: an alias emits only when a task adds an event, while an outlet Asset would
  emit on every success, idle runs included. `ct_score` and `ct_watch` run on it.
- `ct://alerts` (ALERTS): alert files of one scoring run; `ct_enrich` runs on it.
- `ct://wake/<slug>` (`wake_asset`): starts a run of a frozen (hourly) log at once; emitted
  through `wake_alias` by its own ingest runs and through LOGLIST_WAKE_ALIAS by the log-list
  refresh.
"""

from __future__ import annotations

from airflow.sdk import Asset, AssetAlias

from ctlib.ingest.schedule import wake_uri

CERTS = Asset(uri="ct://certs", name="ct_certs")
ALERTS = Asset(uri="ct://alerts", name="ct_alerts")
LOGLIST_WAKE_ALIAS = AssetAlias("ct_loglist_wake")


def certs_alias(slug: str) -> AssetAlias:
    """The alias a log's ingest tasks announce ct://certs through. One alias per log: Airflow
    3.3 links an alias to its asset on the alias's first event, and two logs' first events at
    the same moment on one shared alias made one insert fail with a unique violation."""
    return AssetAlias(f"ct_certs__{slug}")


def wake_asset(slug: str) -> Asset:
    return Asset(wake_uri(slug))


def wake_alias(slug: str) -> AssetAlias:
    """A frozen log's ingest tasks announce its wake-up asset through this alias: only a run
    that leaves a backlog behind emits (one alias per log, as for certs_alias)."""
    return AssetAlias(f"ct_wake__{slug}")
