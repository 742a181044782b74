"""A face detector = an inference backend + the postprocessor of its model family, with the letterbox between.

`open_detector` picks both from the model file and the requested backend; it is what `nvr detect`,
`nvr eval` and the benchmarks use, so they all see exactly the daemon's preprocessing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nvr.backends.base import InferenceBackend
from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections
from nvr.contracts.imaging import letterbox_into
from nvr.errors import InputFileError, ModelError
from nvr.families import detector_family
from nvr.postprocess.base import Postprocessor

if TYPE_CHECKING:  # the backends import their runtimes; load them only when a model needs them
    from nvr.backends.onnx import OnnxBackend
    from nvr.backends.tflite import TfliteBackend

BACKENDS = ("auto", "onnx", "tflite", "hailo")
# Detector families: "auto" infers the family from the model (file type, output shapes).
DETECTORS = ("auto", "scrfd", "blazeface")


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
    *,
    detector: str = "auto",
) -> FaceDetector:
    """Open `model` (.onnx or .tflite for the CPU; .hef for a Hailo) with the postprocessor its family needs.

    `detector` names the family ("scrfd", "blazeface"); "auto" infers it: a .tflite file is MediaPipe's
    BlazeFace, an ONNX model whose outputs are (N, 16) + (N, 1) over 896 or 2304 anchors is BlazeFace,
    any other ONNX model SCRFD. BlazeFace models have a fixed input size, so `input_*` apply to SCRFD only.
    """
    path = Path(model)
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if detector not in DETECTORS:
        raise ModelError(f"unknown detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if not path.exists():
        raise InputFileError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        if backend not in ("auto", "tflite"):
            raise ModelError(f"{path}: .tflite models run on the tflite backend, not {backend}")
        if detector == "scrfd":
            raise ModelError(f"{path}: SCRFD is supported as .onnx or .hef, not .tflite")
        from nvr.backends.tflite import TfliteBackend
        from nvr.postprocess import blazeface

        tflite = TfliteBackend(path, mean=blazeface.INPUT_MEAN, std=blazeface.INPUT_STD)
        return _blazeface(tflite, path, score_threshold)
    if suffix == ".onnx":
        if backend not in ("auto", "onnx"):
            raise ModelError(f"{path}: .onnx models run on the onnx backend, not {backend}")
        from nvr.backends.onnx import OnnxBackend
        from nvr.postprocess import blazeface

        if detector == "blazeface":
            onnx = OnnxBackend(path, mean=blazeface.INPUT_MEAN, std=blazeface.INPUT_STD)
            return _blazeface(onnx, path, score_threshold)
        spec = detector_family("scrfd").input
        onnx = OnnxBackend(path, input_width, input_height, mean=spec.mean, std=spec.std)
        if detector == "auto" and blazeface.blazeface_anchor_count(onnx.output_shapes) is not None:
            # Re-open with BlazeFace's input normalisation (a small model: cheap, and only at start-up).
            onnx = OnnxBackend(path, mean=blazeface.INPUT_MEAN, std=blazeface.INPUT_STD)
            return _blazeface(onnx, path, score_threshold)
        from nvr.postprocess.scrfd import ScrfdPostprocessor

        return FaceDetector(onnx, ScrfdPostprocessor(onnx.input_width, onnx.input_height, score_threshold))
    if suffix == ".hef":
        if detector == "blazeface":
            raise ModelError(f"{path}: BlazeFace runs as .tflite or .onnx; this .hef is run as SCRFD")
        from nvr.backends.hailo import open_hef_backend
        from nvr.postprocess.scrfd import ScrfdPostprocessor

        hef_backend = open_hef_backend(path, backend)
        return FaceDetector(
            hef_backend,
            ScrfdPostprocessor(hef_backend.input_width, hef_backend.input_height, score_threshold),
        )
    raise ModelError(
        f"{path}: unsupported model file type {suffix or '(none)'!r}; expected .onnx, .tflite or .hef"
    )


def _blazeface(backend: OnnxBackend | TfliteBackend, path: Path, score_threshold: float) -> FaceDetector:
    """A BlazeFace detector on `backend`, after checking the model's outputs are BlazeFace's."""
    from nvr.postprocess.blazeface import BlazeFacePostprocessor, blazeface_anchor_count

    num_anchors = blazeface_anchor_count(backend.output_shapes)
    if num_anchors is None:
        shapes = backend.output_shapes
        raise ModelError(f"{path}: outputs {shapes} are not BlazeFace's (N, 16) + (N, 1), N = 896 or 2304")
    width, height = backend.input_width, backend.input_height
    return FaceDetector(backend, BlazeFacePostprocessor(width, height, score_threshold, num_anchors))
