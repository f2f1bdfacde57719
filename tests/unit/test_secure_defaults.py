"""docker-compose.yaml's secure defaults (ctlib.deploy): no Airflow container starts with an
unset, known or malformed secret; `make secrets` writes the missing ones to .env; published
ports listen on 127.0.0.1 unless CT_BIND_ADDRESS says otherwise.

The refusal runs for real: the entrypoint docker-compose.yaml gives the Airflow containers is
run as a subprocess (with this checkout's plugins/ in place of /opt/airflow/plugins and
`echo started` in place of the image's entrypoint), under a Python without site-packages, as
the stock image runs it before installing anything. `docker compose` itself is not run.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctlib.deploy import envfile, guard, policy
from ctlib.deploy import secrets as deploy_secrets
from ctlib.deploy.policy import ADMIN_PASSWORD, API_SECRET_KEY, FERNET_KEY, JWT_SECRET, SECRETS
from tests.paths import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yaml"
PLUGINS = PROJECT_ROOT / "plugins"
OLD_JWT_DEFAULT = "change-me-to-a-long-random-string"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                    "airflow-triggerer", "airflow-init"}
IMAGE_ENTRYPOINT = ["/usr/bin/dumb-init", "--", "/entrypoint"]


def _fernet() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def good_env_values() -> dict[str, str]:
    """Fresh acceptable values, by .env name (generated per test: nothing real is committed)."""
    return {
        JWT_SECRET.name: secrets.token_urlsafe(64),
        API_SECRET_KEY.name: secrets.token_urlsafe(64),
        FERNET_KEY.name: _fernet(),
        ADMIN_PASSWORD.name: secrets.token_urlsafe(18),
    }


def container_env(values: dict[str, str], *, init: bool = False) -> dict[str, str]:
    """The environment docker compose gives an Airflow container for `values` (.env names)."""
    env = {s.container_env: values[s.name] for s in SECRETS if s is not ADMIN_PASSWORD and s.name in values}
    if init:
        env["_AIRFLOW_WWW_USER_CREATE"] = "true"
        env["_AIRFLOW_WWW_USER_USERNAME"] = "airflow"
        if ADMIN_PASSWORD.name in values:
            env[ADMIN_PASSWORD.container_env] = values[ADMIN_PASSWORD.name]
    return env


# --- the policy: values -> problems -------------------------------------------------------

def test_generated_values_pass() -> None:
    assert policy.problems(good_env_values()) == []
    two_keys = {**good_env_values(), FERNET_KEY.name: f"{_fernet()},{_fernet()}"}  # a key rotation
    assert policy.problems(two_keys) == []


BAD_TOKENS = [
    (None, "is not set"),
    ("", "is empty"),
    ("   ", "is empty"),
    (OLD_JWT_DEFAULT, "well-known"),
    ("airflow", "well-known"),
    ("Airflow123!", "well-known"),
    ("admin", "well-known"),
    ("changeme", "well-known"),
    ("change-me-in-prod-" + "x" * 60, "well-known"),
    ("password", "well-known"),
    ("secret", "well-known"),
    ("your-secret-key-" + "k" * 60, "well-known"),
    ("temporary_key", "well-known"),
    ("airflow_jwt_secret", "well-known"),
    ("a1B2" * 8, "too short"),  # 32 characters: HS512 wants 64 bytes
    ("ab" * 40, "not random"),
]


@pytest.mark.parametrize(("value", "reason"), BAD_TOKENS)
@pytest.mark.parametrize("secret", [JWT_SECRET, API_SECRET_KEY], ids=lambda s: s.name)
def test_bad_tokens_are_refused(secret: policy.Secret, value: str | None, reason: str) -> None:
    values = good_env_values()
    if value is None:
        del values[secret.name]
    else:
        values[secret.name] = value
    found = policy.problems(values)
    assert [p.secret for p in found] == [secret]
    assert reason in found[0].reason
    message = found[0].message()
    assert message.startswith(f"{secret.name} ({secret.container_env} in the containers)")
    assert "make secrets" in message and secret.generate_command in message


def test_messages_never_echo_the_value() -> None:
    short = secrets.token_urlsafe(20)
    bad_fernet = secrets.token_urlsafe(30)
    values = {JWT_SECRET.name: OLD_JWT_DEFAULT, API_SECRET_KEY.name: short,
              FERNET_KEY.name: bad_fernet, ADMIN_PASSWORD.name: "airflow"}
    found = policy.problems(values)
    assert [p.secret for p in found] == list(SECRETS)
    text = policy.report(found, "header")
    for value in (OLD_JWT_DEFAULT, short, bad_fernet, short[:12], bad_fernet[:12]):
        assert value not in text


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: "", "is empty"),
    (lambda: secrets.token_urlsafe(64), "is not a Fernet key"),
    (lambda: base64.b64encode(b"\xfb\xff" * 16).decode(), "is not a Fernet key"),  # standard base64: '+', '/'
    (lambda: base64.urlsafe_b64encode(os.urandom(31)).decode(), "is not a Fernet key"),  # 31 bytes
    (lambda: _fernet() + " ", "is not a Fernet key"),
    (lambda: base64.urlsafe_b64encode(bytes(32)).decode(), "not a random Fernet key"),  # all zeros
    (lambda: f"{_fernet()},{secrets.token_urlsafe(32)}", "(key 2 of 2)"),
    (lambda: f"{_fernet()}, {_fernet()}", "(key 2 of 2)"),  # Airflow does not strip the keys
])
def test_bad_fernet_keys_are_refused(make: Any, reason: str) -> None:
    found = policy.problems({**good_env_values(), FERNET_KEY.name: make()})
    assert [p.secret for p in found] == [FERNET_KEY]
    assert reason in found[0].reason


def test_published_fernet_keys_are_refused_by_digest() -> None:
    published = _fernet()  # stands for a key from a tutorial: only its digest is listed
    digests = frozenset({hashlib.sha256(published.encode()).hexdigest()})
    found = policy.problems({**good_env_values(), FERNET_KEY.name: published}, published=digests)
    assert [(p.secret, "well-known" in p.reason) for p in found] == [(FERNET_KEY, True)]
    assert len(policy.PUBLISHED_DIGESTS) >= 2 and all(re.fullmatch(r"[0-9a-f]{64}", d) for d in policy.PUBLISHED_DIGESTS)


@pytest.mark.parametrize(("password", "username", "reason"), [
    ("airflow", None, "well-known"),
    ("admin", None, "well-known"),
    ("Password1234", None, "well-known"),
    ("s3cr3t", None, "too short"),
    ("ctmonitor-ops-2026", "ctmonitor-ops-2026", "user name"),
    ("zzzzyyyyzzzzyyyy", None, "not random"),
])
def test_bad_admin_passwords_are_refused(password: str, username: str | None, reason: str) -> None:
    values = {**good_env_values(), ADMIN_PASSWORD.name: password}
    if username:
        values[policy.ADMIN_USERNAME] = username
    found = policy.problems(values)
    assert [p.secret for p in found] == [ADMIN_PASSWORD]
    assert reason in found[0].reason


# --- generation: .env ---------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_every_missing_secret_once(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    printed: list[str] = []
    assert deploy_secrets.init(path, uid=4242, out=printed.append) == 0
    values = envfile.parse(path.read_text())
    assert set(values) == {"AIRFLOW_UID", *(s.name for s in SECRETS)}
    assert values["AIRFLOW_UID"] == "4242"
    assert policy.problems(values) == []
    assert _mode(path) == 0o600
    said = "\n".join(printed)
    for secret in SECRETS:
        assert f"generated {secret.name}" in said
        assert values[secret.name] not in said  # names, never values

    before = path.read_bytes()
    printed.clear()
    assert deploy_secrets.init(path, uid=1, out=printed.append) == 0  # idempotent
    assert path.read_bytes() == before
    assert "nothing generated" in "\n".join(printed) and "generated AIRFLOW" not in "\n".join(printed)


def test_init_keeps_the_operators_values(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    mine = secrets.token_urlsafe(64)
    original = (f"# my settings\nCT_CONTACT=ops@example.org\nexport AIRFLOW_JWT_SECRET='{mine}'\n"
                f"AIRFLOW_FERNET_KEY=\nAIRFLOW_UID=1000")  # an empty key, no final newline
    path.write_text(original)
    path.chmod(0o644)
    printed: list[str] = []
    assert deploy_secrets.init(path, uid=4242, out=printed.append) == 0
    text = path.read_text()
    assert text.startswith(f"# my settings\nCT_CONTACT=ops@example.org\nexport AIRFLOW_JWT_SECRET='{mine}'\n")
    values = envfile.parse(text)
    assert values["AIRFLOW_JWT_SECRET"] == mine and values["AIRFLOW_UID"] == "1000"
    assert re.search(r"^AIRFLOW_FERNET_KEY=[A-Za-z0-9_-]{43}=$", text, re.M)  # filled where it stood
    assert text.count("AIRFLOW_FERNET_KEY=") == 1
    assert policy.problems(values) == []
    assert _mode(path) == 0o600
    said = "\n".join(printed)
    assert "generated AIRFLOW_FERNET_KEY" in said and "generated AIRFLOW_JWT_SECRET" not in said
    assert "AIRFLOW_UID" not in said


def test_init_keeps_a_refused_value_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"AIRFLOW_JWT_SECRET={OLD_JWT_DEFAULT}\n")
    printed: list[str] = []
    assert deploy_secrets.init(path, uid=4242, out=printed.append) == 1
    assert envfile.parse(path.read_text())["AIRFLOW_JWT_SECRET"] == OLD_JWT_DEFAULT
    said = "\n".join(printed)
    assert "AIRFLOW_JWT_SECRET" in said and "remove the line" in said and OLD_JWT_DEFAULT not in said


def test_an_existing_env_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    deploy_secrets.init(path, uid=4242, out=lambda _: None)
    path.chmod(0o644)
    printed: list[str] = []
    assert deploy_secrets.init(path, uid=4242, out=printed.append) == 0
    assert _mode(path) == 0o600 and "mode 644" in "\n".join(printed)


def test_check_command_reads_env_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    deploy_secrets.init(path, uid=4242, out=lambda _: None)
    assert deploy_secrets.check_command(path, {}, out=lambda _: None) == 0
    printed: list[str] = []
    # docker compose prefers the shell's environment to .env: so does the check
    assert deploy_secrets.check_command(path, {"AIRFLOW_FERNET_KEY": "changeme"}, out=printed.append) == 1
    assert "AIRFLOW_FERNET_KEY" in printed[0] and "AIRFLOW_JWT_SECRET" not in printed[0]


def test_make_secrets_runs_without_the_venv(tmp_path: Path) -> None:
    """The Makefile's target, run as make runs it (here with a Python that has no site-packages)."""
    target = (PROJECT_ROOT / "Makefile").read_text().split("\nsecrets:\n", 1)[1].splitlines()[0].strip()
    assert target == "PYTHONPATH=plugins $(PYTHON) -m ctlib.deploy.secrets init"
    done = subprocess.run([sys.executable, "-S", "-m", "ctlib.deploy.secrets", "init"], cwd=tmp_path,
                          env={"PYTHONPATH": str(PLUGINS), "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "generated AIRFLOW_JWT_SECRET" in done.stdout
    assert _mode(tmp_path / ".env") == 0o600


def test_env_file_is_git_ignored() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=PROJECT_ROOT, timeout=30)
    assert ignored.returncode == 0


# --- the entrypoint, as docker compose runs it ---------------------------------------------

def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _local(argument: str) -> str:
    """An entrypoint argument as docker compose passes it ($$ is a literal $), run here: this
    checkout's plugins/ in place of the image's."""
    return argument.replace("$$", "$").replace("/opt/airflow/plugins", str(PLUGINS))


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose `python3` is this interpreter run with -S: the standard library only, as in
    the stock image before its pip step."""
    folder = tmp_path_factory.mktemp("bare-python3")
    (folder / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    (folder / "python3").chmod(0o755)
    return f"{folder}:/usr/bin:/bin"


def run_entrypoint(env: dict[str, str], command: list[str], path: str) -> subprocess.CompletedProcess[str]:
    """The Airflow containers' entrypoint with `env` (and PATH `path`), wrapping `command` in
    place of the image's entrypoint."""
    entrypoint = _compose()["x-airflow-common"]["entrypoint"]
    assert entrypoint[-3:] == IMAGE_ENTRYPOINT
    return subprocess.run([_local(a) for a in entrypoint[:-3]] + command, env={**env, "PATH": path},
                          capture_output=True, text=True, timeout=60)


def test_entrypoint_starts_the_command_with_good_secrets(bare_path: str) -> None:
    done = run_entrypoint(container_env(good_env_values()), ["echo", "started", "api-server"], bare_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "started api-server\n", "")
    done = run_entrypoint(container_env(good_env_values(), init=True), ["echo", "started"], bare_path)
    assert (done.returncode, done.stdout) == (0, "started\n")


@pytest.mark.parametrize(("secret", "value"), [
    (JWT_SECRET, OLD_JWT_DEFAULT),
    (JWT_SECRET, "airflow"),
    (API_SECRET_KEY, ""),
    (FERNET_KEY, ""),
    (FERNET_KEY, "not-a-fernet-key-at-all-but-long-enough-0123456789"),
])
def test_entrypoint_refuses_a_bad_secret(secret: policy.Secret, value: str, bare_path: str) -> None:
    values = {**good_env_values(), secret.name: value}
    done = run_entrypoint(container_env(values), ["echo", "started"], bare_path)
    assert done.returncode == guard.EX_CONFIG
    assert "started" not in done.stdout
    assert "refusing to start" in done.stderr and secret.name in done.stderr and secret.container_env in done.stderr
    assert "make secrets" in done.stderr
    if len(value) > 8:
        assert value not in done.stderr


def test_entrypoint_refuses_an_unset_secret_and_init_checks_the_admin_password(bare_path: str) -> None:
    values = good_env_values()
    del values[API_SECRET_KEY.name]
    done = run_entrypoint(container_env(values), ["echo", "started"], bare_path)
    assert done.returncode == guard.EX_CONFIG and "AIRFLOW_API_SECRET_KEY" in done.stderr and "is not set" in done.stderr

    weak = {**good_env_values(), ADMIN_PASSWORD.name: "airflow"}
    assert run_entrypoint(container_env(weak), ["echo", "started"], bare_path).returncode == 0  # no admin created there
    done = run_entrypoint(container_env(weak, init=True), ["echo", "started"], bare_path)
    assert done.returncode == guard.EX_CONFIG and "_AIRFLOW_WWW_USER_PASSWORD" in done.stderr


def test_init_script_runs_the_check_before_the_image_entrypoint(bare_path: str) -> None:
    """airflow-init keeps its bash entrypoint: its script checks first and stops on a refusal."""
    init = _compose()["services"]["airflow-init"]
    assert init["entrypoint"] == "/bin/bash"
    script = init["command"][1]
    lines = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert lines[0] == "PYTHONPATH=/opt/airflow/plugins python3 -m ctlib.deploy.guard || exit"
    assert script.index("ctlib.deploy.guard") < script.index("exec /entrypoint")
    # run that first line as bash would, then a marker: a refusal stops the script
    check = ["bash", "-c", _local(lines[0]) + "\necho after-check"]
    env = {**container_env({**good_env_values(), ADMIN_PASSWORD.name: "admin"}, init=True),
           "PATH": bare_path}
    done = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == guard.EX_CONFIG and "after-check" not in done.stdout
    env[ADMIN_PASSWORD.container_env] = secrets.token_urlsafe(18)
    done = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "after-check\n")


def test_deploy_imports_only_the_standard_library() -> None:
    """The check runs in the stock image before its pip step, and `make secrets` on bare hosts."""
    for path in sorted((PLUGINS / "ctlib" / "deploy").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or name.startswith("ctlib.deploy"), f"{path.name} imports {name}"


# --- docker-compose.yaml -------------------------------------------------------------------

def _airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built on the x-airflow-common anchor (its image, merged in by PyYAML)."""
    image = compose["x-airflow-common"]["image"]
    return {name: service for name, service in compose["services"].items() if service.get("image") == image}


def test_every_airflow_service_goes_through_the_check() -> None:
    compose = _compose()
    services = _airflow_services(compose)
    assert set(services) == AIRFLOW_SERVICES
    assert len(re.findall(r"<<: \*airflow-common\n", COMPOSE.read_text())) == len(AIRFLOW_SERVICES)
    entrypoint = compose["x-airflow-common"]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-c"] and "python3 -m ctlib.deploy.guard && exec" in entrypoint[2]
    for name, service in services.items():
        if name != "airflow-init":
            assert service["entrypoint"] == entrypoint, name
        env = service["environment"]
        for secret in (JWT_SECRET, API_SECRET_KEY, FERNET_KEY):
            assert re.fullmatch(rf"\$\{{{secret.name}:\?[^}}]*make secrets[^}}]*\}}", env[secret.container_env]), (name, secret)
    init_env = services["airflow-init"]["environment"]
    assert init_env["_AIRFLOW_WWW_USER_CREATE"] == "true"
    assert re.fullmatch(r"\$\{_AIRFLOW_WWW_USER_PASSWORD:\?[^}]*make secrets[^}]*\}", init_env["_AIRFLOW_WWW_USER_PASSWORD"])
    assert init_env["_AIRFLOW_WWW_USER_USERNAME"] == "${_AIRFLOW_WWW_USER_USERNAME:-airflow}"


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def test_no_known_default_secret_remains() -> None:
    text = COMPOSE.read_text()
    assert OLD_JWT_DEFAULT not in text
    assert "AIRFLOW_FERNET_KEY:-" not in text and "_AIRFLOW_WWW_USER_PASSWORD:-" not in text
    # no substitution of a secret-looking variable has a default, anywhere in the file
    secretish = re.compile(r"SECRET|PASSWORD|FERNET|TOKEN|_KEY\b")
    for value in _strings(_compose()):
        for name, default in re.findall(r"\$\{([A-Za-z0-9_]+)(?::?-)([^}]*)\}", value):
            assert not secretish.search(name), f"{name} has the default {default!r}"
    # and no literal value of a guarded variable, in any service
    guarded = {s.container_env for s in SECRETS}
    for service in _compose()["services"].values():
        environment = service.get("environment") or {}
        for name in guarded & set(environment):
            assert environment[name].startswith("${"), name


def test_published_ports_bind_to_the_bind_address() -> None:
    services = _compose()["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == {"airflow-apiserver", "kafka"}
    for ports in published.values():
        for port in ports:
            assert re.fullmatch(r"\$\{CT_BIND_ADDRESS:-127\.0\.0\.1\}:\d+:\d+", str(port)), port
    assert "${CT_BIND_ADDRESS:-127.0.0.1}:8080:8080" in published["airflow-apiserver"]
    assert "${CT_BIND_ADDRESS:-127.0.0.1}:29092:29092" in published["kafka"]


def test_readme_documents_the_production_steps() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("### Production with docker compose", 1)[1].split("\n## ", 1)[0]
    for needed in ("make secrets", "docker compose up airflow-init", ".env", "CT_BIND_ADDRESS", "0600"):
        assert needed in section, needed
    assert "| `CT_BIND_ADDRESS` | `127.0.0.1` |" in readme
