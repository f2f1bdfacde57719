"""The .env file docker compose reads for variable substitution: parse it, add values to it,
write it readable by its owner only.

Only the simple form is understood, the one this project writes: `NAME=value` lines,
`export NAME=value`, values optionally in matching single or double quotes, `#` comments and
blank lines. Lines are never rewritten except an empty `NAME=` that gets a value.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")
FILE_MODE = 0o600


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if " #" in raw:  # an inline comment after an unquoted value
        raw = raw.split(" #", 1)[0].rstrip()
    return raw


def parse(text: str) -> dict[str, str]:
    """{name: value} of `text`; a name given twice keeps its last value (as docker compose does)."""
    values = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = _LINE.fullmatch(line)
        if match:
            values[match.group(1)] = _unquote(match.group(2))
    return values


def with_values(text: str, new: Mapping[str, str], comment: str = "") -> str:
    """`text` with `new` added: an existing empty `NAME=` line gets its value where it stands, the
    others are appended in order (after `comment`, a `#` line, when given). A name that has a
    value in `text` is left alone. `text` itself when there is nothing to add."""
    lines = text.splitlines(keepends=True)
    pending = dict(new)
    for number, line in enumerate(lines):
        match = _LINE.fullmatch(line.rstrip("\n"))
        if match and match.group(1) in pending and _unquote(match.group(2)) == "" and not line.lstrip().startswith("#"):
            name = match.group(1)
            lines[number] = f"{name}={pending.pop(name)}\n"
    present = parse(text)
    appended = [f"{name}={value}\n" for name, value in pending.items() if name not in present]
    if not appended and lines == text.splitlines(keepends=True):
        return text
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if appended and comment:
        appended.insert(0, f"# {comment}\n")
    return "".join(lines + appended)


def read(path: Path) -> str:
    """The text of `path`, or "" when it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, mode 0600 from the first byte (the temporary file is
    created so), so the secrets are never readable by others, not even for a moment."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def make_private(path: Path) -> int | None:
    """Set `path` to mode 0600 if it is more open; the mode it had then, else None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~FILE_MODE:
        os.chmod(path, FILE_MODE)
        return mode
    return None
