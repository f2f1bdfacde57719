"""Deployment checks for docker-compose.yaml: the secrets every Airflow container needs.

    policy    which secrets, and what makes a value unsafe (pure: values -> problems)
    envfile   the .env file docker compose reads: parse, add lines, write it mode 0600
    secrets   `python -m ctlib.deploy.secrets init | check` (`make secrets`): generation
    guard     `python3 -m ctlib.deploy.guard`, run by every Airflow container before the
              image's entrypoint: exits non-zero, naming the variable, on an unsafe secret

Standard library only, and no other ctlib module: the guard runs inside the stock Airflow
image before it installs anything, and `make secrets` runs on a host without the venv.
"""
