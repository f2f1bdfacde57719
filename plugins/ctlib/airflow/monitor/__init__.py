"""The CT monitor on the Airflow API server (plugins/ct_monitor.py mounts it at `/ct`):
`snapshot` (what is shown of each log, read cheaply), `metrics` (`/ct/metrics`, Prometheus),
`app` (`create_app`: the FastAPI app and its authentication), `page` (the `/ct/` page)."""
