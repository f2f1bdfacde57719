"""ctlib: the Certificate Transparency monitoring library behind ct-airflow's DAGs.

Plain Python, importable and testable without a scheduler. Packages are layers, each
importing only those below it (tests/unit/test_layers.py checks it; docs/architecture.md
has the map):

    settings, http, kafka   foundation: configuration, the one retrying HTTP core, Kafka
    ct/                     the CT protocol: log list, clients, tree heads, proofs, tiles
    lake/                   the Parquet lake: layout, atomic files, compaction, SQL
    decode/                 log entries -> lake rows
    ingest/                 one ingest run: plan, fetch, commit; state; schedules
    ops/, downstream/       audit and health; phishing scores and threat-intel enrichment
    airflow/                task bodies, assets, timetables, preload: all DAG files import
    score, query, audit     `python -m ctlib.<tool>` entry points

localsvc/ and testing/ are local stand-ins (services, a CT log, test data): nothing that
runs inside Airflow imports them.
"""
