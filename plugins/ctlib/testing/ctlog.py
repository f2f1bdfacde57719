"""A local RFC 6962 CT log server for tests, `make demo` and benchmarks.

`LogServer` hosts several `LocalCTLog`s on one ThreadingHTTPServer bound to 127.0.0.1;
each log lives under `/<slug>/` and answers the RFC 6962 section 4 read API
(`ct/v1/get-sth`, `get-entries`, `get-roots`, `get-sth-consistency`, `get-proof-by-hash`,
`get-entry-and-proof`) from a real Merkle tree with STHs signed by its own P-256 key.

Like a real log, entries appended by `grow` are served only once `publish` has signed
an STH covering them. Faults (`Faults`) are changeable while serving.

    python -m ctlib.testing.ctlog --logs 3 --port 8800 --log-list .run/log_list.json --rate 20

Everything here is safe to call from several threads at once.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ctlib.loglist import slugify
from ctlib.merkle import MerkleTree, leaf_hash
from ctlib.sth import SignedTreeHead, sign_sth
from ctlib.testing.certs import CertFactory, EntryType, GeneratedEntry

HOST = "127.0.0.1"  # never anything else: this server has no authentication at all
OPERATOR = "ct-airflow local"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_GROW_CHUNK = 64  # entries generated per state-lock acquisition: keeps serving responsive
_MAX_BACKLOG_S = 5.0  # a growth thread that fell behind catches up at most this many seconds
ENDPOINTS = frozenset(
    {
        "get-sth",
        "get-entries",
        "get-roots",
        "get-sth-consistency",
        "get-proof-by-hash",
        "get-entry-and-proof",
    }
)


@dataclass
class Faults:
    """Misbehaviour of one log, read at every request: mutate it while the server runs.

    The `*_every` knobs count the log's requests to `endpoints` (all of them when None),
    from 1: every Nth answers 429 (with `Retry-After: retry_after`), 503/500 (alternately),
    or a truncated JSON body; 0 turns a knob off, 1 makes every request fault.

    `malformed` indices are *logged* corrupted when appended (bad framing or bad DER, by
    index % 3): the tree hashes the corrupted bytes, so the log stays consistent and only a
    decoder notices. Set it before the entries exist (e.g. via `add_log(faults=...)`).
    `tampered` indices are served with one byte flipped: they decode, but no longer hash to
    the signed root, as from a log that lies.
    """

    cap: int = 1000
    http_429_every: int = 0
    retry_after: int = 1
    http_5xx_every: int = 0
    invalid_json_every: int = 0
    delay: float = 0.0
    malformed: frozenset[int] = frozenset()
    tampered: frozenset[int] = frozenset()
    endpoints: frozenset[str] | None = None


@dataclass(frozen=True)
class RequestCounts:
    """What a log has answered so far, by outcome."""

    requests: int
    ok: int
    throttled: int  # 429
    server_errors: int  # 500 and 503
    invalid_json: int
    client_errors: int  # 400 and 404
    entries_served: int
    by_endpoint: Mapping[str, int]


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, independent of the HTTP server."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


@dataclass
class _Counters:
    faultable: int = 0
    entries_served: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    endpoints: Counter[str] = field(default_factory=Counter)


class BadRequest(Exception):
    """The request cannot be answered; `status` is 400 or 404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _json(obj: Any) -> Answer:
    return Answer(200, json.dumps(obj, separators=(",", ":")).encode())


def _text(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, f"{message}\n".encode(), headers, "text/plain")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def derive_log_key(seed: int, description: str) -> ec.EllipticCurvePrivateKey:
    """A P-256 key fixed by (seed, description): a restarted log keeps its log_id."""
    digest = hashlib.sha256(f"ctlib.testing.ctlog:{seed}:{description}".encode()).digest()
    secret = int.from_bytes(digest, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(secret, ec.SECP256R1())


def corrupt_malformed(leaf_input: bytes, index: int) -> bytes:
    """The corrupted form a `malformed` entry is logged in, by index % 3:
    0 truncated to half, 1 unknown entry type 7, 2 certificate DER whose outer tag is wrong."""
    mode = index % 3
    if mode == 0:
        return leaf_input[: len(leaf_input) // 2]
    out = bytearray(leaf_input)
    if mode == 1:
        out[10:12] = b"\x00\x07"
    else:
        # x509: the certificate starts after version, type, timestamp, entry type and a
        # 3-byte length; precert: after the 32-byte issuer_key_hash too.
        out[15 if out[11] == 0 else 47] ^= 0xFF
    return bytes(out)


def _tamper(leaf_input: bytes) -> bytes:
    out = bytearray(leaf_input)
    out[-3] ^= 0x01  # inside the signature (x509) or last TBS byte: still decodes
    return bytes(out)


class LocalCTLog:
    """One log: its key, entries, Merkle tree, published STH, faults and request counters.

    `grow`, `submit`, `publish` and `answer` are safe to call concurrently; `tick` belongs
    to the one growth thread of the server hosting the log.
    """

    def __init__(
        self,
        description: str,
        *,
        seed: int = 0,
        faults: Faults | None = None,
        rate: float = 0.0,
        key: ec.EllipticCurvePrivateKey | None = None,
    ) -> None:
        self.description = description
        self.slug = slugify(description)
        if not self.slug:
            raise ValueError(f"log description {description!r} gives an empty slug")
        self.key = key or derive_log_key(seed, description)
        self.key_der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.log_id = hashlib.sha256(self.key_der).digest()
        self.faults = faults or Faults()
        self.rate = rate  # entries per second added by the server's growth thread
        self.created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self._factory = CertFactory(seed, sct_key=self.key, sct_log_id=self.log_id)
        self._leaves: list[bytes] = []
        self._extras: list[bytes] = []
        self._tree = MerkleTree()
        self._gen_lock = threading.Lock()  # factory and entry timestamps; taken before _lock
        self._lock = threading.Lock()  # entries, tree, STH, counters
        self._last_entry_ms = 0
        self._last_sth_ms = 0
        self._carry = 0.0
        self._last_tick: float | None = None
        self._counters = _Counters()
        self._sth = self.publish()  # the empty tree's STH

    # ----------------------------------------------------------------- state

    @property
    def log_id_b64(self) -> str:
        return _b64(self.log_id)

    @property
    def key_b64(self) -> str:
        return _b64(self.key_der)

    @property
    def size(self) -> int:
        """Entries appended, published or not."""
        with self._lock:
            return len(self._leaves)

    @property
    def sth(self) -> SignedTreeHead:
        """The STH last published: the log serves nothing beyond its tree size."""
        with self._lock:
            return self._sth

    @property
    def roots(self) -> tuple[bytes, ...]:
        """DER of the roots this log accepts (its get-roots)."""
        return tuple(root.cert_der for root in self._factory.pki.roots)

    def entry(self, index: int) -> tuple[bytes, bytes]:
        """(leaf_input, extra_data) as stored at `index` (published or not)."""
        with self._lock:
            return self._leaves[index], self._extras[index]

    def counts(self) -> RequestCounts:
        with self._lock:
            c = self._counters
            return RequestCounts(
                requests=sum(c.endpoints.values()),
                ok=c.outcomes["ok"],
                throttled=c.outcomes["throttled"],
                server_errors=c.outcomes["server_errors"],
                invalid_json=c.outcomes["invalid_json"],
                client_errors=c.outcomes["client_errors"],
                entries_served=c.entries_served,
                by_endpoint=dict(c.endpoints),
            )

    # ----------------------------------------------------------------- writing

    def _append(self, entries: Sequence[GeneratedEntry]) -> int:
        with self._lock:
            first = len(self._leaves)
            malformed = self.faults.malformed
            leaves = [
                corrupt_malformed(e.leaf_input, i) if i in malformed else e.leaf_input
                for i, e in enumerate(entries, first)
            ]
            self._leaves.extend(leaves)
            self._extras.extend(e.extra_data for e in entries)
            self._tree.extend(leaf_hash(leaf) for leaf in leaves)
            return first

    def _timestamp(self) -> int:
        # Entry timestamps never go backwards, whatever the wall clock does.
        self._last_entry_ms = max(_now_ms(), self._last_entry_ms)
        return self._last_entry_ms

    def grow(self, n: int) -> int:
        """Append `n` generated entries (not yet published); return the new size."""
        with self._gen_lock:
            done = 0
            while done < n:
                count = min(_GROW_CHUNK, n - done)
                batch = [self._factory.next_entry(self._timestamp()) for _ in range(count)]
                self._append(batch)
                done += len(batch)
        return self.size

    def submit(self, names: Sequence[str], *, entry_type: EntryType | None = None) -> int:
        """Append one certificate for exactly `names` (not yet published); return its index."""
        with self._gen_lock:
            entry = self._factory.next_entry(self._timestamp(), names=names, entry_type=entry_type)
            return self._append([entry])

    def publish(self) -> SignedTreeHead:
        """Sign and publish an STH over every entry appended so far."""
        with self._gen_lock, self._lock:
            size = len(self._leaves)
            # STH timestamps strictly increase and are never older than an entry they cover.
            timestamp = max(_now_ms(), self._last_entry_ms, self._last_sth_ms + 1)
            self._sth = sign_sth(size, timestamp, self._tree.root(size), self.key)
            self._last_sth_ms = timestamp
            return self._sth

    def tick(self, now: float | None = None) -> None:
        """Grow by `rate` times the time since the last tick, then publish (if rate > 0)."""
        now = time.monotonic() if now is None else now
        last, self._last_tick = self._last_tick, now
        if self.rate <= 0 or last is None:
            return
        due = self.rate * min(now - last, _MAX_BACKLOG_S) + self._carry
        n = int(due)
        self._carry = due - n
        self.grow(n)
        self.publish()

    # ----------------------------------------------------------------- serving

    def answer(self, endpoint: str, query: Mapping[str, str]) -> Answer:
        """The answer to `GET ct/v1/<endpoint>?<query>`, faults included (may sleep)."""
        faults = self.faults
        scope = ENDPOINTS if faults.endpoints is None else faults.endpoints
        faultable = endpoint in ENDPOINTS and endpoint in scope
        with self._lock:
            self._counters.endpoints[endpoint] += 1
            if faultable:
                self._counters.faultable += 1
            n = self._counters.faultable
        if faultable and faults.delay > 0:
            time.sleep(faults.delay)
        if faultable and faults.http_429_every and n % faults.http_429_every == 0:
            retry_after = (("Retry-After", str(faults.retry_after)),)
            return self._outcome("throttled", _text(429, "rate limited", retry_after))
        if faultable and faults.http_5xx_every and n % faults.http_5xx_every == 0:
            status = 503 if (n // faults.http_5xx_every) % 2 else 500
            return self._outcome("server_errors", _text(status, "unavailable"))
        try:
            result, served = self._dispatch(endpoint, query)
        except BadRequest as err:
            return self._outcome("client_errors", _text(err.status, str(err)))
        if faultable and faults.invalid_json_every and n % faults.invalid_json_every == 0:
            half = result.body[: max(1, len(result.body) // 2)]
            return self._outcome("invalid_json", Answer(200, half))
        with self._lock:
            self._counters.entries_served += served
        return self._outcome("ok", result)

    def _outcome(self, what: str, answer: Answer) -> Answer:
        with self._lock:
            self._counters.outcomes[what] += 1
        return answer

    def _dispatch(self, endpoint: str, q: Mapping[str, str]) -> tuple[Answer, int]:
        sth = self.sth
        if endpoint == "get-sth":
            return _json(sth.to_json()), 0
        if endpoint == "get-roots":
            return _json({"certificates": [_b64(der) for der in self.roots]}), 0
        if endpoint == "get-entries":
            start, end = _int(q, "start"), _int(q, "end")
            if end < start:
                raise BadRequest(f"end {end} is before start {start}")
            if start >= sth.tree_size:
                raise BadRequest(f"start {start} is not below the tree size {sth.tree_size}")
            end = min(end, sth.tree_size - 1, start + max(1, self.faults.cap) - 1)
            with self._lock:
                leaves = self._leaves[start : end + 1]
                extras = self._extras[start : end + 1]
            tampered = self.faults.tampered
            entries = [
                {
                    "leaf_input": _b64(_tamper(leaf) if i in tampered else leaf),
                    "extra_data": _b64(extra),
                }
                for i, (leaf, extra) in enumerate(zip(leaves, extras), start)
            ]
            return _json({"entries": entries}), len(entries)
        if endpoint == "get-sth-consistency":
            first, second = _int(q, "first"), _int(q, "second")
            if not first <= second <= sth.tree_size:
                raise BadRequest(
                    f"need first <= second <= {sth.tree_size}, got {first} and {second}"
                )
            with self._lock:
                proof = self._tree.consistency_proof(first, second)
            return _json({"consistency": [_b64(h) for h in proof]}), 0
        if endpoint == "get-proof-by-hash":
            size = self._tree_size(q, sth)
            raw = q.get("hash", "").replace(" ", "+")  # an unescaped '+' arrives as a space
            try:
                wanted = base64.b64decode(raw, validate=True)
            except ValueError:
                raise BadRequest("hash is not base64") from None
            with self._lock:
                index = self._tree.index_of(wanted)
                if index is None or index >= size:
                    raise BadRequest(f"no leaf with this hash in the tree of size {size}", 404)
                proof = self._tree.inclusion_proof(index, size)
            return _json({"leaf_index": index, "audit_path": [_b64(h) for h in proof]}), 0
        if endpoint == "get-entry-and-proof":
            index, size = _int(q, "leaf_index"), self._tree_size(q, sth)
            if index >= size:
                raise BadRequest(f"leaf_index {index} is not below tree_size {size}")
            with self._lock:
                leaf, extra = self._leaves[index], self._extras[index]
                proof = self._tree.inclusion_proof(index, size)
            if index in self.faults.tampered:
                leaf = _tamper(leaf)
            body = {
                "leaf_input": _b64(leaf),
                "extra_data": _b64(extra),
                "audit_path": [_b64(h) for h in proof],
            }
            return _json(body), 1
        raise BadRequest(f"unknown endpoint {endpoint!r}", 404)

    @staticmethod
    def _tree_size(q: Mapping[str, str], sth: SignedTreeHead) -> int:
        size = _int(q, "tree_size")
        if not 1 <= size <= sth.tree_size:
            raise BadRequest(f"tree_size {size} is not in [1, {sth.tree_size}]")
        return size


def _int(q: Mapping[str, str], name: str) -> int:
    raw = q.get(name)
    if raw is None:
        raise BadRequest(f"missing parameter {name}")
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(f"parameter {name}={raw!r} is not a non-negative integer")
    return int(raw)


# --------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    disable_nagle_algorithm = True  # else headers and body wait ~40 ms on delayed ACKs
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (the http.server naming)
        parts = urlsplit(self.path)
        slug, sep, rest = parts.path.lstrip("/").partition("/ct/v1/")
        log = self.server.logs.get(slug) if sep else None
        if log is None or "/" in rest:
            self._send(_text(404, "not found"))
            return
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self._send(log.answer(rest, query))

    def _send(self, answer: Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away (a timeout): nothing to do

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # a benchmark makes thousands of requests: no access log on stderr


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    logs: dict[str, LocalCTLog]


class LogServer:
    """Several local logs behind one HTTP server on 127.0.0.1 (`port=0`: a free port).

    The port is bound at construction, so URLs and the log list are known before
    `start()`. Logs with `rate > 0` grow and publish about every `publish_interval`
    seconds while the server runs; logs with rate 0 change only through their methods.
    """

    def __init__(self, port: int = 0, *, publish_interval: float = 1.0) -> None:
        self._httpd = _HTTPServer((HOST, port), _Handler)
        self._httpd.logs = {}
        self._logs: list[LocalCTLog] = []
        self._lock = threading.Lock()
        self._interval = publish_interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def logs(self) -> tuple[LocalCTLog, ...]:
        with self._lock:
            return tuple(self._logs)

    def add_log(
        self,
        name: str,
        *,
        seed: int | None = None,
        initial_size: int = 0,
        rate: float = 0.0,
        faults: Faults | None = None,
    ) -> LocalCTLog:
        """Create, fill (`initial_size` entries, published) and host a log named `name`.

        `seed` defaults to the log's position (1, 2, ...), so logs differ. Raises
        ValueError if another log already has the same slug.
        """
        with self._lock:
            position = len(self._logs) + 1
        log = LocalCTLog(name, seed=position if seed is None else seed, faults=faults, rate=rate)
        if initial_size:
            log.grow(initial_size)
        log.publish()
        with self._lock:
            if log.slug in self._httpd.logs:
                raise ValueError(f"a log with slug {log.slug!r} already exists")
            self._httpd.logs[log.slug] = log
            self._logs.append(log)
        return log

    def url_of(self, log: LocalCTLog) -> str:
        """The log's RFC 6962 base URL, ending with '/'."""
        return f"http://{HOST}:{self.port}/{log.slug}/"

    def start(self) -> LogServer:
        """Serve and grow in background threads; idempotent. Raises RuntimeError after stop()."""
        if self._threads:
            return self
        if self._closed:
            raise RuntimeError("this LogServer was stopped; make a new one")
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="ctlog-http",
                daemon=True,
            ),
            threading.Thread(target=self._grow_forever, name="ctlog-growth", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and growing, and close the socket (for good); idempotent."""
        self._stop.set()
        if self._threads:
            self._httpd.shutdown()
            for thread in self._threads:
                thread.join()
            self._threads = []
        if not self._closed:
            self._closed = True
            self._httpd.server_close()

    def __enter__(self) -> LogServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _grow_forever(self) -> None:
        # A log's first tick starts its clock; later ticks grow it by rate x elapsed time.
        next_tick = time.monotonic()
        while True:
            for log in self.logs:
                log.tick()
            # Keep the cadence even when growing took a good part of the interval.
            next_tick = max(next_tick + self._interval, time.monotonic())
            if self._stop.wait(next_tick - time.monotonic()):
                return

    def log_list(self) -> dict[str, Any]:
        """A Google log list v3 describing this server's logs, all `usable`."""
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        # Generous: certificates expire 90 days after issuance, whatever the clock says.
        start = dt.datetime(now.year - 1, 1, 1, tzinfo=dt.timezone.utc)
        end = dt.datetime(now.year + 2, 1, 1, tzinfo=dt.timezone.utc)
        logs = [
            {
                "description": log.description,
                "log_id": log.log_id_b64,
                "key": log.key_b64,
                "url": self.url_of(log),
                "mmd": 86400,
                "state": {"usable": {"timestamp": _iso(log.created)}},
                "temporal_interval": {"start_inclusive": _iso(start), "end_exclusive": _iso(end)},
            }
            for log in self.logs
        ]
        return {
            "version": "1.0",
            "log_list_timestamp": _iso(now),
            "operators": [
                {
                    "name": OPERATOR,
                    "email": ["ct-airflow-local@example.org"],
                    "logs": logs,
                    "tiled_logs": [],
                }
            ],
        }

    def write_log_list(self, path: str | Path) -> Path:
        """Write `log_list()` to `path` atomically (readers never see half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.log_list(), indent=2) + "\n")
        tmp.replace(path)
        return path


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.testing.ctlog", description=(__doc__ or "").split("\n")[0]
    )
    add = parser.add_argument
    add("--logs", type=int, default=1, help="number of logs (default 1)")
    add("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    add("--log-list", type=Path, required=True, help="where to write the log list JSON")
    add("--initial-size", type=int, default=0, help="entries per log at start")
    add("--rate", type=float, default=0.0, help="entries per second per log")
    add("--cap", type=int, default=Faults.cap, help="most entries per get-entries answer")
    add("--seed", type=int, default=0, help="log i (from 1) uses seed + i")
    args = parser.parse_args(argv)
    if args.logs < 1 or args.initial_size < 0 or args.rate < 0 or args.cap < 1:
        parser.error("--logs and --cap must be >= 1, --initial-size and --rate >= 0")

    stop = threading.Event()
    # SIGTERM (docker, make) must stop as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = LogServer(args.port)
    for i in range(1, args.logs + 1):
        server.add_log(
            f"Local Test Log {i}",
            seed=args.seed + i,
            initial_size=args.initial_size,
            rate=args.rate,
            faults=Faults(cap=args.cap),
        )
    server.write_log_list(args.log_list)
    with server:
        for log in server.logs:
            print(f"{log.description} {server.url_of(log)}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
