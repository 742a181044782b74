"""The broker password: from the config, a file, or a systemd credential. Its value is never logged."""

from __future__ import annotations

from nvr.mqtt.config import MqttConfig
from nvr.secrets import credentials_directory, read_credential, read_secret

DEFAULT_CREDENTIAL = "mqtt_password"


def resolve_password(config: MqttConfig) -> str | None:
    """The password to send, or None. With a username and no explicit source, the systemd credential
    `mqtt_password` is used when the unit provides it."""
    if config.password is not None:
        return config.password.get_secret_value()
    if config.password_file is not None:
        return read_secret(config.password_file, "mqtt.password_file")
    if config.password_credential is not None:
        return read_credential(config.password_credential, "mqtt.password_credential")
    directory = credentials_directory()
    if directory and config.username is not None and (directory / DEFAULT_CREDENTIAL).is_file():
        return read_secret(directory / DEFAULT_CREDENTIAL, "systemd credential")
    return None
