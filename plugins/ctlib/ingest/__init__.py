"""One ingest run of one log: plan the ranges (plan), fetch and store them, verify and
commit (run), the watermark and its store (state), and when each log's DAG runs (schedule).
No Airflow here beyond the StateStore that reads Variables."""
