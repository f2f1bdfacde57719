"""`python3 -m ctlib.deploy.guard`: the check every Airflow container of docker-compose.yaml
runs before the image's entrypoint, as `sh -c 'python3 -m ctlib.deploy.guard && exec "$@"'`
(the shell scopes PYTHONPATH to the check and execs the entrypoint only when it passed).

Reads the container's environment (AIRFLOW__API_AUTH__JWT_SECRET, AIRFLOW__API__SECRET_KEY,
AIRFLOW__CORE__FERNET_KEY; and _AIRFLOW_WWW_USER_PASSWORD where _AIRFLOW_WWW_USER_CREATE is
true: airflow-init). If any is refused (ctlib.deploy.policy) it prints why on stderr, naming the
variables and how to set them but not their values, and exits 78 (EX_CONFIG) without running
anything. Otherwise it exits 0, printing nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from ctlib.deploy.policy import ADMIN_PASSWORD, SECRETS, Problem, Secret, problems, report

EX_CONFIG = 78


def guarded(environ: Mapping[str, str]) -> tuple[Secret, ...]:
    """The secrets this container needs: the admin's password only where airflow-init creates
    the admin user."""
    creates_admin = environ.get("_AIRFLOW_WWW_USER_CREATE", "").strip().lower() in ("true", "1", "yes")
    return tuple(s for s in SECRETS if s is not ADMIN_PASSWORD or creates_admin)


def refused(environ: Mapping[str, str]) -> list[Problem]:
    """The problems of this container's secrets (empty: it may start)."""
    return problems(environ, guarded(environ), key=lambda s: s.container_env)


def main(environ: Mapping[str, str]) -> int:
    """0 if this container may start, else EX_CONFIG after the report on stderr."""
    found = refused(environ)
    if not found:
        return 0
    header = (f"ct-airflow: refusing to start: {len(found)} secret(s) not safe to run with "
              "(README, 'Production with docker compose'):")
    sys.stderr.write(report(found, header))
    return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main(os.environ))
