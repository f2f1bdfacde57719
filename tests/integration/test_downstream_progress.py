"""The downstream DAGs' own watermarks over the lake (ctlib.downstream.progress), with real
`dag.test()` runs against a local CT log, on a local lake and on a local S3 server:

(a) ct_score and ct_watch paused for a "week" while ingest commits 8 days of entries and
    compaction merges the closed days and deletes the per-run files: they catch up, every
    entry scored and watched exactly once, and the audit's downstream check is clean;
(b) a score run that fails after writing its files: the next run redoes the same range under
    the same names, nothing doubled;
(c) a finished run cleared and run again adds nothing;
(d) a manual run over backfilled history below first_index, repeated and overlapping, never
    touches the watermark nor doubles a row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ctlib.lake import layout
from ctlib.lake.compaction import compact_log
from ctlib.lake.files import Lake
from ctlib.lake.manifest import live_files
from ctlib.lake.reading import dataset
from ctlib.testing.ctlog import LogServer
from tests.support.airflow import configure, ingest_dag, load_dag_module, run_dag, state_of
from tests.support.audit import audit

pytestmark = pytest.mark.integration

PHISHING = [["paypal.com.account-verify-login.xyz"], ["appleid.apple.com.signin-verify.top"]]


def _setup(monkeypatch, tmp_path, server: LogServer, lake_location: str, watchlist: str = ".de\n", **env) -> Lake:
    """The environment of a test run (Kafka off, watchlist `.de`: about one certificate in
    fifteen, on every day), the lake at `lake_location`."""
    path = tmp_path / "watchlist.txt"
    path.write_text(watchlist)
    configure(monkeypatch, tmp_path, server, None, CT_KAFKA_CONN_ID="", CT_LAKE=lake_location,
              CT_WATCHLIST=str(path), CT_TASK_RETRIES="0", **env)
    return Lake.open(lake_location)


def _name(base: str, lake_location: str) -> str:
    """A log name of its own for each lake a test runs on (the Variables outlive a test)."""
    return f"{base} {'S3' if lake_location.startswith('s3://') else 'Local'}"


def _rows(lake: Lake, table: str, columns: list[str], slug: str | None = None) -> list[dict]:
    """`columns` of every row of `table`'s live files (of log `slug`)."""
    return dataset(lake, table, live_files(lake, table, slug=slug)).to_table(columns=columns).to_pylist()


def progress_of(consumer: str, slug: str) -> dict | None:
    """A downstream DAG's watermark of `slug` (its Airflow Variable), None when it has none."""
    from airflow.models import Variable

    raw = Variable.get(f"ct_downstream__{consumer}__{slug}", default_var=None)
    return None if raw is None else json.loads(raw)


def _assert_scored_once(lake: Lake, slug: str, first: int, end: int) -> list[dict]:
    """Every certificate of [first, end) has one scores row per name, none twice; alerts are
    scores rows. Returns the scores rows."""
    scores = _rows(lake, layout.SCORES, ["index", "name"], slug)
    pairs = [(r["index"], r["name"]) for r in scores]
    assert len(pairs) == len(set(pairs)), "an (index, name) scored twice"
    certs = {r["index"] for r in _rows(lake, layout.CERTS, ["index"], slug) if first <= r["index"] < end}
    assert {i for i, _ in pairs if first <= i < end} == certs, "a certificate not scored"
    alerts = {(r["index"], r["name"]) for r in _rows(lake, layout.ALERTS, ["index", "name"], slug)}
    assert alerts <= set(pairs)
    return scores


def _assert_audit_clean(lake_location: str, slug: str, first: int, scored_to: int) -> None:
    """`python -m ctlib.audit --log slug` passes, its downstream check over [first, scored_to) too."""
    code, report = audit("--log", slug, "--lake", lake_location)
    print(report)
    assert code == 0, report
    assert f"{slug}: downstream score: [{first}, {scored_to}) checked" in report


def test_a_week_long_pause_catches_up_exactly_once_whatever_compaction_did(airflow_db, tmp_path, monkeypatch,
                                                                           lake_location):
    with LogServer() as server:
        # 8 days of log timestamps, ~55 entries a day, ending now.
        log = server.add_log(_name("Local Paused Week Log", lake_location), history=(8 * 24, 440 / (8 * 86400)))
        total = log.sth.tree_size
        lake = _setup(monkeypatch, tmp_path, server, lake_location, CT_ENTRIES_PER_RUN="160", CT_ENTRIES_PER_TASK="40")
        ingest = ingest_dag(log.slug)
        score, watch = load_dag_module("ct_score").ct_score, load_dag_module("ct_watch").ct_watch

        # The downstream DAGs run once after the first ingest run, then stop for the week.
        assert ingest.test().state == "success"
        assert score.test().state == "success" and watch.test().state == "success"
        first = progress_of("score", log.slug)
        assert (first["next_index"], first["pending"]) == (160, None) and first["day"] is not None
        assert progress_of("watch", log.slug)["next_index"] == 160
        event_files = []  # what the per-run asset events named: the old way of finding work
        while state_of(log.slug)["next_index"] < total:
            assert ingest.test().state == "success"
            event_files += [f.path for f in live_files(lake, layout.CERTS, slug=log.slug)]
        assert state_of(log.slug)["next_index"] == total

        # Compaction merges the closed days; an hour later it deletes what the merges absorbed.
        now = datetime.now(UTC)
        for later in (now + timedelta(hours=1), now + timedelta(hours=2)):
            report = compact_log(lake, log.slug, first_index=0, next_index=total, mmd_seconds=86400, now=later)
        merged = [f for f in live_files(lake, layout.CERTS, slug=log.slug) if layout.parse_merged(f.name)]
        assert len(merged) >= 5, f"closed days merged: {report.to_json()}"
        gone = [p for p in set(event_files) if lake.filesystem.get_file_info(p).type.name == "NotFound"]
        assert len(gone) >= 10, "per-run files of the pause were deleted"

        # Back from the pause: several runs, at most 120 entries each.
        monkeypatch.setenv("CT_DOWNSTREAM_MAX_PER_RUN", "120")
        for consumer, dag in (("score", score), ("watch", watch)):
            runs = 0
            while progress_of(consumer, log.slug)["next_index"] < total:
                assert dag.test().state == "success"
                runs += 1
            assert runs == -(-(total - 160) // 120), f"{consumer}: one capped range per run"
            done = progress_of(consumer, log.slug)
            assert (done["next_index"], done["pending"]) == (total, None)
            assert done["day"] == max(r["timestamp"] for r in _rows(lake, layout.CERTS, ["timestamp"], log.slug)
                                      ).date().isoformat()

        _assert_scored_once(lake, log.slug, 0, total)
        certs = _rows(lake, layout.CERTS, ["tbs_sha256", "dns_names"], log.slug)
        watched = {c["tbs_sha256"] for c in certs if any(n == "de" or n.endswith(".de") for n in c["dns_names"])}
        matches = _rows(lake, layout.WATCH_MATCHES, ["tbs_sha256", "watch_item"])
        assert len(watched) >= 10
        assert sorted(m["tbs_sha256"] for m in matches) == sorted(watched), "each issuance kept once"
        _assert_audit_clean(lake_location, log.slug, 0, total)

        # Woken again with nothing new: nothing to do, nothing written.
        before = sorted(f.path for f in live_files(lake, layout.SCORES, slug=log.slug))
        assert score.test().state == "success"
        assert sorted(f.path for f in live_files(lake, layout.SCORES, slug=log.slug)) == before


def test_a_run_that_fails_after_writing_is_redone_by_the_next_under_the_same_names(airflow_db, tmp_path, monkeypatch,
                                                                                   capfd, lake_location):
    with LogServer() as server:
        log = server.add_log(_name("Local Failing Score Log", lake_location), initial_size=30)
        for names in PHISHING:
            log.submit(names)
        log.grow(20)
        log.publish()
        lake = _setup(monkeypatch, tmp_path, server, lake_location)
        ingest = ingest_dag(log.slug)
        score = load_dag_module("ct_score").ct_score
        assert ingest.test().state == "success"
        committed = state_of(log.slug)["next_index"]

        # Kafka publishing fails (its connection is missing) after the scores were written.
        monkeypatch.setenv("CT_KAFKA_CONN_ID", "ct_missing_kafka")
        state, output = run_dag(score, capfd)
        assert state == "failed" and "ct_missing_kafka" in output
        failed = progress_of("score", log.slug)
        assert (failed["next_index"], failed["pending"]) == (0, [0, committed]), "the range stays pending"
        written = sorted(f.path for table in (layout.SCORES, layout.ALERTS)
                         for f in live_files(lake, table, slug=log.slug))
        assert any("/alerts/" in p for p in written) and any("/scores/" in p for p in written)

        # More entries are committed meanwhile; the next run redoes exactly the pending range.
        monkeypatch.setenv("CT_KAFKA_CONN_ID", "")
        log.grow(25)
        log.publish()
        assert ingest.test().state == "success"
        assert score.test().state == "success"
        redone = progress_of("score", log.slug)
        assert (redone["next_index"], redone["pending"]) == (committed, None)
        assert sorted(f.path for table in (layout.SCORES, layout.ALERTS)
                      for f in live_files(lake, table, slug=log.slug)) == written, "the same files, rewritten"
        _assert_scored_once(lake, log.slug, 0, committed)

        assert score.test().state == "success"  # and then the rest
        total = state_of(log.slug)["next_index"]
        assert progress_of("score", log.slug)["next_index"] == total > committed
        _assert_scored_once(lake, log.slug, 0, total)
        _assert_audit_clean(lake_location, log.slug, 0, total)


def test_a_finished_run_cleared_and_run_again_adds_nothing(airflow_db, tmp_path, monkeypatch, lake_location):
    with LogServer() as server:
        log = server.add_log(_name("Local Cleared Run Log", lake_location), initial_size=40)
        log.submit(["shop.watched-corp.de"])
        log.submit(PHISHING[0])
        log.publish()
        lake = _setup(monkeypatch, tmp_path, server, lake_location)
        assert ingest_dag(log.slug).test().state == "success"
        total = state_of(log.slug)["next_index"]
        when = datetime.now(UTC).replace(microsecond=0)
        for module, consumer in (("ct_score", "score"), ("ct_watch", "watch")):
            dag = getattr(load_dag_module(module), module)
            first = dag.test(logical_date=when, run_after=when)
            assert first.state == "success"
            files = {t: {f.path: f.mtime for f in live_files(lake, t)} for t in (layout.SCORES, layout.WATCH_MATCHES)}
            watermark = progress_of(consumer, log.slug)
            assert watermark["next_index"] == total
            again = dag.test(logical_date=when, run_after=when)  # the same run: its task instances cleared first
            assert (again.state, again.run_id) == ("success", first.run_id)
            assert {t: {f.path: f.mtime for f in live_files(lake, t)} for t in files} == files, "nothing rewritten"
            assert progress_of(consumer, log.slug) == watermark
        _assert_scored_once(lake, log.slug, 0, total)
        assert [m["watch_item"] for m in _rows(lake, layout.WATCH_MATCHES, ["watch_item"])].count(".de") >= 1
        _assert_audit_clean(lake_location, log.slug, 0, total)


def test_a_manual_run_scores_backfilled_history_in_whole_cells_without_the_watermark(airflow_db, tmp_path,
                                                                                     monkeypatch, capfd):
    lake_location = str(tmp_path / "lake")
    with LogServer() as server:
        log = server.add_log("Local Manual Score Log", initial_size=300)
        lake = _setup(monkeypatch, tmp_path, server, lake_location, CT_START_AT="latest")
        ingest = ingest_dag(log.slug)
        assert ingest.test().state == "success"  # starts at the tip: first_index 300
        log.grow(50)
        log.publish()
        assert ingest.test().state == "success"
        assert (state_of(log.slug)["first_index"], state_of(log.slug)["next_index"]) == (300, 350)
        assert ingest.test(run_conf={"start_index": 0, "end_index": 300}).state == "success"  # the history

        score = load_dag_module("ct_score").ct_score
        assert score.test().state == "success"
        assert progress_of("score", log.slug)["next_index"] == 350
        assert {r["index"] for r in _rows(lake, layout.SCORES, ["index"], log.slug)} == set(range(300, 350)), \
            "the watermark starts at first_index: history is not its work"

        watermark = progress_of("score", log.slug)
        assert score.test(run_conf={"log": log.slug, "start_index": 10, "end_index": 20}).state == "success"
        names = sorted(f.name for f in live_files(lake, layout.SCORES, slug=log.slug))
        assert layout.range_file_name(0, 300) in names, "rounded out to the cell, clipped to first_index"
        assert score.test(run_conf={"log": log.slug, "start_index": 100, "end_index": 300}).state == "success"
        assert sorted(f.name for f in live_files(lake, layout.SCORES, slug=log.slug)) == names, "the same files"
        assert progress_of("score", log.slug) == watermark
        _assert_scored_once(lake, log.slug, 0, 350)

        state, output = run_dag(score, capfd, run_conf={"log": log.slug, "start_index": 200, "end_index": 301})
        assert state == "failed" and "reaches 300" in output, "the watermark's entries are not a manual run's"
        assert progress_of("score", log.slug) == watermark
        _assert_audit_clean(lake_location, log.slug, 300, 350)
