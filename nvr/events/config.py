"""Settings of the event stage, one small model per concern; the daemon nests them in its YAML config."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nvr.tracking.config import TrackerConfig


class SnapshotConfig(BaseModel):
    """The best face of an event as a JPEG crop (and optionally an aligned 112x112 crop for recognition)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    margin: float = Field(
        0.4, ge=0.0, le=2.0, description="added on each side, as a fraction of the box size"
    )
    max_size: int = Field(
        320, ge=16, le=4096, description="longest side of the JPEG in pixels (never upscaled)"
    )
    quality: int = Field(85, ge=1, le=95, description="JPEG quality")
    retain: bool = Field(
        True, description="publish the snapshot retained, as Home Assistant's MQTT camera expects"
    )
    aligned: bool = Field(False, description="also publish a 112x112 ArcFace-aligned crop of the best face")
    keep_files: int = Field(
        1000, ge=0, le=1_000_000,
        description="snapshot files kept in <state dir>/snapshots/<event id>.jpg (oldest removed; 0: none)",
    )  # fmt: skip
    keep_days: float = Field(7.0, gt=0.0, description="snapshot files older than this are removed")


class EventsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    update_interval: float = Field(
        2.0, gt=0.0, description="minimum seconds between two updates of one event"
    )
    tracker: TrackerConfig = TrackerConfig()
    snapshot: SnapshotConfig = SnapshotConfig()


class EventFileConfig(BaseModel):
    """The local JSON-lines event file used when no MQTT broker is configured."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Path("/var/lib/nvr/events.jsonl")
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="rotate the file when it would exceed this")
    backups: int = Field(5, ge=0, le=100, description="rotated files kept (events.jsonl.1 ... .N)")

    @model_validator(mode="after")
    def _path_is_a_file_name(self) -> EventFileConfig:
        if not self.path.name:
            raise ValueError(f"event file path {str(self.path)!r} names a directory, not a file")
        return self
