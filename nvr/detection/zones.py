"""Per-camera face filters: score threshold, region of interest and masks (polygons in frame fractions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from nvr.contracts.faces import Detections

Polygon = Sequence[tuple[float, float]]


def points_in_polygon(points: npt.NDArray[np.float32], polygon: Polygon) -> npt.NDArray[np.bool_]:
    """Even-odd rule for (N, 2) points against one polygon, vectorized over points and edges."""
    vertices = np.asarray(polygon, np.float32)
    x1, y1 = vertices[:, 0], vertices[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    px, py = points[:, :1], points[:, 1:2]  # (N, 1) against (E,) edges
    straddles = (y1 > py) != (y2 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing_x = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
    crossings = straddles & (px < crossing_x)
    return np.asarray(np.count_nonzero(crossings, axis=1) % 2 == 1)


class FaceFilter:
    """Keeps the faces a camera's configuration asks for; built once per camera configuration."""

    def __init__(
        self, threshold: float, region: Polygon | None = None, masks: Sequence[Polygon] = ()
    ) -> None:
        self.threshold = threshold
        self.region = region
        self.masks = tuple(masks)

    def apply(self, detections: Detections, frame_width: int, frame_height: int) -> Detections:
        if len(detections) == 0:
            return detections
        keep = detections.scores >= self.threshold
        if self.region is not None or self.masks:
            boxes = detections.boxes
            centres = np.empty((len(detections), 2), np.float32)
            centres[:, 0] = (boxes[:, 0] + boxes[:, 2]) * (0.5 / frame_width)
            centres[:, 1] = (boxes[:, 1] + boxes[:, 3]) * (0.5 / frame_height)
            if self.region is not None:
                keep &= points_in_polygon(centres, self.region)
            for mask in self.masks:
                keep &= ~points_in_polygon(centres, mask)
        if bool(keep.all()):
            return detections
        return Detections(
            detections.boxes[keep],
            detections.scores[keep],
            detections.landmarks[keep],
            detections.landmark_names,
        )
