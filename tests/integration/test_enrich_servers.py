"""Enrichment credentials through real Airflow Connections (the AIRFLOW_CONN_* JSON form
read by the Task SDK), and the fake servers' CLI that `make demo` runs."""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest

from ctlib.downstream.enrich.cache import EnrichmentRecord, recently_enriched, write_enrichment
from ctlib.downstream.enrich.connections import PASSIVETOTAL, THREATSTREAM, credentials_for
from ctlib.downstream.enrich.passivetotal import PassiveTotalClient
from ctlib.downstream.enrich.risk import combined_risk
from ctlib.downstream.enrich.threatstream import ThreatStreamClient
from ctlib.testing.enrichment_servers import FakePassiveTotal, FakeThreatStream
from tests.paths import ENRICHMENT, PROJECT_ROOT

pytestmark = pytest.mark.integration

LOGIN = "analyst@example.org"
PT_SECRET = "pt-integration-S3cret"
TS_KEY = "ts-integration-K3y"
EVIL = "secure-paypa1-login.com"


def test_airflow_connections_feed_both_clients(airflow_db, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    data = {EVIL: {"whois": {"registered": "2026-11-20"}}}
    phish = {"itype": "phish_domain", "threat_type": "phish", "status": "active", "meta": {"severity": "high"}}
    intel = {EVIL: [{**phish, "confidence": 95}]}
    with (
        FakePassiveTotal({LOGIN: PT_SECRET}, data=data, samples=ENRICHMENT) as pt,
        FakeThreatStream({LOGIN: TS_KEY}, intel=intel, samples=ENRICHMENT) as ts,
    ):
        for env in (pt.airflow_conn_env(), ts.airflow_conn_env()):
            monkeypatch.setenv(*env.popitem())
        pt_creds, ts_creds = credentials_for(PASSIVETOTAL), credentials_for(THREATSTREAM)
        assert (pt_creds.host, pt_creds.login, pt_creds.secret) == (pt.url, LOGIN, PT_SECRET)
        assert (ts_creds.host, ts_creds.conn_id) == (ts.url, "threatstream_default")
        with PassiveTotalClient(pt_creds, backoff=0.01) as pt_client:
            pt_result = pt_client.lookup(EVIL)
        with ThreatStreamClient(ts_creds, backoff=0.01) as ts_client:
            ts_result = ts_client.lookup(EVIL)
    assert (pt_result.status, pt_result.registered) == ("ok", date(2026, 11, 20))
    assert (ts_result.status, ts_result.max_confidence, ts_result.max_severity) == ("ok", 95, "high")
    risk, reasons = combined_risk(0.95, 0.8, pt_result, ts_result, date(2026, 11, 26))
    assert risk > 90 and len(reasons) == 3
    now = datetime.now(UTC)
    record = EnrichmentRecord.build(
        EVIL, enriched_at=now, score=0.95, risk=risk, risk_reasons=reasons, pt=pt_result, ts=ts_result
    )
    write_enrichment(str(tmp_path), [record], "run-1")
    assert recently_enriched(str(tmp_path), [EVIL, "other.com"], 3600) == {EVIL}
    assert PT_SECRET not in caplog.text and TS_KEY not in caplog.text


def test_missing_airflow_connection_skips_with_one_line(airflow_db, monkeypatch, caplog):
    monkeypatch.delenv("AIRFLOW_CONN_PASSIVETOTAL_DEFAULT", raising=False)
    caplog.set_level(logging.INFO, logger="ctlib.downstream.enrich")
    assert credentials_for(PASSIVETOTAL) is None
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("ctlib.downstream.enrich")]
    assert ours == ["PassiveTotal: connection passivetotal_default not configured; skipping"]


def test_cli_serves_both_until_sigterm(airflow_db, monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "plugins")}
    cmd = [sys.executable, "-m", "ctlib.testing.enrichment_servers", "--pt-port", "0", "--ts-port", "0",
           "--samples", str(ENRICHMENT)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(4)]
        assert lines[0].startswith("PassiveTotal http://127.0.0.1:")
        assert lines[1].startswith("ThreatStream http://127.0.0.1:")
        for line in lines[2:]:
            (assignment,) = shlex.split(line)  # the shell-quoted NAME=VALUE form
            name, value = assignment.split("=", 1)
            assert name in ("AIRFLOW_CONN_PASSIVETOTAL_DEFAULT", "AIRFLOW_CONN_THREATSTREAM_DEFAULT")
            monkeypatch.setenv(name, value)
        pt_creds, ts_creds = credentials_for(PASSIVETOTAL), credentials_for(THREATSTREAM)
        assert pt_creds.host == lines[0].split()[1] and ts_creds.host == lines[1].split()[1]
        # The demo fakes answer any domain with synthesized data.
        assert PassiveTotalClient(pt_creds).lookup("acme-bank.com").status == "ok"
        assert ThreatStreamClient(ts_creds).lookup("acme-bank.com").status in ("ok", "not_found")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
