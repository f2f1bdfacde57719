"""`python -m ctlib.deploy.secrets init | check` (`make secrets` runs init): the secrets of
docker-compose.yaml in the .env file docker compose reads.

init   writes each missing secret (and AIRFLOW_UID, the user the containers write files as)
       to .env, mode 0600, keeping every value already there; prints the names it generated,
       never the values; idempotent (a second run changes nothing). Exit 1 when a value it
       kept is refused (say which and why: remove the line and run it again).
check  exit 1, naming the variables, when a secret in .env or the environment (which docker
       compose prefers) is unset or refused.

Run from the project folder with PYTHONPATH=plugins; any Python 3.9+ without packages will do.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ctlib.deploy import envfile
from ctlib.deploy.policy import ADMIN_USERNAME, ENV_FILE, SECRETS, Secret, check, problems, report

UID = "AIRFLOW_UID"


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


_GENERATORS: dict[str, Callable[[], str]] = {
    "token": lambda: secrets.token_urlsafe(64),
    "fernet": _fernet_key,
    "password": lambda: secrets.token_urlsafe(18),
}


def new_value(secret: Secret, username: str | None = None) -> str:
    """A fresh random value for `secret`, one `check` accepts (drawn again in the rare case a
    random one happens to spell a placeholder word)."""
    while True:
        value = _GENERATORS[secret.kind]()
        if check(secret, value, username=username) is None:
            return value


def missing_values(current: Mapping[str, str], uid: int) -> dict[str, str]:
    """{name: new value} for AIRFLOW_UID (as `uid`) and each secret that `current` (the .env's
    values) lacks or leaves empty; a value already set, even a refused one, is never replaced."""
    new: dict[str, str] = {}
    if not current.get(UID, "").strip():
        new[UID] = str(uid)
    for secret in SECRETS:
        if not current.get(secret.name, "").strip():
            new[secret.name] = new_value(secret, current.get(ADMIN_USERNAME))
    return new


def init(path: Path, uid: int, out: Callable[[str], None] = print) -> int:
    """Fill `path` (see the module doc); 0, or 1 when a value kept there is refused."""
    text = envfile.read(path)
    new = missing_values(envfile.parse(text), uid)
    updated = envfile.with_values(text, new, comment="written by `make secrets` (python -m ctlib.deploy.secrets init)")
    if updated != text or not path.exists():
        envfile.write_private(path, updated)
        for name in new:
            out(f"{path}: generated {name}" if name != UID else f"{path}: set {UID}={new[UID]} (your user id)")
    else:
        was = envfile.make_private(path)
        if was is not None:
            out(f"{path}: made readable by its owner only (it was mode {was:o})")
        out(f"{path}: every secret is set, nothing generated")
    refused = problems(envfile.parse(updated))
    if refused:
        out(report(refused, f"{path}: kept as they are, but refused at start (remove the line and run this again):").rstrip())
        return 1
    if any(s.name in new for s in SECRETS if s.kind == "password"):
        out(f"the admin's password is in {path} (_AIRFLOW_WWW_USER_PASSWORD)")
    return 0


def check_command(path: Path, environ: Mapping[str, str], out: Callable[[str], None] = print) -> int:
    """0 if every secret is acceptable as docker compose would substitute it (the environment
    over `path`), else 1 with the report."""
    values = {**envfile.parse(envfile.read(path)), **environ}
    refused = problems(values)
    if refused:
        out(report(refused, f"docker-compose.yaml would not start: {len(refused)} secret(s) refused").rstrip())
        return 1
    out(f"every secret is set and acceptable ({', '.join(s.name for s in SECRETS)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ctlib.deploy.secrets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("init", "check"))
    parser.add_argument("--env-file", type=Path, default=Path(ENV_FILE), help=f"default: {ENV_FILE}")
    args = parser.parse_args(argv)
    if args.command == "init":
        return init(args.env_file, os.getuid())
    return check_command(args.env_file, os.environ)


if __name__ == "__main__":
    sys.exit(main())
