"""Secrets from files and systemd credentials (MQTT and web passwords). Their values are never logged."""

from __future__ import annotations

import os
from pathlib import Path

from nvr.errors import ConfigError

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # set by systemd for units with LoadCredential=


def read_secret(path: Path, what: str) -> str:
    """The first line of `path`; `what` names the setting in the one-line error (exit 3)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path}: not UTF-8 text") from None
    lines = text.splitlines()
    secret = lines[0] if lines else ""
    if not secret:
        raise ConfigError(f"{what} {path}: is empty")
    return secret


def credentials_directory() -> Path | None:
    directory = os.environ.get(CREDENTIALS_ENV)
    return Path(directory) if directory else None


def read_credential(name: str, what: str) -> str:
    """The systemd credential `name` (LoadCredential=); a one-line error when the unit provides none."""
    directory = credentials_directory()
    if directory is None:
        raise ConfigError(
            f"{what} {name!r}: ${CREDENTIALS_ENV} is not set "
            "(give the unit LoadCredential=, or use password_file)"
        )
    return read_secret(directory / name, what)
