"""The `web:` section: the small web UI and JSON API the daemon serves, and where its password comes from.

On a loopback address the UI may run without a password (only this machine reaches it). Anywhere else a
password is required: the configuration is refused (exit 3) without one, because the pages show the faces
of people in a home.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nvr.errors import ConfigError
from nvr.secrets import read_credential, read_secret

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
MIN_PASSWORD_LENGTH = 8


def is_loopback(host: str) -> bool:
    """True for names and addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class WebTlsConfig(BaseModel):
    """HTTPS for the UI: the password and the faces then never cross the network in clear."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path = Field(description="the server certificate (PEM), with its chain after it")
    key_file: Path = Field(description="its private key (PEM, unencrypted)")


class WebConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="listen address; anything but loopback needs a password",
    )
    port: int = Field(default=9121, ge=0, le=65535, description="0 picks a free port (tests)")
    password_file: Path | None = Field(default=None, description="file holding the password (first line)")
    password_credential: str | None = Field(
        default=None, description="systemd credential name (LoadCredential=) holding the password"
    )
    session_hours: float = Field(default=168.0, gt=0.0, le=24 * 365, description="browser login lifetime")
    max_upload_mb: float = Field(default=10.0, gt=0.0, le=200.0, description="largest upload request")
    max_upload_files: int = Field(default=20, ge=1, le=200, description="photos per upload request")
    recent_events: int = Field(default=2000, ge=10, le=100_000, description="events kept in memory")
    tls: WebTlsConfig | None = Field(default=None, description="serve HTTPS with this certificate")

    @model_validator(mode="after")
    def _needs_password_off_loopback(self) -> WebConfig:
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("give at most one of password_file and password_credential")
        if self.enabled and not is_loopback(self.host) and not self.has_password:
            raise ValueError(
                f"web.host {self.host!r} is reachable from other machines: set web.password_file or "
                "web.password_credential (or listen on 127.0.0.1)"
            )
        if self.password_credential is not None and (
            "/" in self.password_credential or self.password_credential in ("", ".", "..")
        ):
            raise ValueError("password_credential is a credential name, not a path")
        return self

    @property
    def has_password(self) -> bool:
        return self.password_file is not None or self.password_credential is not None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def resolve_web_password(config: WebConfig) -> str | None:
    """The configured password, or None; raises ConfigError (exit 3, one line) when it cannot be read."""
    if config.password_file is not None:
        return _long_enough(read_secret(config.password_file, "web.password_file"), "web.password_file")
    if config.password_credential is not None:
        what = "web.password_credential"
        return _long_enough(read_credential(config.password_credential, what), what)
    return None


def _long_enough(secret: str, what: str) -> str:
    secret = secret.strip()
    if len(secret) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"{what}: the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return secret


def server_tls_context(tls: WebTlsConfig) -> ssl.SSLContext:
    """The HTTPS context (TLS 1.2 or later); raises ConfigError (exit 3, one line naming the file) when the
    certificate or key cannot be read or do not belong together."""
    for path, what, marker in (
        (tls.cert_file, "web.tls.cert_file", "-----BEGIN CERTIFICATE-----"),
        (tls.key_file, "web.tls.key_file", "PRIVATE KEY-----"),
    ):
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or type(exc).__name__})") from None
        if marker not in text:
            raise ConfigError(f"{what} {path}: not a PEM file (no {marker.strip('-')} block)")
        if "ENCRYPTED" in text and what.endswith("key_file"):
            raise ConfigError(f"{what} {path}: an encrypted key; the daemon needs one without a passphrase")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise ConfigError(
            f"web.tls: {tls.cert_file} and {tls.key_file} do not load as a certificate and its key ({reason})"
        ) from None
    return context
