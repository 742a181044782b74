"""What the detection stage hands on for each processed frame.

It sits below the stages: inference/postprocessing fill it, the tracking stage reads it and passes it on
inside a `TrackedFrame` (nvr/contracts/tracks.py) to recognition and events (snapshots). The snapshot
array is typically a view into a shared-memory slot owned by the capture stage, so a
consumer must copy what it keeps before it returns from handling the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections


@dataclass(frozen=True, slots=True)
class FrameResult:
    camera: str
    frame_index: int
    capture_time: float  # epoch seconds, when the frame was captured
    frame_size: tuple[int, int]  # (width, height) of the camera frame: the pixel space of `detections`
    detections: Detections
    # The frame (or a downscaled copy of it) for face snapshots; None when no snapshot image is kept.
    # Valid only while the frame is being handled: it may be a shared-memory view that is reused afterwards.
    snapshot: RgbImage | None = None
    snapshot_scale: float = 1.0  # snapshot pixels per frame pixel (the same on both axes)
