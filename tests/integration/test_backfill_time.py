"""Backfill by time with `dag.test()`: a local log with two hours of backdated history whose
timestamps are slightly out of order, windows given as the Params start_time/end_time.
Each entry logged in a window lands once in the lake and on Kafka, nothing from outside it,
the watermark stays, and repeating or overlapping windows doubles nothing."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest

from ctlib.localsvc.broker import consume_all
from ctlib.testing.ctlog import Faults, LogServer
from tests.support.airflow import configure, ingest_dag, state_of, xcom_of
from tests.support.audit import assert_audit_clean
from tests.support.lake import lake_select

pytestmark = pytest.mark.integration

JITTER_S = 3.0  # each history timestamp moved by up to this: entries are out of order by up to twice it


def _stamps(log) -> list[int]:
    return [struct.unpack_from(">Q", log.entry(i)[0], 2)[0] for i in range(log.sth.tree_size)]


def _stored(lake, slug: str) -> list[tuple[int, int]]:
    """(index, timestamp ms) of the log's certs, as a reader sees them (the live files)."""
    return lake_select(lake, "certs", slug, "index, epoch_ms(timestamp)")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@pytest.mark.parametrize("tiled", [False, True], ids=["rfc6962", "tiled"])
def test_adjacent_windows_hold_each_entry_logged_in_them_exactly_once(tiled, airflow_db, kafka_broker, tmp_path,
                                                                       monkeypatch):
    topic = f"ct-certs-window-{'tiled' if tiled else 'rfc6962'}"
    with LogServer() as server:
        log = server.add_log(f"Local Window {'Tiled' if tiled else 'Classic'}", tiled=tiled, replay=True,
                             history=(2.0, 1.0), history_disorder=JITTER_S, faults=Faults(cap=256))
        lake = configure(monkeypatch, tmp_path, server, kafka_broker, CT_START_AT="latest", CT_KAFKA_TOPIC=topic,
                         CT_BACKFILL_DISORDER=str(2 * JITTER_S), CT_GET_ENTRIES_BATCH="256",
                         # the tiled log's windows are done by ingest alone, the classic log's by mapped fetches
                         CT_INLINE_ENTRIES="100000" if tiled else "70", CT_ENTRIES_PER_TASK="300")
        stamps = _stamps(log)
        dag = ingest_dag(log.slug)
        assert dag.test().state == "success"
        watermark = state_of(log.slug)
        assert watermark["first_index"] == watermark["next_index"] == len(stamps)

        # Three adjacent ten-minute windows in the middle of the history.
        base = stamps[0] + 30 * 60_000
        edges = [base + k * 600_000 for k in range(4)]
        for start, end in zip(edges, edges[1:]):
            run = dag.test(run_conf={"start_time": _iso(start), "end_time": _iso(end)})
            assert run.state == "success"
            assert xcom_of(run, "ingest", "plan" if not tiled else "result") is not None
        assert state_of(log.slug) == watermark, "a backfill leaves the watermark alone"

        expected = sorted((i, ts) for i, ts in enumerate(stamps) if edges[0] <= ts < edges[-1])
        stored = _stored(lake, log.slug)
        assert stored == expected, "every entry logged in the windows, once, and nothing else"
        # The log is disordered across the windows' inner edges: an entry logged after an edge
        # sits just before one logged before it, yet each is stored once, by its own window.
        assert any(stamps[i] >= e > stamps[i + 1] for e in edges[1:-1] for i in range(len(stamps) - 1))

        # Repeated, and an overlapping window of another shape: nothing doubles.
        files = sorted(p.relative_to(lake) for p in (lake / "certs").rglob("*.parquet"))
        assert dag.test(run_conf={"start_time": _iso(edges[1]), "end_time": _iso(edges[2])}).state == "success"
        assert dag.test(run_conf={"start_time": _iso(edges[0] + 300_000),
                                  "end_time": _iso(edges[1] + 300_000)}).state == "success"
        assert _stored(lake, log.slug) == expected
        assert sorted(p.relative_to(lake) for p in (lake / "certs").rglob("*.parquet")) == files

        # On Kafka once each, and the audit (duplicates below first_index included) is clean.
        keys = [r.key.decode() for r in consume_all(kafka_broker.bootstrap_servers, topic, timeout=30)]
        assert sorted(keys) == sorted(f"{log.log_id_b64}:{i}" for i, _ in expected)
        assert_audit_clean(lake, log.slug, "--bootstrap", kafka_broker.bootstrap_servers, "--topic", topic)
        assert state_of(log.slug) == watermark

        # A window whose run failed after storing part of it has no marker: its next run
        # writes its own files again under the same names (and verifies them), nothing doubles.
        markers = lake / ".backfills" / f"log={log.slug}"
        assert len(list(markers.iterdir())) == 4, "one per finished window"
        (markers / f"w{edges[1]:013d}-{edges[2]:013d}.json").unlink()
        before = {p: p.stat().st_mtime_ns for p in (lake / "certs").rglob(f"*.w{edges[1]:013d}-{edges[2]:013d}.parquet")}
        assert before, "the window's own files"
        assert dag.test(run_conf={"start_time": _iso(edges[1]), "end_time": _iso(edges[2])}).state == "success"
        assert all(p.stat().st_mtime_ns > t for p, t in before.items()), "written again"
        assert _stored(lake, log.slug) == expected
        assert sorted(p.relative_to(lake) for p in (lake / "certs").rglob("*.parquet")) == files
        assert_audit_clean(lake, log.slug)


def test_windows_on_an_s3_lake_hold_each_entry_once(airflow_db, s3_lake, tmp_path, monkeypatch):
    """The same on a lake on a local S3 server: the lake's own points and the entries an
    earlier backfill stored (ctlib.lake.known) are read there too, so an overlapping window
    of another shape and a repeated one double nothing."""
    with LogServer() as server:
        log = server.add_log("Local Window S3", replay=True, history=(1.0, 1.0), history_disorder=JITTER_S,
                             faults=Faults(cap=256))
        configure(monkeypatch, tmp_path, server, None, CT_LAKE=s3_lake, CT_KAFKA_CONN_ID="", CT_START_AT="latest",
                  CT_BACKFILL_DISORDER=str(2 * JITTER_S), CT_GET_ENTRIES_BATCH="256", CT_INLINE_ENTRIES="100000")
        stamps = _stamps(log)
        dag = ingest_dag(log.slug)
        assert dag.test().state == "success"
        watermark = state_of(log.slug)
        base = stamps[0] + 20 * 60_000
        edges = [base + k * 600_000 for k in range(3)]
        for start, end in [(edges[0], edges[1]), (edges[0] + 300_000, edges[2]), (edges[0], edges[1])]:
            assert dag.test(run_conf={"start_time": _iso(start), "end_time": _iso(end)}).state == "success"
        expected = sorted((i, ts) for i, ts in enumerate(stamps) if edges[0] <= ts < edges[-1])
        assert expected and _stored(s3_lake, log.slug) == expected, "each entry of the windows once, nothing else"
        assert state_of(log.slug) == watermark


def test_start_at_a_time_begins_at_the_first_entry_logged_then(airflow_db, tmp_path, monkeypatch):
    with LogServer() as server:
        log = server.add_log("Local Start At Time", replay=True, history=(1.0, 1.0),
                             faults=Faults(not_found=frozenset({"get-entry-and-proof"})))
        stamps = _stamps(log)
        at = stamps[0] + 20 * 60_000 + 500
        configure(monkeypatch, tmp_path, server, None, CT_KAFKA_CONN_ID="", CT_BACKFILL_DISORDER="0",
                  CT_START_AT=_iso(at).replace("+00:00", "Z"), CT_ENTRIES_PER_RUN="5000", CT_ENTRIES_PER_TASK="5000")
        dag = ingest_dag(log.slug)
        assert dag.test().state == "success"
        state = state_of(log.slug)
        first = next(i for i, ts in enumerate(stamps) if ts >= at)
        assert state["first_index"] == first
        assert state["next_index"] == len(stamps), "and verified up to the tree head from there"


def test_bad_window_params_fail_clearly(airflow_db, tmp_path, monkeypatch, capfd):
    with LogServer() as server:
        log = server.add_log("Local Window Params", initial_size=10)
        configure(monkeypatch, tmp_path, server, None, CT_KAFKA_CONN_ID="")
        dag = ingest_dag(log.slug)
        now = datetime.now(UTC)
        for conf, message in [
            ({"start_time": now.isoformat()}, "needs both start_time and end_time"),
            ({"start_time": now.isoformat(), "end_time": (now - timedelta(hours=1)).isoformat()}, "empty time window"),
            ({"start_time": (now - timedelta(hours=1)).isoformat(), "end_time": now.isoformat(), "start_index": 0,
              "end_index": 5}, "not both"),
        ]:
            capfd.readouterr()
            assert str(dag.test(run_conf=conf).state) == "failed", conf
            out, err = capfd.readouterr()
            assert message in out + err, (conf, message)
