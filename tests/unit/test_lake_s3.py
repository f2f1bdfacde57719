"""The lake on object storage (ctlib.lake.files): opening `s3://bucket/prefix` through the
AWS variables or an Airflow connection (CT_LAKE_CONN_ID), whole-object writes with no
temporary and no directory marker, a retry overwriting, clear errors without secrets; and the
backfill look-ups of ctlib.lake.known on a local lake and on S3. Against a local S3 server
(moto_server, tests/conftest.py)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from ctlib.lake import layout
from ctlib.lake.files import (
    Lake,
    LakeError,
    read_json,
    remove_stale_temporaries,
    write_file,
    write_json,
    write_range,
    write_streamed,
)
from ctlib.lake.known import held_runs, time_points
from ctlib.lake.manifest import Manifest, live_files, write_manifest
from ctlib.testing.s3 import REGION, LocalS3

DAY = date(2026, 11, 30)
KEY_ID, SECRET = "AKIALAKETEST7Q2W9E4R", "lake-secret-Zx81+/qLm3Vn0Pw5Ty7Ub2Ri"  # moto takes any key


def _table(indexes: list[int], day: date = DAY) -> pa.Table:
    start = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pa.table({
        "log_slug": pa.array(["log-a"] * len(indexes), pa.string()),
        "index": pa.array(indexes, pa.int64()),
        "timestamp": pa.array([start + timedelta(seconds=i) for i in indexes], pa.timestamp("ms", tz="UTC")),
    })


def _objects(bucket: str, endpoint: str) -> list[str]:
    """Every key of the bucket, as the S3 API lists them (directory markers too)."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _requests(server: LocalS3, bucket: str) -> list[str]:
    """The server's request lines for `bucket` ("PUT /bucket/key...")."""
    assert server.log_path is not None
    return [m[1] for m in re.finditer(r'"([A-Z]+ /' + re.escape(bucket) + r'[/?][^"]*)"', server.log_path.read_text())]


def _bucket(location: str) -> str:
    return location.split("://", 1)[1].split("/", 1)[0]


def _no_aws_variables(monkeypatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


def _aws_connection(monkeypatch, conn_id: str, endpoint: str, *, login: str = KEY_ID, password: str = SECRET) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "aws", "login": login, "password": password,
        "extra": {"region_name": REGION, "endpoint_url": endpoint},
    }))


# --------------------------------------------------------------------------- opening


def test_open_with_the_aws_variables_reads_and_writes(s3_lake):
    lake = Lake.open(s3_lake)
    assert lake.on_object_store and lake.location == s3_lake and repr(lake) == f"Lake({s3_lake!r})"
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    path = write_file(lake, directory, layout.range_file_name(0, 3), _table([0, 1, 2]))
    assert path == f"{directory}/{layout.range_file_name(0, 3)}"
    assert lake.uri(path) == f"s3://{path}"
    again = Lake.open(s3_lake + "/")
    assert pq.read_table(path, filesystem=again.filesystem).column("index").to_pylist() == [0, 1, 2]


def test_open_with_an_airflow_connection_and_no_aws_variables(s3_server, s3_lake, monkeypatch):
    _no_aws_variables(monkeypatch)
    _aws_connection(monkeypatch, "ct_lake_test", s3_server.endpoint)
    monkeypatch.setenv("CT_LAKE_CONN_ID", "ct_lake_test")
    lake = Lake.open(s3_lake)  # CT_LAKE_CONN_ID: the endpoint, keys and region come from the connection
    write_json(lake, lake.path("marker.json"), {"a": 1})
    assert read_json(lake, lake.path("marker.json")) == {"a": 1}
    shown = f"{lake!r} {lake} {lake.location}"
    assert SECRET not in shown and KEY_ID not in shown and "S3FileSystem" not in shown
    assert s3_lake in shown

    monkeypatch.delenv("CT_LAKE_CONN_ID")
    explicit = Lake.open(s3_lake, conn_id="ct_lake_test")
    assert read_json(explicit, explicit.path("marker.json")) == {"a": 1}

    # The endpoint as the Amazon provider may also hold it, and, left out, from AWS_ENDPOINT_URL.
    monkeypatch.setenv("AIRFLOW_CONN_CT_LAKE_NESTED", json.dumps({
        "conn_type": "aws", "login": KEY_ID, "password": SECRET,
        "extra": {"region_name": REGION, "service_config": {"s3": {"endpoint_url": s3_server.endpoint}}}}))
    monkeypatch.setenv("AIRFLOW_CONN_CT_LAKE_KEYS_ONLY", json.dumps({"conn_type": "aws", "login": KEY_ID, "password": SECRET}))
    assert read_json(Lake.open(s3_lake, conn_id="ct_lake_nested"), lake.path("marker.json")) == {"a": 1}
    with pytest.raises(LakeError, match="ct_lake_keys_only"):  # nowhere to go: the real AWS is not this bucket's
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        Lake.open(s3_lake, conn_id="ct_lake_keys_only")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    assert read_json(Lake.open(s3_lake, conn_id="ct_lake_keys_only"), lake.path("marker.json")) == {"a": 1}


def test_a_missing_connection_is_named(s3_lake, monkeypatch):
    monkeypatch.setenv("CT_LAKE_CONN_ID", "ct_lake_nowhere")
    with pytest.raises(LakeError, match=r"ct_lake_nowhere.*CT_LAKE_CONN_ID.*not defined") as caught:
        Lake.open(s3_lake)
    assert s3_lake in str(caught.value)
    assert Lake.open(s3_lake, conn_id="").on_object_store, "an empty id: the AWS variables"


def test_a_missing_bucket_is_a_clear_error(s3_server, s3_lake, monkeypatch):
    missing = f"s3://nobucket-{uuid.uuid4().hex[:10]}/lake"
    with pytest.raises(LakeError, match="does not exist") as caught:
        Lake.open(missing)
    assert missing in str(caught.value)
    _aws_connection(monkeypatch, "ct_lake_test", s3_server.endpoint)
    with pytest.raises(LakeError, match="does not exist") as caught:
        Lake.open(missing, conn_id="ct_lake_test")
    assert missing in str(caught.value) and SECRET not in str(caught.value) and KEY_ID not in str(caught.value)


@pytest.fixture
def strict_s3(tmp_path, monkeypatch):
    """A local S3 server that checks credentials (moto's IAM mode, after the two requests that
    create the bucket `lake`): every key it was not given is refused."""
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "2")
    with LocalS3(log_path=tmp_path / "moto-strict.log") as server:
        monkeypatch.delenv("INITIAL_NO_AUTH_ACTION_COUNT")
        server.create_bucket("lake")
        yield server


def test_refused_credentials_are_a_clear_error_without_the_secret(strict_s3, monkeypatch):
    for name, value in strict_s3.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(LakeError, match=r"s3://lake/prefix: cannot read the bucket 'lake'.*AWS variables") as caught:
        Lake.open("s3://lake/prefix")
    assert SECRET not in str(caught.value) and KEY_ID not in str(caught.value)

    _no_aws_variables(monkeypatch)
    _aws_connection(monkeypatch, "ct_lake_strict", strict_s3.endpoint)
    with pytest.raises(LakeError, match=r"s3://lake/prefix: cannot read the bucket 'lake'.*'ct_lake_strict'") as caught:
        Lake.open("s3://lake/prefix", conn_id="ct_lake_strict")
    assert SECRET not in str(caught.value) and KEY_ID not in str(caught.value)


# --------------------------------------------------------------------------- writing


class Interrupted(Exception):
    """What stops a writer half way (a task timeout, a signal)."""


def test_writes_put_whole_objects_under_their_names_with_no_temporary_or_marker(s3_server, s3_lake):
    lake = Lake.open(s3_lake)
    bucket = _bucket(s3_lake)
    paths = write_range(lake, layout.CERTS, "log-a", 0, 4, pa.concat_tables([_table([0, 1]), _table([2, 3], DAY + timedelta(1))]))
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    manifest = Manifest(generation=1, file=layout.merged_file_name(0, 4, 1), rows=2, first=0, end=4,
                        absorbed=frozenset({layout.range_file_name(0, 4)}))
    write_file(lake, directory, manifest.file, _table([0, 1]))
    write_manifest(lake, directory, manifest)
    write_json(lake, layout.backfill_marker(lake.root, "log-a", 0, 1), {"done": True})

    keys = _objects(bucket, s3_server.endpoint)
    prefix = "lake/certs/log=log-a/"
    assert keys == sorted([
        f"{prefix}date={DAY}/{layout.range_file_name(0, 4)}",
        f"{prefix}date={DAY + timedelta(1)}/{layout.range_file_name(0, 4)}",
        f"{prefix}date={DAY}/{manifest.file}",
        f"{prefix}date={DAY}/{layout.MANIFEST}",
        f"lake/.backfills/log=log-a/w{0:013d}-{1:013d}.json",
    ]), "no temporary and no directory marker ('.../') object"
    assert [f"s3://{p}" for p in paths] == [lake.uri(p) for p in paths]
    requests = _requests(s3_server, bucket)
    assert requests, "the server's request log is read"
    puts = [r.split()[1].split("?")[0] for r in requests if r.startswith(("PUT", "POST"))]
    assert puts and not [p for p in puts if ".tmp" in p or p.endswith("/")], "never written, not just removed"
    assert not [r for r in requests if r.startswith("DELETE")], "no copy-and-delete move"
    assert remove_stale_temporaries(lake, directory) == [] and remove_stale_temporaries(lake, directory, "x") == []


def test_a_retry_overwrites_and_a_failed_write_leaves_the_old_object(s3_lake, monkeypatch):
    lake = Lake.open(s3_lake)
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    name = layout.range_file_name(0, 3)
    write_file(lake, directory, name, _table([0, 1]))
    write_file(lake, directory, name, _table([0, 1, 2]))  # the retry of the same range
    assert [f.name for f in live_files(lake, layout.CERTS)] == [name]
    assert pq.read_table(f"{directory}/{name}", filesystem=lake.filesystem).num_rows == 3

    real = pq.write_table

    def half_then_fail(table, where, *args, **kwargs):
        real(table.slice(0, 1), where, *args, **kwargs)  # a valid file of one row, then an error
        raise Interrupted("killed while writing")

    monkeypatch.setattr(pq, "write_table", half_then_fail)
    with pytest.raises(Interrupted):
        write_file(lake, directory, name, _table([0, 1, 2, 3]))
    with pytest.raises(Interrupted):
        write_file(lake, directory, layout.range_file_name(3, 4), _table([3]))
    monkeypatch.setattr(pq, "write_table", real)
    assert pq.read_table(f"{directory}/{name}", filesystem=Lake.open(s3_lake).filesystem).num_rows == 3, "unchanged"
    assert [f.name for f in live_files(Lake.open(s3_lake), layout.CERTS)] == [name], "nothing half written appears"


def test_a_streamed_write_is_whole_and_a_failed_one_leaves_nothing(lake_location):
    """files.write_streamed (compaction's merged files): row groups streamed to the file; a
    writer failing half way leaves nothing under the name, and no temporary."""
    lake = Lake.open(lake_location)
    directory = layout.partition_dir(lake.root, layout.CERTS, "log-a", DAY)
    name, failed = layout.merged_file_name(0, 30, 1), layout.merged_file_name(0, 30, 2)
    schema = _table([0]).schema

    def groups(count: int, fail: bool = False):
        def write(out) -> None:
            with pq.ParquetWriter(out, schema, compression="zstd") as writer:
                for k in range(count):
                    writer.write_table(_table(list(range(10 * k, 10 * k + 10))))
                if fail:
                    raise Interrupted("killed while merging")
        return write

    assert write_streamed(lake, directory, name, groups(3)) == f"{directory}/{name}"
    with pytest.raises(Interrupted):
        write_streamed(lake, directory, failed, groups(2, fail=True))
    written = pq.ParquetFile(lake.filesystem.open_input_file(f"{directory}/{name}"))
    assert (written.num_row_groups, written.metadata.num_rows) == (3, 30)
    names = sorted(i.base_name for i in lake.filesystem.get_file_info(pafs.FileSelector(directory)))
    assert names == [name], "nothing under the failed name, no temporary"


# --------------------------------------------------------------------------- backfill look-ups


def test_held_runs_and_time_points_read_the_live_files(lake_location):
    """ctlib.lake.known through live files on a local lake and on S3: a compacted partition
    counts through its manifest, errors without a timestamp count, a window's own files do not."""
    lake = Lake.open(lake_location)
    slug = "log-a"
    day = layout.partition_dir(lake.root, layout.CERTS, slug, DAY)
    write_file(lake, day, layout.range_file_name(0, 10), _table(list(range(0, 10))))
    write_file(lake, day, layout.range_file_name(10, 20), _table(list(range(10, 20))))
    write_file(lake, day, layout.range_file_name(30, 40), _table(list(range(30, 40))))
    window = (1_000, 2_000)
    write_file(lake, day, layout.window_file_name(50, 60, *window), _table(list(range(50, 60))))
    # Errors: one with a timestamp on DAY, one without (the UNKNOWN_DATE partition).
    write_file(lake, layout.partition_dir(lake.root, layout.ERRORS, slug, DAY), layout.range_file_name(20, 21), _table([20]))
    write_file(lake, layout.partition_dir(lake.root, layout.ERRORS, slug, layout.UNKNOWN_DATE),
               layout.range_file_name(21, 22), _table([21]))

    assert held_runs(lake_location, slug, 0, 100, [DAY]) == [(0, 22), (30, 40), (50, 60)]
    assert held_runs(lake_location, slug, 0, 100, [DAY], own=window) == [(0, 22), (30, 40)]
    assert held_runs(lake, slug, 5, 35, [DAY]) == [(5, 22), (30, 35)]
    assert held_runs(lake, slug, 0, 100, [DAY + timedelta(3)]) == [(21, 22)], "errors without a timestamp only"
    assert held_runs(lake, "log-b", 0, 100, [DAY]) == []

    # Compacted: a merged file of [0, 20) with index 15 missing (a file no manifest names is not read at first).
    merged = layout.merged_file_name(0, 20, 1)
    write_file(lake, day, merged, _table([i for i in range(20) if i != 15]))
    assert held_runs(lake, slug, 0, 100, [DAY], own=window) == [(0, 22), (30, 40)]
    write_manifest(lake, day, Manifest(generation=1, file=merged, rows=19, first=0, end=20,
                                       absorbed=frozenset({layout.range_file_name(0, 10), layout.range_file_name(10, 20)})))
    assert held_runs(lake, slug, 0, 100, [DAY], own=window) == [(0, 15), (16, 22), (30, 40)], "the manifest's view"

    noon = int(datetime(DAY.year, DAY.month, DAY.day, 12, tzinfo=UTC).timestamp() * 1000)
    at = noon + 32_500  # between the entries 32 and 33 (index i is logged at noon + i s)
    assert time_points(lake_location, slug, [at], span_ms=3_000) == [(32, noon + 32_000), (33, noon + 33_000)]
    assert time_points(lake, slug, [noon + 14_500], span_ms=60_000) == [(14, noon + 14_000), (16, noon + 16_000)]
    assert time_points(lake, slug, [noon + 25_000], span_ms=1_000) == [], "nothing within the span"
    assert time_points(lake, slug, [noon - 86_400_000 * 5], span_ms=1_000) == []
    assert time_points(lake, slug, [], span_ms=1_000) == []
