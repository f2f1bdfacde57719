"""ctlib.ops.audit: the interval logic (pure), the DuckDB lake scan on hand-made lakes (gaps,
duplicates, errors counting as present, other logs and uncommitted rows), the states it reads
(a read-only MappingStateStore, from JSON or from Airflow's metadata database), the Kafka
connection it reads, the CLI's exit status and report, and a scan of millions of rows."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctlib.ingest.state import LogState, MappingStateStore, PendingPlan, StateError
from ctlib.kafka import KafkaConfigError
from ctlib.ops.audit import (
    CountRun,
    Since,
    audit_from_runs,
    audit_lake,
    clip,
    collapse,
    count_runs,
    describe_duplicate,
    describe_gap,
    duplicates,
    format_table,
    gaps,
    kafka_config,
    load_states,
    main,
    normalize,
    parse_since,
    runs_of_array,
    scan_lake,
    subtract,
)


# ----------------------------------------------------------------- pure interval logic


def test_collapse_and_count_runs():
    assert collapse([]) == []
    assert collapse([3, 4, 5, 7, 7, 8, 20]) == [(3, 6), (7, 9), (20, 21)]
    with pytest.raises(ValueError, match="not sorted"):
        collapse([2, 1])
    pairs = [(0, 1), (1, 1), (2, 2), (3, 2), (4, 1), (9, 1)]
    assert count_runs(pairs) == [CountRun(0, 2, 1), CountRun(2, 4, 2), CountRun(4, 5, 1), CountRun(9, 10, 1)]


def test_subtract_normalize_clip():
    assert normalize([(5, 9), (0, 3), (3, 4), (8, 12), (7, 7)]) == [(0, 4), (5, 12)]
    assert subtract([(0, 100)], [(10, 20), (15, 30), (90, 120)]) == [(0, 10), (30, 90)]
    assert subtract([(0, 10), (20, 30)], [(5, 25)]) == [(0, 5), (25, 30)]
    assert subtract([(0, 10)], []) == [(0, 10)]
    assert subtract([], [(0, 10)]) == []
    assert clip([(0, 10), (20, 30), (40, 50)], 5, 45) == [(5, 10), (20, 30), (40, 45)]


def test_gaps_and_duplicates_as_index_ranges():
    present = [CountRun(0, 120, 1), CountRun(180, 300, 1), CountRun(300, 310, 2), CountRun(310, 400, 1)]
    assert gaps(present, 0, 400) == [(120, 180)]
    assert gaps(present, 100, 450) == [(120, 180), (400, 450)]
    assert gaps([], 7, 9) == [(7, 9)]
    assert gaps(present, 5, 5) == []
    assert duplicates(present, 0, 400) == [CountRun(300, 310, 2)]
    assert duplicates(present, 305, 400) == [CountRun(305, 310, 2)]
    assert [describe_gap(g) for g in gaps(present, 0, 400)] == ["gap [120, 180)"]
    assert describe_duplicate(CountRun(300, 310, 2)) == "duplicate [300, 310) x2"
    # touching runs of the same count merge; different counts stay apart
    assert duplicates([CountRun(0, 5, 2), CountRun(5, 8, 2), CountRun(8, 9, 3)], 0, 9) == [
        CountRun(0, 8, 2), CountRun(8, 9, 3)]


def test_verdict_counts_rows_inside_and_outside_the_watermark():
    present = [CountRun(0, 10, 1), CountRun(10, 20, 2), CountRun(20, 60, 1)]
    audit = audit_from_runs("x", 5, 50, present)
    assert (audit.rows, audit.below, audit.above) == (55, 5, 10)
    assert audit.gaps == [] and audit.duplicates == [CountRun(10, 20, 2)] and not audit.ok
    assert audit.findings() == ["x: duplicate [10, 20) x2 (in the lake)"]
    clean = audit_from_runs("x", 0, 60, [CountRun(0, 60, 1)])
    assert clean.ok and clean.findings() == []
    table = format_table([audit, clean])
    assert "FAIL" in table and "OK" in table and "duplicate [10, 20) x2" in table


def test_runs_of_array():
    assert runs_of_array(np.array([], dtype=np.int64)) == []
    assert runs_of_array(np.array([1, 2, 3, 7, 9, 10], dtype=np.int64)) == [(1, 4), (7, 8), (9, 11)]


def test_parse_since():
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_since("1234") == Since(index=1234)
    assert parse_since("6h", now) == Since(time=now - timedelta(hours=6))
    assert parse_since("2026-05-01T10:00:00Z") == Since(time=datetime(2026, 5, 1, 10, tzinfo=UTC))
    assert parse_since(None) == Since()
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday")


def mark(first_index: int, next_index: int) -> LogState:
    """A stored state with this watermark."""
    return LogState(next_index=next_index, tree_size=next_index, first_index=first_index)


def test_states_from_a_dump_of_variables():
    store = MappingStateStore({
        "ct_state__a": json.dumps({"next_index": 10, "first_index": 2}),  # as Variables store it
        "ct_plan__a": {"start": 10, "ranges": [[10, 12]]},
        "ct_other__a": "x",  # other ct-airflow Variables are skipped
        "b": {"next_index": 5},  # a bare slug
    })
    assert store.slugs() == ["a", "b"]
    assert (store.load("a").first_index, store.load("a").next_index) == (2, 10)
    assert (store.load("b").first_index, store.load("b").next_index) == (0, 5)
    assert store.load("c") is None and store.load_plan("a") == PendingPlan(10, ((10, 12),))
    assert load_states(store, ["b", "c"]) == {"b": store.load("b")}
    with pytest.raises(StateError, match="read-only"):
        store.save("a", mark(0, 11))
    # A malformed state names its key, as the dump spells it.
    with pytest.raises(StateError, match="ct_state__a is not JSON"):
        MappingStateStore({"ct_state__a": "{"})
    with pytest.raises(StateError, match=r"^b has no next_index"):
        MappingStateStore({"b": {"tree_size": 3}})
    with pytest.raises(StateError, match="JSON object"):
        MappingStateStore([1, 2])


# ----------------------------------------------------------------- the lake scan


def write_rows(lake: Path, table: str, slug: str, indexes, *, name: str | None = None, day: str = "2026-01-01",
               log_slug: str | None = None, ingested_at: datetime | None = None) -> Path:
    indexes = list(indexes)
    folder = lake / table / f"log={slug}" / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (name or f"{min(indexes):012d}-{max(indexes) + 1:012d}.parquet")
    when = ingested_at or datetime(2026, 1, 1, tzinfo=UTC)
    pq.write_table(pa.table({
        "log_id": pa.array(["bG9nLWlk"] * len(indexes)),
        "log_slug": pa.array([log_slug or slug] * len(indexes)),
        "index": pa.array(indexes, pa.int64()),
        "ingested_at": pa.array([when] * len(indexes), pa.timestamp("ms", tz="UTC")),
    }), path)
    return path


def test_lake_scan_finds_gaps_and_duplicates_counting_errors_as_present(tmp_path):
    lake = tmp_path / "lake"
    write_rows(lake, "certs", "alpha", [i for i in range(0, 120) if i not in (7, 8)])
    write_rows(lake, "errors", "alpha", [7, 8])  # undecodable entries are present
    write_rows(lake, "certs", "alpha", range(180, 300), day="2026-01-02")
    write_rows(lake, "certs", "alpha", range(300, 310), name="dup-a.parquet")
    write_rows(lake, "certs", "alpha", range(300, 310), name="dup-b.parquet", day="2026-01-03")
    write_rows(lake, "certs", "alpha", range(310, 420))  # 400..419 are above the watermark
    write_rows(lake, "certs", "alpha", range(120, 130), name="stray.parquet", log_slug="beta")  # not alpha's
    (lake / "certs" / "log=alpha" / "date=2026-01-01" / ".0-9.parquet.abc.tmp").write_bytes(b"partial")
    write_rows(lake, "certs", "beta", range(0, 50))

    runs, per_table = scan_lake(str(lake), "alpha")
    assert per_table == {"certs": 118 + 120 + 10 + 10 + 110, "errors": 2}
    audit = audit_lake(str(lake), "alpha", mark(0, 400))
    assert audit.gaps == [(120, 180)]
    assert audit.duplicates == [CountRun(300, 310, 2)]
    assert (audit.rows, audit.above, audit.below) == (370 - 20, 20, 0)
    assert audit_lake(str(lake), "beta", mark(0, 50)).ok
    assert audit_lake(str(lake), "gamma", mark(0, 0)).ok  # nothing committed, nothing due
    assert audit_lake(str(lake), "gamma", mark(3, 9)).gaps == [(3, 9)]


def test_cli_exit_status_and_report(tmp_path):
    lake = tmp_path / "lake"
    write_rows(lake, "certs", "alpha", [i for i in range(200) if not 120 <= i < 180])
    write_rows(lake, "certs", "alpha", range(150, 160), name="again.parquet")
    write_rows(lake, "certs", "beta", range(10, 40))
    states = tmp_path / "variables.json"
    states.write_text(json.dumps({"ct_state__alpha": json.dumps({"next_index": 200, "first_index": 0}),
                                  "ct_state__beta": json.dumps({"next_index": 40, "first_index": 10})}))

    def cli(*args):
        return main(["--state-json", str(states), "--lake", str(lake), *args])

    assert cli() == 1
    assert cli("--log", "beta") == 0
    assert main(["--state-json", str(states), "--lake", str(lake), "--log", "nope"]) == 2
    assert cli("--json") == 1


def test_cli_report_names_the_ranges(tmp_path, capsys):
    lake = tmp_path / "lake"
    write_rows(lake, "certs", "alpha", [i for i in range(200) if not 120 <= i < 180])
    write_rows(lake, "certs", "alpha", range(150, 160), name="again.parquet")
    states = tmp_path / "s.json"
    states.write_text(json.dumps({"alpha": {"next_index": 200, "first_index": 0}}))
    assert main(["--state-json", str(states), "--lake", str(lake)]) == 1
    out = capsys.readouterr().out
    assert "alpha: gap [120, 150) (30 entries missing from the lake)" in out
    assert "alpha: gap [160, 180)" in out
    assert "alpha: duplicate [150, 160) x2" not in out  # 150..159 appear once: the first file skips them
    with pytest.raises(SystemExit, match="2"):
        main(["--state-json", str(states), "--lake", str(lake), "--since", "5"])  # --since needs --kafka


def test_scan_scales_to_millions_of_rows(tmp_path):
    lake = tmp_path / "lake"
    per_file, files = 500_000, 4
    for k in range(files):
        start = k * per_file
        folder = lake / "certs" / "log=big" / f"date=2026-01-0{k + 1}"
        folder.mkdir(parents=True)
        n = per_file if k != 2 else per_file - 1000  # a gap of 1,000 at the end of the third file
        pq.write_table(pa.table({"log_slug": pa.array(["big"] * n), "index": pa.arange(start, start + n)}),
                       folder / f"{start:012d}-{start + per_file:012d}.parquet")
    began = time.monotonic()
    audit = audit_lake(str(lake), "big", mark(0, per_file * files))
    took = time.monotonic() - began
    gap_start = 3 * per_file - 1000
    assert audit.gaps == [(gap_start, gap_start + 1000)] and audit.duplicates == []
    assert audit.rows == per_file * files - 1000
    assert took < 30, f"scanning 2M rows took {took:.1f}s"


# ----------------------------------------------------------------- Airflow: Variables and the Kafka connection


def test_kafka_config_from_bootstrap_or_the_connection(monkeypatch):
    assert kafka_config("h:1", "kafka_default") == {"bootstrap.servers": "h:1"}  # --bootstrap wins
    with pytest.raises(ValueError, match="pass --bootstrap or set CT_KAFKA_CONN_ID"):
        kafka_config(None, "")
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_ENV", json.dumps(
        {"conn_type": "kafka", "extra": {"bootstrap.servers": "env:9092", "client.id": "x"}}))
    assert kafka_config(None, "kafka_env") == {"bootstrap.servers": "env:9092", "client.id": "x"}
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_BARE", json.dumps({"conn_type": "kafka", "extra": {}}))
    with pytest.raises(KafkaConfigError, match=r"'kafka_bare' is unusable: .*bootstrap\.servers"):
        kafka_config(None, "kafka_bare")


def test_states_and_kafka_connection_from_the_metadata_database(airflow_db, tmp_path, monkeypatch, capsys):
    """Outside a task (the CLI), Variables and connections come from the metadata database."""
    from airflow.models import Connection, Variable
    from airflow.utils.session import create_session

    Variable.set("ct_state__dbone", json.dumps({"next_index": 30, "first_index": 10}))
    Variable.set("ct_statexxdbnot", json.dumps({"next_index": 1}))  # LIKE's '_' matches it: skipped
    monkeypatch.setenv("AIRFLOW_VAR_CT_STATE__ENVONE", json.dumps({"next_index": 0}))
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "kafka_db").delete()
        extra = json.dumps({"bootstrap.servers": "db:9092"})
        session.add(Connection(conn_id="kafka_db", conn_type="kafka", extra=extra))
    try:
        store = MappingStateStore.from_airflow_db()
        assert {"dbone", "envone"} <= set(store.slugs()) and "ct_statexxdbnot" not in store.slugs()
        assert (store.load("dbone").first_index, store.load("dbone").next_index) == (10, 30)
        assert MappingStateStore.from_airflow_db("dbone").slugs() == ["dbone"]
        assert kafka_config(None, "kafka_db") == {"bootstrap.servers": "db:9092"}
        with pytest.raises(KafkaConfigError, match=r"'kafka_nowhere' \(CT_KAFKA_CONN_ID\) is not configured"):
            kafka_config(None, "kafka_nowhere")

        lake = tmp_path / "lake"
        write_rows(lake, "certs", "dbone", range(10, 30))
        assert main(["--log", "dbone", "--lake", str(lake)]) == 0
        assert "dbone" in capsys.readouterr().out
        assert main(["--log", "dbnone", "--lake", str(lake)]) == 2
        assert "no stored state for 'dbnone' in Airflow Variables" in capsys.readouterr().err
        monkeypatch.setenv("CT_KAFKA_CONN_ID", "kafka_nowhere")
        assert main(["--log", "dbone", "--lake", str(lake), "--kafka"]) == 2
        assert "audit: Kafka connection 'kafka_nowhere' (CT_KAFKA_CONN_ID) is not configured" in capsys.readouterr().err
    finally:
        Variable.delete("ct_state__dbone")
        Variable.delete("ct_statexxdbnot")
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == "kafka_db").delete()
