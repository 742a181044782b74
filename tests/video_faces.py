"""Real face results for the event tests: the Hamilton clip decoded with PyAV, faces found by SCRFD-2.5G on
ONNX Runtime (the project's detector), as the daemon would hand them to the event stage.

Computed once per test process (it takes several seconds on a busy 2-core machine) and shared.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import av
import numpy as np
from conftest import asset_path

from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections
from nvr.contracts.frameresult import FrameResult
from nvr.detector import open_detector

CLIP = "video/hamilton_clip.mp4"  # 640x360, 29.97 fps
MODEL = "models/scrfd/det_2.5g.onnx"
FPS = 30000 / 1001
LAST_FRAME = 100  # frames 0..100 hold faces that appear at scene cuts, stay, and leave
STEP = 2  # process every other frame (15 fps), as a daemon with detect_fps=15 would
EPOCH = 1_763_683_200.0  # capture time of frame 0


@dataclass(frozen=True)
class VideoFrame:
    index: int
    capture_time: float
    image: RgbImage
    detections: Detections

    def result(self, camera: str = "hamilton") -> FrameResult:
        height, width = self.image.shape[:2]
        return FrameResult(
            camera, self.index, self.capture_time, (width, height), self.detections, self.image
        )


@functools.cache
def video_frames() -> tuple[VideoFrame, ...]:
    frames = []
    with (
        open_detector(asset_path(MODEL), "onnx", 0.5, input_width=640, input_height=384) as detector,
        av.open(str(asset_path(CLIP))) as container,
    ):
        for index, frame in enumerate(container.decode(video=0)):
            if index > LAST_FRAME:
                break
            if index % STEP:
                continue
            image = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
            frames.append(VideoFrame(index, EPOCH + index / FPS, image, detector.detect(image)))
    assert sum(len(f.detections) for f in frames) > 50, "the clip should show faces in most frames"
    return tuple(frames)


def empty_frame(previous: VideoFrame, seconds_later: float) -> FrameResult:
    """A frame without faces after the clip (the scene emptied), to let the last events end."""
    height, width = previous.image.shape[:2]
    return FrameResult(
        "hamilton", previous.index + 1, previous.capture_time + seconds_later, (width, height),
        Detections.empty(), np.zeros_like(previous.image),
    )  # fmt: skip
