"""A local HTTP server served by a thread: what the fake threat-intel APIs and the notification
receivers share (port, URL, start, stop, context manager), and `serve_until_stopped`, the
loop of their command lines."""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Iterable, Mapping
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"  # never anything else: these servers answer anyone


class LocalHttpServer:
    """Serves `httpd` (bound to HOST; port 0 gives a free one) in a daemon thread named
    `thread_name` between `start()` and `stop()`, or as a context manager."""

    thread_name = "local-http"

    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self._httpd = httpd
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name=self.thread_name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def serve_until_stopped(servers: Iterable[LocalHttpServer], banner: Iterable[str],
                        env: Iterable[Mapping[str, str]] = ()) -> None:
    """Runs `servers` until SIGTERM or Ctrl-C (make demo / make stop stop them with SIGTERM),
    first printing the `banner` lines and each `NAME=value` of `env`, shell-quoted, so a
    script can `eval` them."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = [server.start() for server in servers]
    try:
        for line in banner:
            print(line, flush=True)
        for variables in env:
            for name, value in variables.items():
                print(f"{name}={shlex.quote(value)}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for server in started:
            server.stop()
