"""CT_LOG_LIST as a URL: the refresh DAG downloads and checks it; DAGs come from the snapshot."""

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ctlib.testing.ctlog import LogServer
from tests.integration.conftest import load_dag_module

pytestmark = pytest.mark.integration


@pytest.fixture
def static_site(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_log_list_is_snapshotted_and_bad_lists_refused(airflow_db, static_site, tmp_path, monkeypatch):
    site, base = static_site
    with LogServer() as ct_server:
        ct_server.add_log("Local Listed Log")
        ct_server.write_log_list(site / "list.json")
    snapshot = tmp_path / "snapshot.json"
    monkeypatch.setenv("CT_LOG_LIST", f"{base}/list.json")
    monkeypatch.setenv("CT_LOG_LIST_SNAPSHOT", str(snapshot))
    monkeypatch.setenv("CT_HTTP_RETRIES", "1")
    monkeypatch.setenv("CT_TASK_RETRIES", "0")

    # Before any download, the factory has no ingest DAG and does not touch the network.
    assert not [name for name in vars(load_dag_module("ct_ingest")) if name.startswith("ct_ingest__")]

    refresh = load_dag_module("ct_ops").ct_loglist_refresh
    assert refresh.test().state == "success"
    good = snapshot.read_bytes()
    assert json.loads(good)["operators"][0]["logs"][0]["description"] == "Local Listed Log"
    assert hasattr(load_dag_module("ct_ingest"), "ct_ingest__local_listed_log")

    broken = json.loads(good)
    broken["operators"][0]["logs"][0]["log_id"] = broken["operators"][0]["logs"][0]["log_id"][::-1]
    (site / "list.json").write_text(json.dumps(broken))
    assert refresh.test().state == "failed"
    assert snapshot.read_bytes() == good, "a list that fails its checks never replaces the snapshot"

    (site / "list.json").write_text('{"operators": [')
    assert refresh.test().state == "failed"
    assert snapshot.read_bytes() == good
