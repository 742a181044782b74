"""The face result type shared by the postprocessors, the CLI and the event stage.

A frame's faces are kept as a few arrays (`Detections`) so the per-frame path never builds one Python
object per candidate; `Face` objects are made only when a consumer iterates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nvr.contracts.arrays import FloatArray

# Landmark names are from the subject's point of view: the subject's right eye appears on the image's left.
SCRFD_LANDMARKS: tuple[str, ...] = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")
BLAZEFACE_LANDMARKS: tuple[str, ...] = (
    "right_eye",
    "left_eye",
    "nose_tip",
    "mouth_center",
    "right_ear_tragion",
    "left_ear_tragion",
)


@dataclass(frozen=True, slots=True)
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in original-image pixels
    score: float
    landmarks: tuple[tuple[float, float], ...]  # (x, y) per point, in original-image pixels
    landmark_names: tuple[str, ...]

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def to_json(self, decimals: int = 2) -> dict[str, Any]:
        return {
            "box": [round(v, decimals) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": [[round(x, decimals), round(y, decimals)] for x, y in self.landmarks],
        }


@dataclass(frozen=True, slots=True)
class Detections:
    """All faces found in one image, sorted by descending score."""

    boxes: FloatArray  # (N, 4) x1, y1, x2, y2
    scores: FloatArray  # (N,)
    landmarks: FloatArray  # (N, K, 2)
    landmark_names: tuple[str, ...]

    @classmethod
    def empty(cls, landmark_names: tuple[str, ...] = SCRFD_LANDMARKS) -> Detections:
        k = len(landmark_names)
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, k, 2), np.float32),
            landmark_names,
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __iter__(self) -> Iterator[Face]:
        boxes = self.boxes.tolist()
        scores = self.scores.tolist()
        landmarks = self.landmarks.tolist()
        for box, score, points in zip(boxes, scores, landmarks, strict=True):
            yield Face(
                box=(box[0], box[1], box[2], box[3]),
                score=score,
                landmarks=tuple((p[0], p[1]) for p in points),
                landmark_names=self.landmark_names,
            )

    def faces(self) -> list[Face]:
        return list(self)
