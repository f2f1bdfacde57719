"""The secrets of docker-compose.yaml and what makes a value unsafe: pure functions.

`problems(values)` -> one `Problem` per secret that is unset, empty, a well-known value (an old
default of this project, Airflow's or a tutorial's, `airflow`, `admin`, `changeme...`, ...), too
short, not random-looking, or (the Fernet key) not a Fernet key. A problem's `message()` names
the variable and says how to set it; it never contains the value itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

ENV_FILE = ".env"

# Why a secret of 64 characters: Airflow signs its JWTs (API, task identities, task-log
# requests) with HS512, whose key should be at least its 64-byte digest (RFC 7518, 3.2).
TOKEN_MIN_LENGTH = 64
PASSWORD_MIN_LENGTH = 12
FERNET_KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}=")


@dataclass(frozen=True)
class Secret:
    """One secret: `name` is the variable of .env (docker compose's substitution), `container_env`
    what the containers get; `kind` is "token", "fernet" or "password"."""

    name: str
    container_env: str
    purpose: str
    kind: str
    generate_command: str

    @property
    def min_length(self) -> int:
        return {"token": TOKEN_MIN_LENGTH, "fernet": 44, "password": PASSWORD_MIN_LENGTH}[self.kind]


_TOKEN_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(64))'"

JWT_SECRET = Secret(
    "AIRFLOW_JWT_SECRET", "AIRFLOW__API_AUTH__JWT_SECRET",
    "signs the API's and the workers' tokens: whoever knows it can forge a token for any user",
    "token", _TOKEN_COMMAND,
)
API_SECRET_KEY = Secret(
    "AIRFLOW_API_SECRET_KEY", "AIRFLOW__API__SECRET_KEY",
    "signs UI sessions and the API server's requests for task logs to the workers; "
    "every container must share it",
    "token", _TOKEN_COMMAND,
)
FERNET_KEY = Secret(
    "AIRFLOW_FERNET_KEY", "AIRFLOW__CORE__FERNET_KEY",
    "encrypts connection passwords and Variables in the metadata database",
    "fernet", "python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'",
)
ADMIN_PASSWORD = Secret(
    "_AIRFLOW_WWW_USER_PASSWORD", "_AIRFLOW_WWW_USER_PASSWORD",
    "the password of the admin user airflow-init creates",
    "password", "python3 -c 'import secrets; print(secrets.token_urlsafe(18))'",
)
SECRETS: tuple[Secret, ...] = (JWT_SECRET, API_SECRET_KEY, FERNET_KEY, ADMIN_PASSWORD)
ADMIN_USERNAME = "_AIRFLOW_WWW_USER_USERNAME"
ADMIN_USERNAME_DEFAULT = "airflow"

# Known values, compared once lower-cased with everything but letters removed (so "Airflow123!"
# is "airflow"): defaults and documentation examples people copy.
KNOWN_WORDS = frozenset({
    "", "airflow", "admin", "administrator", "root", "user", "test", "testing", "demo", "default",
    "password", "passwd", "pass", "pwd", "secret", "secrets", "key", "token", "qwerty", "letmein",
    "welcome", "abc", "abcdef", "xxx", "changeme", "secretkey", "mysecret", "mysecretkey",
    "supersecret", "supersecretkey", "topsecret", "jwtsecret", "jwtsecretkey", "jwtkey",
    "airflowsecret", "airflowsecretkey", "airflowjwtsecret", "airflowjwtsecretkey", "airflowpassword",
    "adminpassword", "apisecretkey", "apisecret", "webserversecretkey", "fernetkey", "fixedsecretkey",
    "temporarykey", "airflowadmin", "adminadmin", "airflowairflow",
})
# Pieces of a placeholder anywhere in the value ("change-me-to-a-long-random-string", the old
# default of docker-compose.yaml; "change-me-in-prod", "your-secret-key", ...).
PLACEHOLDER_MARKERS = (
    "changeme", "changethis", "replaceme", "replacethis", "yoursecret", "yourkey", "yourpassword",
    "yourtoken", "notforprod", "notsecret", "insecure", "placeholder", "example", "donotuse", "dontuse",
    "longrandomstring", "randomstring", "generateme",
)
# SHA-256 of Fernet keys published in tutorials and example compose files (the values are not
# kept here: they look like real keys).
PUBLISHED_DIGESTS = frozenset({
    "81886cc4d79074f6e946934d4e9e9d6a2ef320041045a0bd3c36ab6939df37e8",
    "45f9af60db8dc522a2d2f8d302f80d4eab1452fb4ad437bbe4f6fb819608efcc",
})
# Fewer different characters than this in a token is not a random value ("aaaa...", "abab...").
_MIN_DISTINCT = {"token": 10, "password": 5}
_MIN_DISTINCT_FERNET_BYTES = 12


@dataclass(frozen=True)
class Problem:
    """Why `secret`'s value is refused (`reason` never contains the value)."""

    secret: Secret
    reason: str

    def message(self) -> str:
        """Two lines: the variable, what it guards and what is wrong; how to set it."""
        s = self.secret
        where = s.name if s.name == s.container_env else f"{s.name} ({s.container_env} in the containers)"
        return (
            f"{where} {self.reason}. It {s.purpose}.\n"
            f"    Set it in {ENV_FILE}: `make secrets` writes every missing one (or "
            f"`python -m ctlib.deploy.secrets init` with PYTHONPATH=plugins), or add {s.name}=<the output of: "
            f"{s.generate_command}>; then recreate the containers (docker compose up -d)."
        )


def _letters(value: str) -> str:
    return re.sub(r"[^a-z]", "", value.lower())


def is_known(value: str, *, published: frozenset[str] = PUBLISHED_DIGESTS) -> bool:
    """True if `value` is a well-known one: a known word (whatever its case, digits and
    punctuation), contains a placeholder marker, or is a published key."""
    letters = _letters(value)
    if letters in KNOWN_WORDS or any(marker in letters for marker in PLACEHOLDER_MARKERS):
        return True
    return hashlib.sha256(value.encode()).hexdigest() in published


def _fernet_reason(value: str) -> str | None:
    """Why `value` is no usable Fernet key setting (Airflow takes several, comma-separated, the
    first one encrypting: key rotation), or None."""
    keys = value.split(",")
    for number, key in enumerate(keys, start=1):
        which = "" if len(keys) == 1 else f" (key {number} of {len(keys)})"
        if not FERNET_KEY_PATTERN.fullmatch(key):
            return (f"is not a Fernet key{which}: one is 32 random bytes in URL-safe base64, 44 characters "
                    f"ending in '=' (this one has {len(key)} characters)")
        try:
            raw = base64.urlsafe_b64decode(key)
        except (binascii.Error, ValueError):
            return f"is not a Fernet key{which}: it is not URL-safe base64"
        if len(set(raw)) < _MIN_DISTINCT_FERNET_BYTES:
            return f"is not a random Fernet key{which}: its 32 bytes take only {len(set(raw))} values"
    return None


def check(secret: Secret, value: str | None, *, username: str | None = None,
          published: frozenset[str] = PUBLISHED_DIGESTS) -> str | None:
    """Why `value` is refused for `secret`, or None when it is acceptable. `username` (the admin's)
    is refused as the admin's password."""
    if value is None or value.strip() == "":
        return "is not set" if value is None else "is empty"
    if is_known(value, published=published):
        return "is a well-known value (a default or an example from documentation), which anyone can look up"
    if secret.kind == "fernet":
        return _fernet_reason(value)
    if len(value) < secret.min_length:
        return f"is too short: {len(value)} characters, at least {secret.min_length} are needed"
    if username and value.lower() == username.lower():
        return "is the admin's user name"
    distinct = len(set(value))
    if distinct < _MIN_DISTINCT[secret.kind]:
        return f"is not random: only {distinct} different characters"
    return None


def problems(values: Mapping[str, str], secrets: Sequence[Secret] = SECRETS, *,
             key: Callable[[Secret], str] = lambda s: s.name,
             published: frozenset[str] = PUBLISHED_DIGESTS) -> list[Problem]:
    """A `Problem` for each of `secrets` whose value in `values` (looked up by `key(secret)`: the
    .env name by default, `lambda s: s.container_env` inside a container) is refused."""
    username = values.get(ADMIN_USERNAME) or ADMIN_USERNAME_DEFAULT
    found = []
    for secret in secrets:
        reason = check(secret, values.get(key(secret)), username=username, published=published)
        if reason is not None:
            found.append(Problem(secret, reason))
    return found


def report(found: Sequence[Problem], header: str) -> str:
    """The text an operator reads: `header`, then each problem's message."""
    lines = [header]
    lines += [f"  - {problem.message()}" for problem in found]
    return "\n".join(lines) + "\n"
