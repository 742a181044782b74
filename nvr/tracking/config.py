"""Settings of the tracking stage (YAML: `events.tracker`, where users have always set them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class TrackerConfig(BaseModel):
    """How per-frame faces become face tracks (one track = one event)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description=(
            "faces scored lower are not tracked; unset: follow the detector's (or the camera's) threshold"
        ),
    )
    min_size: float = Field(
        0.0, ge=0.0, description="faces whose box is narrower or lower (frame px) are ignored"
    )
    iou_threshold: float = Field(0.3, gt=0.0, le=1.0, description="box overlap needed to continue a track")
    min_hits: int = Field(
        2, ge=1, description="consecutive frames a face must be seen before its event starts"
    )
    end_after: float = Field(2.0, gt=0.0, description="seconds a face must be absent before its event ends")
