"""The log-list refresh DAG: downloads the list and its detached signature, verifies both,
replaces the snapshot atomically; the DAG factory follows the snapshot."""

import json

import pytest

from ctlib.testing.ctlog import LogServer
from tests.paths import CTDATA
from tests.support.airflow import load_dag_module

pytestmark = pytest.mark.integration
REAL = CTDATA / "loglist"


def test_real_signed_google_list_verifies_and_a_tampered_copy_is_refused(airflow_db, refresh_env):
    site, snapshot = refresh_env
    (site / "log_list.json").write_bytes((REAL / "google_log_list_v3_v80.14_2026-01-02.json").read_bytes())
    (site / "log_list.sig").write_bytes((REAL / "google_log_list_v3_v80.14_2026-01-02.sig").read_bytes())
    refresh = load_dag_module("ct_ops").ct_loglist_refresh
    assert refresh.test().state == "success"
    good = snapshot.read_bytes()
    assert good == (site / "log_list.json").read_bytes()
    assert len([n for n in vars(load_dag_module("ct_ingest")) if n.startswith("ct_ingest__")]) == 71

    tampered = good.replace(b'"usable"', b'"usablE"', 1)
    (site / "log_list.json").write_bytes(tampered)
    assert refresh.test().state == "failed"
    assert snapshot.read_bytes() == good, "a tampered list never replaces the snapshot"


def test_url_log_list_is_snapshotted_and_bad_lists_refused(airflow_db, refresh_env, publish_signed_list, tmp_path):
    site, snapshot = refresh_env
    publish = publish_signed_list

    with LogServer() as ct_server:
        ct_server.add_log("Local Listed Log")
        ct_server.write_log_list(tmp_path / "list.json")
    good = (tmp_path / "list.json").read_bytes()
    publish(good)

    # Before any download the factory has no ingest DAG and does not touch the network.
    assert not [name for name in vars(load_dag_module("ct_ingest")) if name.startswith("ct_ingest__")]
    refresh = load_dag_module("ct_ops").ct_loglist_refresh
    assert refresh.test().state == "success"
    assert snapshot.read_bytes() == good
    assert hasattr(load_dag_module("ct_ingest"), "ct_ingest__local_listed_log")

    broken = json.loads(good)
    broken["operators"][0]["logs"][0]["log_id"] = broken["operators"][0]["logs"][0]["log_id"][::-1]
    publish(json.dumps(broken).encode())  # properly signed, but its log_id does not match its key
    assert refresh.test().state == "failed"
    assert snapshot.read_bytes() == good

    publish(b'{"operators": [')
    assert refresh.test().state == "failed"
    assert snapshot.read_bytes() == good

    (site / "log_list.json").write_bytes(good.replace(b"Local Listed Log", b"Local Renamed Log"))
    assert refresh.test().state == "failed", "a signature of another body does not verify"
    assert snapshot.read_bytes() == good
