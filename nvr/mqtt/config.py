"""MQTT settings, one small model per concern; the daemon nests `MqttConfig` in its YAML config."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# Topic levels and ids we generate must be safe everywhere: MQTT topics, HA object ids, file names.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")


def default_node_id() -> str:
    """This machine's host name, reduced to the characters topics and Home Assistant ids accept."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", socket.gethostname().split(".")[0]).strip("_")
    return name or "nvr"


class TlsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(None, description="CA certificate(s) to trust; the system store when unset")
    cert_file: Path | None = Field(None, description="client certificate, for brokers that require one")
    key_file: Path | None = Field(None, description="the client certificate's private key")
    insecure: bool = Field(False, description="skip the host name check (self-signed certificates only)")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file must be given together")
        return self


class DiscoveryConfig(BaseModel):
    """Home Assistant MQTT discovery: per-camera face count and face-present entities."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        return check_topic_prefix(value, "discovery.prefix")


class OutboxConfig(BaseModel):
    """The durable queue between the event pipeline and the broker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path | None = Field(
        None, description="the SQLite file; <state directory>/outbox.sqlite3 when unset"
    )
    max_messages: int = Field(100_000, ge=10, description="oldest messages are dropped beyond this")
    max_bytes: int = Field(
        256 * 1024 * 1024, ge=64 * 1024, description="oldest messages are dropped beyond this"
    )
    max_age: float = Field(
        7 * 24 * 3600.0, gt=0, description="seconds; older undelivered messages are dropped"
    )
    # FULL survives power loss (one fsync per write); NORMAL survives a daemon crash but may lose the last
    # writes on power loss, and is several times faster on SD cards.
    synchronous: Literal["full", "normal"] = "full"
    commit_interval: float = Field(
        0.1, gt=0, le=60,
        description="seconds: every event is on disk within this time of being made (batched off the"
        " detection thread); a kill or power cut loses at most the events of the last interval",
    )  # fmt: skip


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535, description="1883, or 8883 with TLS, when unset")
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT 5 lets the broker report refused publishes (ACL); 3.1.1 for old brokers"
    )
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = Field(None, description="file holding the password (first line)")
    password_credential: str | None = Field(
        None, description="systemd credential name (LoadCredential=) holding the password"
    )
    node_id: str = Field(
        default_factory=default_node_id, description="this daemon's name in ids and discovery"
    )
    client_id: str | None = Field(None, description="MQTT client id; `nvr-<node_id>` when unset")
    topic_prefix: str = "nvr"
    keepalive: int = Field(30, ge=5, le=3600)
    tls: TlsConfig | None = None
    reconnect_min_delay: int = Field(1, ge=1, description="seconds before the first reconnect attempt")
    reconnect_max_delay: int = Field(30, ge=1, description="cap of the doubling reconnect backoff, seconds")
    max_inflight: int = Field(20, ge=1, le=1000, description="unacknowledged messages on the wire")
    max_message_bytes: int = Field(
        256 * 1024, ge=1024, description="larger messages are refused, counted, logged"
    )
    stats_interval: float = Field(
        60.0, ge=0, description="seconds between <prefix>/stats messages; 0 = never"
    )
    discovery: DiscoveryConfig = DiscoveryConfig()
    outbox: OutboxConfig = OutboxConfig()

    @field_validator("topic_prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        return check_topic_prefix(value, "topic_prefix")

    @field_validator("node_id")
    @classmethod
    def _valid_node_id(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"node_id {value!r} may only contain letters, digits, '_' and '-'")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> MqttConfig:
        sources = [
            self.password is not None,
            self.password_file is not None,
            self.password_credential is not None,
        ]
        if sum(sources) > 1:
            raise ValueError("give at most one of password, password_file and password_credential")
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ValueError("reconnect_max_delay must not be smaller than reconnect_min_delay")
        return self

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls is not None else 1883)

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"nvr-{self.node_id}"


def check_topic_prefix(value: str, field: str) -> str:
    """A prefix is one or more plain topic levels: no wildcards, no empty level, not a `$` system topic."""
    levels = value.split("/")
    if (
        not value
        or value.startswith("$")
        or any(not level or not NAME_PATTERN.match(level) for level in levels)
    ):
        raise ValueError(
            f"{field} {value!r} must be topic levels of letters, digits, '_' and '-' separated by '/'"
        )
    return value
