"""Camera credentials: a TOML or JSON file with ``username`` and ``password``, readable by the owner only.

The agent refuses a group- or world-readable file rather than silently using a leaked secret.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class CredentialsError(Exception):
    """The credentials file is missing, unreadable, too open, or malformed."""


class OnvifCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(..., min_length=1, max_length=128)
    password: SecretStr = Field(..., min_length=1, max_length=256)


def load_credentials(path: Path) -> OnvifCredentials:
    """Read and validate a credentials file; blocking (small file), call via ``asyncio.to_thread`` on the loop."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CredentialsError(f"camera credentials file {path} does not exist") from None
    except OSError as exc:
        raise CredentialsError(f"cannot stat camera credentials file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise CredentialsError(f"camera credentials file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise CredentialsError(
            f"camera credentials file {path} has mode {stat.S_IMODE(st.st_mode):04o}; it holds a password and "
            f"must not be readable by group or others: run `chmod 600 {path}`"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CredentialsError(f"cannot read camera credentials file {path}: {exc.strerror}") from None
    try:
        if raw.lstrip().startswith(b"{"):
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CredentialsError(
            f"camera credentials file {path} is neither valid TOML nor JSON: {exc}"
        ) from None
    try:
        return OnvifCredentials.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) or "(root)" for e in exc.errors())
        raise CredentialsError(
            f"camera credentials file {path} must contain non-empty 'username' and 'password' (problem: {fields})"
        ) from None


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def write_credentials(path: Path, creds: OnvifCredentials) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    body = (
        f"username = {_toml_str(creds.username)}\npassword = {_toml_str(creds.password.get_secret_value())}\n"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
