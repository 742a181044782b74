"""The public face-event payload: what subscribers of `<prefix>/<camera>/face` receive.

This is a public interface, described by `schema/face_event.schema.json` and the README; change it only on
purpose and bump `PAYLOAD_VERSION` when a change breaks consumers. Coordinates are absolute frame pixels
(`box` = [x1, y1, x2, y2], landmarks keyed by name, from the subject's point of view); times are epoch
seconds.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nvr.contracts.identity import Identity

PAYLOAD_VERSION = 1
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "face_event.schema.json"
EventType = Literal["new", "update", "end"]

_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_event_id(start_time: float) -> str:
    """A stable event id in Frigate's style: `<epoch>.<micros>-<6 random chars>`, sortable by start time."""
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
    return f"{start_time:.6f}-{suffix}"


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """One face as seen in one frame."""

    frame_time: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in frame pixels
    score: float
    landmarks: tuple[tuple[float, float], ...]  # (x, y) per point, in frame pixels
    landmark_names: tuple[str, ...]

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame_time": round(float(self.frame_time), 6),
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": {
                name: [round(float(x), 1), round(float(y), 1)]
                for name, (x, y) in zip(self.landmark_names, self.landmarks, strict=True)
            },
        }


@dataclass(frozen=True, slots=True)
class FaceEvent:
    """One message of an event's lifecycle: `new`, then `update`s (rate-limited), then `end`."""

    type: EventType
    id: str
    camera: str
    start_time: float  # capture time of the first frame with the face
    end_time: float | None  # capture time of the last frame with the face; set on `end` only
    frame_size: tuple[int, int]  # (width, height): the pixel space of every coordinate
    frames: int  # frames the face was detected in so far
    face: FaceObservation  # the latest sighting
    best: FaceObservation  # the best sighting so far (score and size)
    snapshot: bytes | None = None  # JPEG of the best face, published with this message when it changed
    aligned: bytes | None = None  # 112x112 ArcFace-aligned JPEG of the best face, when enabled
    identity: Identity | None = None  # who the face is (recognition), None until decided

    @property
    def duration(self) -> float:
        return (self.end_time if self.end_time is not None else self.face.frame_time) - self.start_time

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": PAYLOAD_VERSION,
            "type": self.type,
            "id": self.id,
            "camera": self.camera,
            "start_time": round(float(self.start_time), 6),
            "end_time": None if self.end_time is None else round(float(self.end_time), 6),
            "frame_time": round(float(self.face.frame_time), 6),
            "duration": round(float(self.duration), 3),
            "frames": int(self.frames),
            # int(): numpy integers from an upstream stage would not be JSON.
            "frame_size": [int(self.frame_size[0]), int(self.frame_size[1])],
            "face": self.face.to_dict(),
            "best": self.best.to_dict(),
            "snapshot": self.snapshot is not None,
            "identity": None if self.identity is None else self.identity.to_dict(),
        }

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON. Raises ValueError for a non-finite number: NaN is not JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()
