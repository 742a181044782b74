"""The daemon's configuration models, one small pydantic model per concern; unknown keys are errors.

Stage-specific sections (MQTT, snapshots, events) are defined by their stages and nested in `NvrConfig`
(see `nvr/config/root.py`); this module holds the sections the daemon itself owns.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from nvr.backends import backend_keys, plugin
from nvr.backends.base import PluginConfig
from nvr.families import family_names
from nvr.redact import redact_url

CAMERA_NAME_MAX = 64  # the README's limit; topics, shared-memory names and file names all take it
CAMERA_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{CAMERA_NAME_MAX - 1}}}")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file")

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]
Polygon = Annotated[list[Point], Field(min_length=3)]


class StrictModel(BaseModel):
    """Frigate's lesson: a misspelt key must be an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(StrictModel):
    name: str = Field(description="unique name; used in MQTT topics, logs and metrics")
    url: str = Field(description="rtsp://, rtsps://, http(s)://, rtmp:// or file:// (a local file, looped)")
    enabled: bool = True
    detect_fps: float = Field(default=5.0, gt=0.0, le=60.0, description="frames/s sent to the detector")
    transport: Literal["tcp", "udp"] = "tcp"
    threshold: float | None = Field(default=None, ge=0.0, le=1.0, description="overrides detector.threshold")
    # Polygons in fractions of the frame (0..1, x then y), so they survive a change of stream resolution.
    region: Polygon | None = Field(default=None, description="only faces whose centre is inside count")
    masks: list[Polygon] = Field(default_factory=list, description="faces whose centre is inside are ignored")
    recognition: bool = Field(
        default=True, description="recognise faces on this camera (recognition.enabled)"
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not CAMERA_NAME.fullmatch(name):
            raise ValueError(
                f"camera names use letters, digits, '_' and '-' (up to {CAMERA_NAME_MAX}, starting with a "
                f"letter or digit), got {name!r}"
            )
        from nvr.mqtt.topics import RESERVED_CAMERA_NAMES  # the topic layout owns its reserved words

        if name.lower() in RESERVED_CAMERA_NAMES:
            reserved = ", ".join(sorted(RESERVED_CAMERA_NAMES))
            raise ValueError(f"camera name {name!r} is reserved for nvr's own MQTT topics ({reserved})")
        return name

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in STREAM_SCHEMES:
            raise ValueError(
                f"unsupported URL {redact_url(url)!r}: expected one of "
                + ", ".join(f"{s}://" for s in STREAM_SCHEMES)
            )
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise ValueError(f"file URLs need an absolute path (file:///path/video.mp4), got {url!r}")
            if not Path(unquote(parts.path)).is_file():
                raise ValueError(f"no such video file: {unquote(parts.path)}")
        elif not parts.hostname:
            raise ValueError(f"URL {redact_url(url)!r} has no host")
        else:
            try:
                parts.port  # noqa: B018 - raises ValueError on a bad port
            except ValueError:
                raise ValueError(f"URL {redact_url(url)!r} has an invalid port") from None
        return url

    @property
    def file_path(self) -> Path | None:
        """The local file for a file:// camera, else None."""
        parts = urlsplit(self.url)
        return Path(unquote(parts.path)) if parts.scheme.lower() == "file" else None


class _DetectorSettings(StrictModel):
    """`detector:`. The choices of `backend` and `family`, and one `detector.<backend>` section per backend
    with that backend's own typed settings, come from the registries (see `DetectorConfig` below)."""

    backend: str = "auto"
    model: str = Field(
        default="scrfd_2.5g",
        description="a catalogue name (`nvr models list`; fetched by `nvr models pull`) or a model file path",
    )
    threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="face score threshold")
    family: str = "auto"
    input_size: int = Field(default=640, ge=32, le=4096, multiple_of=32, description="model input side")

    def backend_config(self, key: str) -> PluginConfig:
        """The `detector.<key>` section (defaults when the file has none)."""
        return cast(PluginConfig, getattr(self, key))


def _detector_config() -> type[_DetectorSettings]:
    keys = backend_keys()
    fields: dict[str, Any] = {
        "backend": (Literal[("auto", *keys)], Field(default="auto", description="auto: from the model")),
        "family": (
            Literal[("auto", *family_names("detector"))],
            Field(default="auto", description="detector family; auto: recognised from the model's outputs"),
        ),
    }
    for key in keys:
        config = plugin(key).config
        fields[key] = (config, Field(default_factory=config, description=f"settings of the {key} backend"))
    return create_model("DetectorConfig", __base__=_DetectorSettings, __module__=__name__, **fields)


if TYPE_CHECKING:

    class DetectorConfig(_DetectorSettings): ...

else:
    DetectorConfig = _detector_config()


class CaptureConfig(StrictModel):
    """Settings shared by every camera's decoder process."""

    open_timeout: float = Field(default=10.0, gt=0.0, le=300.0, description="seconds to connect")
    read_timeout: float = Field(default=10.0, gt=0.0, le=300.0, description="seconds of silence = lost")
    reconnect_initial: float = Field(default=0.5, gt=0.0, le=60.0, description="first reconnect delay, s")
    reconnect_max: float = Field(default=30.0, gt=0.0, le=600.0, description="reconnect delay cap, s")
    ring_slots: int = Field(default=4, ge=2, le=64, description="frames buffered per camera")
    snapshot_width: int = Field(default=1280, ge=0, le=7680, description="frame copy kept for snapshots")
    snapshot_height: int = Field(default=720, ge=0, le=4320, description="0 x 0: no snapshots")

    @model_validator(mode="after")
    def _consistent(self) -> CaptureConfig:
        if self.reconnect_initial > self.reconnect_max:
            raise ValueError("reconnect_initial must not exceed reconnect_max")
        if (self.snapshot_width == 0) != (self.snapshot_height == 0):
            raise ValueError("snapshot_width and snapshot_height must both be 0 or both be set")
        return self


class LoggingConfig(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: human-readable on a terminal, JSON under systemd (JOURNAL_STREAM set) or when piped.
    format: Literal["auto", "console", "json"] = "auto"


class MetricsConfig(StrictModel):
    enabled: bool = True
    host: str = Field(default="127.0.0.1", description="keep it local unless firewalled")
    port: int = Field(default=9120, ge=0, le=65535, description="0 picks a free port (tests)")
