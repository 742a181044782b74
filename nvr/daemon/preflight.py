"""The checks `nvr run` makes before it opens a device or a camera; `nvr check-config` makes the same ones.

Each problem is one `NvrError` naming the field and what fixes it: the model resolves and is in the model
store (else the `nvr models pull ...` that fetches it), secret files are readable (MQTT password, TLS
files), and the places the daemon writes (the outbox's folder, the event file's folder) are writable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nvr.backends import plugin
from nvr.config import NvrConfig
from nvr.daemon.events import state_dir
from nvr.errors import ConfigError, NvrError
from nvr.models.resolve import HAILO, cpu_counterpart, resolve_configured

OUTBOX_FILE = "outbox.sqlite3"


def preflight(config: NvrConfig, config_path: Path) -> list[NvrError]:
    """Every problem found, in the order of the file's sections; empty when `run` may start."""
    checks: list[Callable[[NvrConfig, Path], list[NvrError]]] = [_model, _secrets, _writable_paths]
    return [problem for check in checks for problem in check(config, config_path)]


def _model(config: NvrConfig, config_path: Path) -> list[NvrError]:
    try:
        model = resolve_configured(config.detector, config_path.parent)
        if model.may_fall_back and not plugin(HAILO).available():
            # Certain to fall back: the CPU model must be in the store too.
            reason = f"detector.model: {model.path.name} needs HailoRT, which is not installed"
            cpu_counterpart(model, "fall back on", lambda missing: ConfigError(f"{reason}; {missing}"))
    except NvrError as exc:
        return [exc]
    return []


def _secrets(config: NvrConfig, config_path: Path) -> list[NvrError]:
    mqtt = config.mqtt
    if mqtt is None:
        return []
    from nvr.mqtt.credentials import resolve_password

    problems: list[NvrError] = []
    try:
        resolve_password(mqtt)
    except NvrError as exc:
        problems.append(exc)
    tls = mqtt.tls
    if tls is not None:
        for field, path in (
            ("ca_file", tls.ca_file),
            ("cert_file", tls.cert_file),
            ("key_file", tls.key_file),
        ):
            if path is not None and not _readable(path):
                problems.append(ConfigError(f"mqtt.tls.{field} {path}: cannot read"))
    return problems


def _writable_paths(config: NvrConfig, config_path: Path) -> list[NvrError]:
    problems: list[NvrError] = []
    if config.mqtt is not None:
        outbox = config.mqtt.outbox.path or state_dir(config) / OUTBOX_FILE
        field = "mqtt.outbox.path" if config.mqtt.outbox.path is not None else "state_dir"
        problems += _check_folder(outbox.parent, field)
    elif config.event_file is not None:
        problems += _check_folder(config.event_file.path.parent, "event_file.path")
    else:
        problems += _check_folder(state_dir(config), "state_dir")
    return problems


def _check_folder(folder: Path, field: str) -> list[NvrError]:
    """The daemon creates missing folders: the nearest existing one must let it."""
    existing = folder.expanduser()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return [ConfigError(f"{field}: {folder}: {existing} is not a folder")]
    if not os.access(existing, os.W_OK | os.X_OK):
        who = "it" if existing == folder else f"{existing}"
        return [ConfigError(f"{field}: {folder}: cannot write into {who} (check its owner and permissions)")]
    return []


def _readable(path: Path) -> bool:
    try:
        with path.expanduser().open("rb"):
            return True
    except OSError:
        return False
