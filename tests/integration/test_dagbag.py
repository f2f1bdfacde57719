"""The DAG folder as the dag-processor sees it, with the bundled log list."""

import subprocess
import sys

import pytest

from ctlib.ct.loglist import load_log_list
from ctlib.settings import DEFAULT_LOG_LIST
from tests.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_one_dag_per_selected_log_and_no_import_errors(airflow_db, monkeypatch):
    for name in ("CT_LOG_LIST", "CT_LAKE"):
        monkeypatch.delenv(name, raising=False)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    expected = {f"ct_ingest__{log.slug}" for log in load_log_list(DEFAULT_LOG_LIST).monitored()}
    assert len(expected) == 45 + 26, "every usable, qualified and read-only log, classic and tiled"
    ingest = {dag_id for dag_id in bag.dags if dag_id.startswith("ct_ingest__")}
    assert ingest == expected
    dag = bag.dags["ct_ingest__google_argon2026h1_log"]
    assert dag.max_active_runs == 1 and not dag.catchup and dag.doc_md and "ct" in dag.tags
    assert sorted(dag.task_ids) == ["commit", "fetch", "plan"]
    # plan's asset alias is the log's own: on one shared alias, logs' first events at the same
    # moment raced to link it to ct://certs and failed runs (unique violation in Airflow 3.3).
    # (A frozen log's plan also has its own wake-up alias: tests/integration/test_schedules.py.)
    aliases = [[o.name for o in bag.dags[d].get_task("plan").outlets if o.name.startswith("ct_certs")]
               for d in sorted(ingest)]
    assert all(len(names) == 1 for names in aliases)
    assert len({names[0] for names in aliases}) == len(ingest)


def test_dag_file_imports_nothing_heavy():
    # Compared with what `import airflow.sdk` itself loads (it brings cryptography along).
    code = (
        "import sys, airflow.sdk; before = set(sys.modules); import runpy; runpy.run_path(sys.argv[1]); "
        "heavy = [m for m in ('pyarrow', 'cryptography', 'requests', 'duckdb', 'confluent_kafka', 'pandas', 'ctlib.ingest.run') "
        "if m in sys.modules and m not in before]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(PROJECT_ROOT / "dags" / "ct_ingest.py")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""]), f"heavy modules imported at parse time: {out.stdout}"
