"""Airflow for integration tests: a throw-away AIRFLOW_HOME and metadata database, set up
before anything imports airflow, and helpers to load the project's DAGs and run them with
`dag.test()` in this process."""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.paths import PROJECT_ROOT

_HOME = Path(tempfile.mkdtemp(prefix="ct-airflow-test-home-"))
os.environ.update(
    AIRFLOW_HOME=str(_HOME),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_HOME}/airflow.db",
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(PROJECT_ROOT / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated metadata database for this test session."""
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return _HOME


def load_dag_module(name: str):
    """Import dags/<name>.py afresh, so it reads the environment as the test set it."""
    spec = importlib.util.spec_from_file_location(f"test_dag_{name}", PROJECT_ROOT / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



def run_dag(dag, capfd) -> tuple[str, str]:
    """One `dag.test()` run: (its state, what it logged and printed). Depending on how
    Airflow set up logging, a record reaches stdout (structlog) or only the stdlib handlers,
    so both are collected: a test finds the error a task failed with, or a retry's warning."""
    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    capfd.readouterr()
    root.addHandler(handler)
    try:
        state = dag.test().state
    finally:
        root.removeHandler(handler)
    out, err = capfd.readouterr()
    return str(state), out + err + records.getvalue()


# --------------------------------------------------------------------------- log-list sites


@pytest.fixture
def static_site(tmp_path):
    """A local static web site (a folder served on 127.0.0.1): `(folder, base URL)`."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site = tmp_path / "site"
    site.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def refresh_env(static_site, tmp_path, monkeypatch):
    """CT_LOG_LIST pointing at `log_list.json` of a static site, with a snapshot of its own:
    `(site folder, snapshot path)`."""
    site, base = static_site
    snapshot = tmp_path / "snapshot.json"
    monkeypatch.setenv("CT_LOG_LIST", f"{base}/log_list.json")
    monkeypatch.setenv("CT_LOG_LIST_SNAPSHOT", str(snapshot))
    monkeypatch.setenv("CT_HTTP_RETRIES", "1")
    monkeypatch.setenv("CT_TASK_RETRIES", "0")
    return site, snapshot


@pytest.fixture
def publish_signed_list(refresh_env, tmp_path, monkeypatch):
    """`publish(body)`: put `body` on the refresh site as log_list.json with a valid detached
    signature (log_list.sig) by a fresh RSA key, which CT_LOG_LIST_PUBKEY is set to."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    site, _ = refresh_env
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "list_key.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setenv("CT_LOG_LIST_PUBKEY", str(pem))

    def publish(body: bytes) -> None:
        (site / "log_list.json").write_bytes(body)
        (site / "log_list.sig").write_bytes(key.sign(body, padding.PKCS1v15(), hashes.SHA256()))

    return publish
