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
    assert sorted(dag.task_ids) == ["commit", "fetch", "ingest"]
    # Both tasks that commit announce through the log's own certs alias, and nothing else does
    # (an outlet Asset would emit on idle runs too). One alias per log: on one shared alias,
    # logs' first events at the same moment raced to link it to ct://certs and failed runs
    # (unique violation in Airflow 3.3). (A frozen log's tasks also have its wake-up alias:
    # tests/integration/test_schedules.py.)
    aliases = []
    for dag_id in sorted(ingest):
        outlets = {t: [o.name for o in bag.dags[dag_id].get_task(t).outlets] for t in ("ingest", "fetch", "commit")}
        certs = [[name for name in names if name.startswith("ct_certs")] for names in outlets.values()]
        assert certs[0] == certs[2] == [f"ct_certs__{dag_id.removeprefix('ct_ingest__')}"] and certs[1] == []
        assert "ct_certs" not in outlets["commit"], "no outlet Asset: an alias announces"
        aliases.append(certs[0][0])
    assert len(set(aliases)) == len(ingest)


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


def test_dag_files_import_only_the_airflow_layer():
    """DAG files are wiring: of ctlib they import only ctlib.airflow (at top level and inside
    their task functions), the layer that holds every task body and asset."""
    import ast

    for path in sorted((PROJECT_ROOT / "dags").glob("*.py")):
        tree = ast.parse(path.read_text())
        modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        ours = [m for m in modules if m == "ctlib" or m.startswith("ctlib.")]
        assert ours, f"{path.name} imports nothing of ctlib?"
        assert all(m.startswith("ctlib.airflow.") for m in ours), f"{path.name}: {ours}"
