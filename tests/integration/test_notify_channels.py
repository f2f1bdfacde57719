"""ctlib.downstream.notify inside a running Airflow task (`dag.test()`): connections are found
through the Task SDK there too, a message that fails fails the task, and Airflow's retry
(try_number 2) sends only what the first attempt did not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ctlib.downstream.notify import watch_notices
from ctlib.lake.query import connect
from ctlib.testing.receivers import SmtpReceiver, WebhookReceiver
from tests.support.airflow import run_dag
from tests.unit.test_notify import TBS, watch_row

pytestmark = pytest.mark.integration

ROWS = [watch_row(TBS[n], ".example.com", [f"host{n}.example.com"], index=n) for n in range(3)]


# The DAG under test, as a file: dag.test() runs only DAGs it finds in a bundle (the dags folder).
DAG_FILE = """
from datetime import timedelta

from airflow.sdk import dag, get_current_context, task


@dag(dag_id="notify_channels_test", schedule=None, catchup=False)
def notify_channels_test():
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def send() -> dict:
        from ctlib.downstream.notify import configured_channels, deliver, watch_notices
        from ctlib.lake.files import Lake
        from ctlib.settings import Settings
        from tests.integration.test_notify_channels import ROWS

        settings = Settings.from_env()
        ti = get_current_context()["ti"]
        sent = {}
        for channel in configured_channels(settings):
            report = deliver(Lake.open(settings.lake), channel, watch_notices(ROWS), settings=settings,
                             dag_id=ti.dag_id, run_id=ti.run_id, try_number=ti.try_number, batched=False)
            sent[channel] = report.sent
        return sent

    send()


NOTIFY_DAG = notify_channels_test()
"""


def notify_dag(folder: Path, monkeypatch: pytest.MonkeyPatch):
    folder.mkdir()
    (folder / "notify_channels_test.py").write_text(DAG_FILE)
    # The dags-folder bundle reads airflow.settings.DAGS_FOLDER, fixed when airflow was imported.
    import airflow.settings

    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", str(folder))
    monkeypatch.setattr(airflow.settings, "DAGS_FOLDER", str(folder))
    spec = importlib.util.spec_from_file_location("notify_channels_test_dag", folder / "notify_channels_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NOTIFY_DAG


def test_a_task_notifies_and_its_retry_sends_only_the_rest(airflow_db, tmp_path, monkeypatch, capfd):
    lake = tmp_path / "lake"
    monkeypatch.setenv("CT_LAKE", str(lake))
    monkeypatch.setenv("CT_NOTIFY_EMAIL_TO", "soc@example.org")
    with WebhookReceiver() as webhook, SmtpReceiver() as smtp:
        for env in (webhook.airflow_conn_env("ct_webhook"), smtp.airflow_conn_env("ct_smtp")):
            for name, value in env.items():
                monkeypatch.setenv(name, value)
        webhook.fail_next(1, status=503, after=1)  # the first attempt's second POST
        state, output = run_dag(notify_dag(tmp_path / "dags", monkeypatch), capfd)
        assert state == "success", output[-3000:]
        assert "webhook: 2 of 3 watch notices not delivered through connection ct_webhook" in output
        assert "slack: connection ct_slack not configured" in output
        assert [p.status for p in webhook.received] == [200, 503, 200, 200]
        assert [p.body["key"] for p in webhook.accepted] == TBS[:3]
        # The first attempt failed before e-mail; the retry sent all three there.
        assert sorted(m.subject for m in smtp.accepted) == sorted(n.title for n in watch_notices(ROWS))
    rows = connect(str(lake)).execute(
        "select channel, key, run_id, count(*) from notifications group by all order by 1, 2").fetchall()
    assert [(channel, key) for channel, key, _, _ in rows] == [("email", k) for k in TBS[:3]] + [("webhook", k) for k in TBS[:3]]
    assert all(count == 1 for *_, count in rows) and len({run_id for _, _, run_id, _ in rows}) == 1
    files = sorted(p.name for p in (lake / "notifications").rglob("*.parquet"))
    assert [name.rsplit("-", 1)[1] for name in files] == ["2.parquet", "1.parquet", "2.parquet"]
