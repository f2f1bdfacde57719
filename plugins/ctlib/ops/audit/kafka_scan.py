"""The Kafka side of the audit: which `<log_id>:<index>` keys the topic holds. `kafka_indexes`
reads the topic to its end with a throw-away consumer (no group offsets committed);
`kafka_config` says where the broker is (`--bootstrap`, else the Airflow connection, read
by ctlib.kafka as the producer reads it); `Since` is the window checked."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ctlib.kafka import connection_config


@dataclass(frozen=True, slots=True)
class Since:
    """The Kafka window: from an index on, or from a time on (entries ingested since)."""

    index: int | None = None
    time: datetime | None = None

    def describe(self) -> str:
        if self.index is not None:
            return f"from index {self.index} on"
        if self.time is not None:
            return f"for certificates ingested since {self.time.isoformat(timespec='seconds')}"
        return "over the whole topic"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str | None, now: datetime | None = None) -> Since:
    """`1234` (an index), `90m` / `6h` / `2d` (a duration back from now), or an ISO-8601 time."""
    if text is None or not text.strip():
        return Since()
    text = text.strip()
    if text.isdigit():
        return Since(index=int(text))
    match = _DURATION.match(text.lower())
    now = now or datetime.now(UTC)
    if match:
        return Since(time=now - timedelta(seconds=float(match[1]) * _UNITS[match[2]]))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text!r}: use an index, a duration like 6h, or an ISO-8601 time") from None
    return Since(time=moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def kafka_config(bootstrap: str | None, conn_id: str | None) -> dict[str, Any]:
    """Consumer settings: `--bootstrap`, else those of the Airflow Kafka connection `conn_id`
    (ctlib.kafka.connection_config). Raises ValueError when there is neither, and
    ctlib.kafka.KafkaConfigError when the connection is missing or unusable."""
    if bootstrap:
        return {"bootstrap.servers": bootstrap}
    if not conn_id:
        raise ValueError("no Kafka to check: pass --bootstrap or set CT_KAFKA_CONN_ID")
    return connection_config(conn_id, missing_hint="; add it, or pass --bootstrap")


def kafka_indexes(config: Mapping[str, Any], topic: str, log_ids: Mapping[str, str], *,
                  since_ms: int | None = None, timeout: float = 120.0) -> dict[str, tuple[Any, int]]:
    """Read `topic` to its end; for each slug of `log_ids` ({slug: log_id}), the sorted
    distinct indexes of its keys (a numpy array) and how many of its messages were read.

    Without a consumer group (partitions assigned, nothing committed). `since_ms` starts each
    partition at the first message at or after that time (librdkafka offsets_for_times);
    earlier messages may be read too, which only adds keys. Raises TimeoutError when the end
    of every partition is not reached within `timeout` seconds of silence."""
    import uuid
    from array import array

    import numpy as np
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

    by_id = {log_id: slug for slug, log_id in log_ids.items()}
    found: dict[str, array] = {slug: array("q") for slug in log_ids}
    messages = dict.fromkeys(log_ids, 0)
    consumer = Consumer({
        **config,
        "group.id": f"ct-audit-{uuid.uuid4().hex}", "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest",
        "allow.auto.create.topics": False,
    })
    try:
        try:
            meta = consumer.list_topics(topic, timeout=min(timeout, 30.0))
        except KafkaException as exc:
            raise ConnectionError(f"Kafka at {config.get('bootstrap.servers')}: cannot read metadata: {exc}") from None
        tmeta = meta.topics.get(topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            if tmeta is not None and tmeta.error is not None and tmeta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise ConnectionError(f"Kafka topic {topic!r}: {tmeta.error}")
            return {slug: (np.array([], dtype=np.int64), 0) for slug in log_ids}
        partitions = sorted(tmeta.partitions)
        assignment = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions]
        if since_ms is not None:
            try:
                wanted = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in partitions],
                                                    timeout=min(timeout, 30.0))
                assignment = [TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING)
                              for tp in wanted]
            except KafkaException:
                pass  # from the beginning: more to read, same verdict
        consumer.assign(assignment)
        at_end: set[int] = set()
        last_progress = time.monotonic()
        while len(at_end) < len(partitions):
            batch = consumer.consume(num_messages=10_000, timeout=0.5)
            if not batch:
                if time.monotonic() - last_progress > timeout:
                    raise TimeoutError(f"Kafka topic {topic!r}: end of partitions {sorted(set(partitions) - at_end)} "
                                       f"not reached after {timeout:.0f}s without a message")
                continue
            last_progress = time.monotonic()
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        eof_partition = msg.partition()
                        assert eof_partition is not None  # a partition-EOF event names its partition
                        at_end.add(eof_partition)
                        continue
                    raise ConnectionError(f"Kafka topic {topic!r}: {err}")
                at_end.discard(msg.partition())
                key = msg.key()
                if not key:
                    continue
                log_id, _, index = key.decode("utf-8", "replace").rpartition(":")
                slug = by_id.get(log_id)
                if slug is not None and index.isdigit():
                    found[slug].append(int(index))
                    messages[slug] += 1
    finally:
        consumer.close()
    return {slug: (np.unique(np.frombuffer(found[slug], dtype=np.int64)) if found[slug] else
                   np.array([], dtype=np.int64), messages[slug]) for slug in log_ids}
