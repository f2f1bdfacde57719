"""A local S3-compatible server for tests and benchmarks: moto's standalone server
(`moto_server`, from the PyPI package `moto[server]` in requirements-dev.txt) on 127.0.0.1.

    with LocalS3() as s3:
        s3.create_bucket("lake")
        os.environ.update(s3.env())          # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
        lake = Lake.open("s3://lake/prefix")

Memory-only: everything is gone when it stops. `env()` gives the standard AWS variables
the lake reads (ctlib.lake.files.Lake.open); the keys are moto's test keys, which it
accepts whatever they are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from ctlib.localsvc import free_port, port_accepts

HOST = "127.0.0.1"
REGION = "us-east-1"
STARTUP_TIMEOUT = 30.0


class S3ServerError(RuntimeError):
    """The local S3 server could not be found or started."""


def moto_server_binary() -> str:
    """`moto_server` next to this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    if beside.exists():
        return str(beside)
    found = shutil.which("moto_server")
    if not found:
        raise S3ServerError("moto_server not found: install requirements-dev.txt (moto[server])")
    return found


class LocalS3:
    """moto_server on HOST and a free port (or `port`), its output to `log_path` (else
    discarded), between `start()` and `stop()` or as a context manager."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port(HOST)
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any key
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def start(self) -> Self:
        if self._proc is not None:
            return self
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 (closed in stop)
        self._proc = subprocess.Popen(
            [moto_server_binary(), "-H", HOST, "-p", str(self.port)],
            stdout=self._log or subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not port_accepts(self.port, HOST):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise S3ServerError(f"moto_server did not start on {HOST}:{self.port}")
            time.sleep(0.1)
        return self

    def create_bucket(self, bucket: str) -> None:
        """Create `bucket` (nothing if it exists)."""
        import pyarrow.fs as pafs

        filesystem = pafs.S3FileSystem(endpoint_override=self.endpoint, access_key="testing", secret_key="testing",
                                       region=REGION, scheme="http", allow_bucket_creation=True)
        filesystem.create_dir(bucket)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
