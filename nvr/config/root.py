"""The whole configuration file, and `load_config` which turns a YAML file into it or a precise error."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from nvr.config.models import (
    CameraConfig,
    CaptureConfig,
    DetectorConfig,
    LoggingConfig,
    MetricsConfig,
    StrictModel,
)
from nvr.config.source import ConfigFileError, Path_, SourceDocument, format_path, read_config_file
from nvr.events.config import EventFileConfig, EventsConfig
from nvr.mqtt.config import MqttConfig
from nvr.recognition.config import RecognitionConfig
from nvr.web.config import WebConfig


class NvrConfig(StrictModel):
    instance: str = Field(
        default="nvr", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="this daemon's name on the machine"
    )
    cameras: list[CameraConfig] = Field(default_factory=list)
    capture: CaptureConfig = CaptureConfig()
    # Section models are frozen, so one default instance can be shared.
    detector: DetectorConfig = DetectorConfig()
    mqtt: MqttConfig | None = Field(default=None, description="the broker; without it events go to a file")
    events: EventsConfig = EventsConfig()
    event_file: EventFileConfig | None = Field(
        default=None, description="JSON-lines events without a broker; default <state_dir>/events.jsonl"
    )
    recognition: RecognitionConfig = RecognitionConfig()
    logging: LoggingConfig = LoggingConfig()
    metrics: MetricsConfig = MetricsConfig()
    web: WebConfig = WebConfig()
    state_dir: Path | None = Field(
        default=None, description="outbox, event files; default $STATE_DIRECTORY or ~/.local/state/nvr"
    )

    @property
    def enabled_cameras(self) -> list[CameraConfig]:
        return [camera for camera in self.cameras if camera.enabled]

    def camera(self, name: str) -> CameraConfig | None:
        return next((camera for camera in self.cameras if camera.name == name), None)


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> NvrConfig:
    """Read and validate `path`; any problem raises `ConfigFileError` (exit code CONFIG) naming file:line."""
    document = read_config_file(path, environ)
    data: Any = document.data
    if not isinstance(data, dict):
        raise ConfigFileError([f"{path}:1: the file must be a mapping of sections (cameras:, detector:, …)"])
    try:
        config = NvrConfig.model_validate(data)
    except ValidationError as exc:
        # In file order, which is how a user reads and fixes them.
        described = sorted(
            (document.line_of(tuple(error["loc"])), _describe(document, error)) for error in exc.errors()
        )
        raise ConfigFileError([text for _, text in described]) from None
    problems = [_problem(document, where, message) for where, message in _cross_checks(config)]
    if problems:
        raise ConfigFileError(problems)
    return config


def _cross_checks(config: NvrConfig) -> list[tuple[Path_, str]]:
    """Rules that span several values, with the path of the value to blame."""
    problems: list[tuple[Path_, str]] = []
    first_index: dict[str, int] = {}
    for index, camera in enumerate(config.cameras):
        # Names become MQTT topics and metric labels: compare them case-insensitively.
        key = camera.name.lower()
        if key in first_index:
            problems.append(
                (
                    ("cameras", index, "name"),
                    f"duplicate camera name {camera.name!r} (already used by cameras[{first_index[key]}])",
                )
            )
        else:
            first_index[key] = index
    if config.recognition.enabled and config.capture.snapshot_width == 0:
        problems.append(
            (
                ("capture", "snapshot_width"),
                "recognition needs the frame images faces are cut from: set snapshot_width/height (not 0)",
            )
        )
    return problems


def _problem(document: SourceDocument, where: Path_, message: str) -> str:
    return f"{document.file}:{document.line_of(where)}: {format_path(where)}: {message}"


def _describe(document: SourceDocument, error: Any) -> str:
    where: Path_ = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
        if len(where) >= 1:
            message += _suggestion(str(where[-1]), _known_keys(where[:-1]))
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = str(error["msg"])
        message = message.removeprefix("Value error, ")
        if "input" in error and kind not in ("value_error",) and not isinstance(error["input"], dict | list):
            message += f" (got {_show(error['input'], where)})"
    return _problem(document, where, message)


def _show(value: Any, where: Path_) -> str:
    # Never echo what might be a secret.
    secretive = ("password", "secret", "token", "url")
    if where and isinstance(where[-1], str) and any(s in where[-1] for s in secretive):
        return "a hidden value"
    return repr(value)


def _known_keys(parent: Path_) -> list[str]:
    model: Any = NvrConfig
    for part in parent:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or ())]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _suggestion(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known keys: {', '.join(known)})" if known else ""
