"""The Airflow-facing layer, and the only one DAG files import: what they read at parse
time (parse), every asset (assets), every task body (ingest_tasks, downstream_tasks,
maintenance_tasks), the offset timetable (timetables) and the task-code preload (preload).
A task body builds settings and stores from the environment, calls the layers below and
turns their outcomes into Airflow's (skips, failures, XComs, asset events)."""
