"""ctlib.airflow.preload: which Airflow processes preload the task code, and that a preload never
stops Airflow. The effect itself (task processes forked with the modules imported) is
measured by the soak bench (idle CPU per run)."""

from __future__ import annotations

import subprocess
import sys

from ctlib.airflow.preload import PARSE_MODULES, TASK_MODULES, modules_for, preload, preload_for


def test_task_forking_processes_preload_the_task_code():
    assert modules_for(["airflow", "scheduler"]) == TASK_MODULES
    assert modules_for(["/venv/bin/airflow", "celery", "worker", "--concurrency", "4"]) == TASK_MODULES
    assert modules_for(["airflow", "dag-processor"]) == PARSE_MODULES
    assert "ctlib.airflow.ingest_tasks" in TASK_MODULES and "ctlib.airflow.ingest_tasks" not in PARSE_MODULES


def test_other_processes_stay_lean():
    for argv in (["airflow", "api-server"], ["airflow", "triggerer"], ["airflow", "celery", "flower"],
                 ["airflow", "tasks", "test", "x"], ["airflow"], ["python", "-m", "pytest"]):
        assert modules_for(argv) == (), argv


def test_ct_preload_false_turns_it_off():
    assert preload_for(["airflow", "scheduler"], {"CT_PRELOAD": "false"}) == []


def test_a_module_that_cannot_be_imported_is_skipped_with_a_warning(caplog):
    assert preload(["json", "ctlib.no_such_module_here"]) == ["json"]
    assert "ctlib.no_such_module_here" in caplog.text


def test_airflow_local_settings_preloads_only_in_the_scheduler(tmp_path):
    """The real module Airflow imports, in fresh interpreters: the scheduler's argv gets
    pyarrow and the decoder imported, another command's does not."""
    code = ("import sys; sys.argv = {argv!r}; import airflow_local_settings; "
            "print('ctlib.airflow.ingest_tasks' in sys.modules, 'pyarrow' in sys.modules)")
    from ctlib.settings import PROJECT_ROOT

    def run(argv: list[str]) -> str:
        out = subprocess.run([sys.executable, "-c", code.format(argv=argv)], cwd=tmp_path, check=True,
                             capture_output=True, text=True, env={"PYTHONPATH": str(PROJECT_ROOT / "plugins"),
                                                                  "PATH": "/usr/bin:/bin"})
        return out.stdout.strip().splitlines()[-1]  # the last line: Airflow may log before it

    assert run(["airflow", "scheduler"]) == "True True"
    assert run(["airflow", "api-server"]) == "False False"
