"""Registers the CT monitor with Airflow: its FastAPI app at `/ct` on the API server (the
`/ct/` page and `/ct/metrics` for Prometheus; ctlib.airflow.monitor) and a "CT monitor"
link in the UI's navigation. The app authenticates its own routes (Airflow does not
authenticate a plugin's app). Cheap to import, since every Airflow process (each task process
too) loads the plugins: the app is made on its first request (`LazyApp`)."""

from airflow.plugins_manager import AirflowPlugin

from ctlib.airflow.monitor.app import LazyApp


class CtMonitorPlugin(AirflowPlugin):
    name = "ct_monitor"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": "/ct", "name": "CT monitor"}]  # noqa: RUF012 (AirflowPlugin's own attribute)
    # With a url_route the UI shows the page in its own frame at /plugin/ct-monitor; without
    # one, Airflow 3.3 draws a top-level nav entry as a button that does nothing.
    external_views = [{"name": "CT monitor", "href": "ct/", "destination": "nav", "url_route": "ct-monitor"}]  # noqa: RUF012
