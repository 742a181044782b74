"""A face detector = an inference backend + the postprocessor of its model family, with the letterbox between.

`open_detector` picks both from the model file and the requested backend; it is what `nvr detect`,
`nvr eval` and the benchmarks use, so they all see exactly the daemon's preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nvr.backends.base import InferenceBackend
from nvr.errors import InputFileError, ModelError
from nvr.faces import Detections
from nvr.imaging import RgbImage, letterbox_into
from nvr.postprocess.base import Postprocessor

BACKENDS = ("auto", "onnx", "hailo")


class FaceDetector:
    def __init__(self, backend: InferenceBackend, postprocessor: Postprocessor) -> None:
        self.backend = backend
        self.postprocessor = postprocessor
        # One model-input buffer, reused for every image.
        self._input = np.zeros((backend.input_height, backend.input_width, 3), np.uint8)

    def detect(self, image: RgbImage) -> Detections:
        letterbox = letterbox_into(image, self._input)
        return self.postprocessor.decode(self.backend.infer(self._input), letterbox)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_detector(
    model: str | Path,
    backend: str = "auto",
    score_threshold: float = 0.5,
    input_width: int = 640,
    input_height: int = 640,
) -> FaceDetector:
    """Open `model` (.onnx for the CPU; .hef for a Hailo) with the postprocessor its family needs."""
    path = Path(model)
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if not path.exists():
        raise InputFileError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if backend == "hailo":
            raise ModelError(f"{path}: the hailo backend runs .hef files, not ONNX models")
        from nvr.backends.onnx import OnnxBackend
        from nvr.postprocess.scrfd import ScrfdPostprocessor

        onnx = OnnxBackend(path, input_width, input_height)
        return FaceDetector(onnx, ScrfdPostprocessor(onnx.input_width, onnx.input_height, score_threshold))
    raise ModelError(f"{path}: unsupported model file type {suffix or '(none)'!r}; expected .onnx or .hef")
