"""The broker password: from the config, a file, or a systemd credential. Its value is never logged."""

from __future__ import annotations

import os
from pathlib import Path

from nvr.errors import ConfigError
from nvr.mqtt.config import MqttConfig

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"  # set by systemd for units with LoadCredential=
DEFAULT_CREDENTIAL = "mqtt_password"


def _read_secret(path: Path, what: str) -> str:
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


def resolve_password(config: MqttConfig) -> str | None:
    """The password to send, or None. With a username and no explicit source, the systemd credential
    `mqtt_password` is used when the unit provides it."""
    if config.password is not None:
        return config.password.get_secret_value()
    if config.password_file is not None:
        return _read_secret(config.password_file, "mqtt.password_file")
    directory = os.environ.get(CREDENTIALS_ENV)
    if config.password_credential is not None:
        if not directory:
            raise ConfigError(
                f"mqtt.password_credential {config.password_credential!r}: ${CREDENTIALS_ENV} is not set "
                "(give the unit LoadCredential=, or use password_file)"
            )
        return _read_secret(Path(directory) / config.password_credential, "mqtt.password_credential")
    if directory and config.username is not None and (Path(directory) / DEFAULT_CREDENTIAL).is_file():
        return _read_secret(Path(directory) / DEFAULT_CREDENTIAL, "systemd credential")
    return None
