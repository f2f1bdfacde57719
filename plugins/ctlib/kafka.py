"""Kafka sink: one JSON message per entry, key `<log_id>:<index>`, every delivery checked.

The provider's ProduceToTopicOperator only logs delivery errors, so this module drives a
producer itself: idempotent, acks=all, and `publish` raises KafkaDeliveryError unless every
message was acknowledged. `connection_config` is the one reading of the Airflow Kafka
connection (CT_KAFKA_CONN_ID): the producer starts from it, and so does the audit's consumer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


class KafkaDeliveryError(RuntimeError):
    """Some messages were not acknowledged by the broker; nothing may be committed."""


class KafkaConfigError(RuntimeError):
    """The Kafka connection is missing or unusable."""


# Settings that make delivery safe whatever the connection says: the broker acknowledges
# only fully replicated writes, and retries cannot duplicate or reorder within a partition.
SAFE_PRODUCER_CONFIG = {"enable.idempotence": True, "acks": "all", "linger.ms": 20, "compression.type": "zstd"}


def connection_config(conn_id: str, *, missing_hint: str = "") -> dict[str, Any]:
    """The librdkafka settings of the Airflow Kafka connection `conn_id`, built as the
    provider's hooks build them (its extras; string callbacks resolved from the allowlist,
    managed-Kafka OAuth added; `bootstrap.servers` required).

    The connection is looked up by the Task SDK (in a task: through the API server; elsewhere
    AIRFLOW_CONN_* and secrets backends only), and when that finds none, by airflow.models,
    which outside a task also reads the metadata database: tasks and `python -m ctlib.audit`
    see the same connections. Raises KafkaConfigError (`missing_hint` appended when the
    connection does not exist)."""
    from airflow.providers.apache.kafka.hooks.base import KafkaBaseHook

    class _ConfigHook(KafkaBaseHook):
        @classmethod
        def get_connection(cls, conn_id: str):
            try:
                return super().get_connection(conn_id)
            except Exception as err:
                if type(err).__name__ != "AirflowNotFoundException":
                    raise
            from airflow.models.connection import Connection

            return Connection.get_connection_from_secrets(conn_id)

        def _get_client(self, config: dict[str, Any]) -> dict[str, Any]:
            return dict(config)

    try:
        return _ConfigHook(kafka_config_id=conn_id).get_conn
    except Exception as err:  # AirflowNotFoundException, ValueError (no bootstrap.servers), ...
        if type(err).__name__ == "AirflowNotFoundException":
            raise KafkaConfigError(
                f"Kafka connection {conn_id!r} (CT_KAFKA_CONN_ID) is not configured{missing_hint}"
            ) from err
        raise KafkaConfigError(f"Kafka connection {conn_id!r} is unusable: {err}") from err


def producer_from_connection(conn_id: str, overrides: dict[str, Any] | None = None):
    """A confluent-kafka Producer for connection `conn_id` (see `connection_config`), with
    SAFE_PRODUCER_CONFIG over whatever the connection says, then `overrides`."""
    from confluent_kafka import KafkaException, Producer

    config = connection_config(
        conn_id, missing_hint=": add it, or set CT_KAFKA_CONN_ID to an empty value to turn Kafka publishing off")
    try:
        return Producer({**config, **SAFE_PRODUCER_CONFIG, **(overrides or {})})
    except (KafkaException, ValueError, TypeError) as err:
        raise KafkaConfigError(f"Kafka connection {conn_id!r} is unusable: {err}") from err


def _iso_utc(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO 8601 UTC strings of a timestamp column ("2026-01-02T03:04:05.678Z" for milliseconds,
    as `pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")` renders them, nulls kept). Cast from
    timestamps without a time zone (the same UTC values): ten times cheaper than strftime,
    which looks every value up in the time zone database."""
    text = column.cast(pa.timestamp(column.type.unit)).cast(pa.string())  # "2026-01-02 03:04:05.678"
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, start=10, stop=11, replacement="T"), "Z", "")


def _json_ready(table: pa.Table) -> pa.Table:
    """`table` with timestamps as ISO 8601 UTC strings (milliseconds as the column holds them)."""
    columns = [_iso_utc(column) if pa.types.is_timestamp(column.type) else column for column in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def rows_as_messages(table: pa.Table, *, key_columns: tuple[str, str] = ("log_id", "index")) -> list[tuple[bytes, bytes]]:
    """(key, value) per row: key `<log_id>:<index>`, value the row as JSON with Parquet column
    names; timestamps ISO 8601 UTC ("2026-01-02T03:04:05.678Z"), binary columns base64.

    Encoded column-wise by DuckDB (several times faster than a json.dumps per row), its
    answer taken as Arrow columns.
    """
    import duckdb

    if not table.num_rows:
        return []
    rows = _json_ready(table)  # noqa: F841 (read by name in the query below)
    first, second = (_quoted(name) for name in key_columns)
    binary = [_quoted(f.name) for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    replace = f" REPLACE ({', '.join(f'base64({name}) AS {name}' for name in binary)})" if binary else ""
    with duckdb.connect() as con:
        encoded = con.sql(
            f"SELECT {first} || ':' || {second} AS key, to_json(r) AS value "
            f"FROM (SELECT *{replace} FROM rows) AS r"
        ).to_arrow_table()
    # UTF-8 strings to bytes by a cast of the Arrow columns (no copy), not an encode() per row.
    keys, values = (encoded[name].cast(pa.binary()).to_pylist() for name in ("key", "value"))
    return list(zip(keys, values, strict=True))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def publish(producer, topic: str, messages: Iterable[tuple[bytes, bytes]], *, timeout: float, what: str) -> int:
    """Send every message and wait for all delivery reports. Returns the count delivered.

    Raises KafkaDeliveryError (naming `what`, e.g. the log and range) if any message failed
    or was not acknowledged within `timeout` seconds.
    """
    failures: list[str] = []
    delivered = 0

    def on_delivery(err, msg) -> None:
        nonlocal delivered
        if err is not None:
            failures.append(f"{msg.key().decode(errors='replace') if msg.key() else '?'}: {err}")
        else:
            delivered += 1

    sent = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.5)  # local queue full: let deliveries drain
        sent += 1
        producer.poll(0)
    deadline = time.monotonic() + timeout
    remaining = producer.flush(timeout)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(max(0.1, deadline - time.monotonic()))
    if failures or remaining or delivered != sent:
        sample = "; ".join(failures[:3])
        raise KafkaDeliveryError(
            f"{what}: {sent - delivered} of {sent} messages to {topic!r} not acknowledged "
            f"({len(failures)} failed, {remaining} still queued after {timeout:.0f}s){': ' + sample if sample else ''}"
        )
    return delivered
