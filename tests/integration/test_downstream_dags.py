"""Phishing names planted among ordinary ones in a local CT log: ingested, scored, alerted on
Kafka, enriched through local PassiveTotal and ThreatStream servers; ordinary names do not alert.
Each DAG works from its own watermark: woken, not told which files."""

from __future__ import annotations

import duckdb
import pytest

from ctlib.localsvc.broker import consume_all
from ctlib.testing.ctlog import LogServer
from ctlib.testing.enrichment_servers import FakePassiveTotal, FakeThreatStream
from tests.support.airflow import configure, load_dag_module, state_of

pytestmark = pytest.mark.integration

PLANTED = [
    ["paypal.com.account-verify-login.xyz"],
    ["secure-login.paypa1-support.com", "www.secure-login.paypa1-support.com"],
    ["appleid.apple.com.signin-verify.top"],
    ["xn--pypal-4ve.com"],
]


@pytest.fixture
def create_pool(airflow_db):
    from airflow.models.pool import Pool

    Pool.create_or_update_pool("ct_enrichment", 2, "threat-intel API calls", False)


def test_planted_phishing_names_are_scored_alerted_and_enriched(create_pool, kafka_broker, tmp_path, monkeypatch):
    suffix = tmp_path.name[-6:]
    topics = {"CT_KAFKA_TOPIC": f"certs-{suffix}", "CT_KAFKA_ALERTS_TOPIC": f"alerts-{suffix}",
              "CT_KAFKA_ENRICHED_TOPIC": f"enriched-{suffix}"}
    with LogServer() as ct_server, \
            FakePassiveTotal({"analyst@example.com": "pt-secret"}, synthesize=True) as pt, \
            FakeThreatStream({"analyst@example.com": "ts-key"}, synthesize=True) as ts:
        log = ct_server.add_log("Local Phishing Log", initial_size=40)
        for names in PLANTED:
            log.submit(names)
        log.grow(40)
        log.publish()
        lake = configure(monkeypatch, tmp_path, ct_server, kafka_broker, **topics)
        for env in (pt.airflow_conn_env(), ts.airflow_conn_env()):
            for name, value in env.items():
                monkeypatch.setenv(name, value)

        ingest = load_dag_module("ct_ingest").ct_ingest__local_phishing_log
        assert ingest.test().state == "success"
        committed = state_of(log.slug)["next_index"]
        assert committed == log.sth.tree_size

        score = load_dag_module("ct_score").ct_score
        assert score.test().state == "success"
        assert progress_of("score", log.slug)["next_index"] == committed
        alerts = duckdb.sql(f"select distinct name, registered_domain from read_parquet('{lake}/alerts/**/*.parquet')").fetchall()
        alerted = {name for name, _ in alerts}
        planted = {name for names in PLANTED for name in names}
        assert planted <= alerted, f"missed: {planted - alerted}"
        all_names = duckdb.sql(f"select count(distinct name) from read_parquet('{lake}/scores/**/*.parquet')").fetchall()[0][0]
        assert len(alerted - planted) <= 0.02 * all_names, f"ordinary names alerted: {alerted - planted}"

        enrich = load_dag_module("ct_enrich").ct_enrich
        assert enrich.test().state == "success"
        enriched_to = progress_of("enrich", log.slug)
        assert (enriched_to["next_index"], enriched_to["pending"]) == (committed, None)
        rows = duckdb.sql(
            f"select domain, risk, pt_status, ts_status from read_parquet('{lake}/enrichment/**/*.parquet')"
        ).fetchall()
        enriched = {domain for domain, *_ in rows}
        assert {d for _, d in alerts} <= enriched
        assert all(pt_status == "ok" and ts_status in ("ok", "not_found") for _, _, pt_status, ts_status in rows)
        assert pt.requests > 0 and ts.requests > 0

        # A second run has nothing new; a manual run over the same alerts, within the TTL,
        # asks nobody again.
        before = (pt.requests, ts.requests)
        assert enrich.test().state == "success"
        manual = {"log": log.slug, "start_index": 0, "end_index": committed}
        assert enrich.test(run_conf=manual).state == "success"
        assert (pt.requests, ts.requests) == before
        assert progress_of("enrich", log.slug)["next_index"] == committed

    alert_keys = {r.key.decode().rsplit(":", 1)[1] for r in consume_all(kafka_broker.bootstrap_servers, topics["CT_KAFKA_ALERTS_TOPIC"])}
    assert planted <= alert_keys
    enriched_keys = {r.key.decode() for r in consume_all(kafka_broker.bootstrap_servers, topics["CT_KAFKA_ENRICHED_TOPIC"])}
    assert enriched_keys == enriched


def progress_of(consumer: str, slug: str) -> dict:
    """A downstream DAG's watermark of log `slug` (its Airflow Variable)."""
    import json

    from airflow.models import Variable

    return json.loads(Variable.get(f"ct_downstream__{consumer}__{slug}"))
