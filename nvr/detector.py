"""A face detector = an inference backend + the postprocessor of its model family, with the letterbox between.

Both ways of running a model are opened here from a resolved model (`nvr.models.resolve`): `open_detector`
gives a synchronous `FaceDetector` (one image per call: `nvr detect`, `nvr eval`, `nvr models verify`, the
benchmarks), `open_detection_model` the engine the daemon's detection pipeline drives (the Hailo engine
with several frames in flight, or a CPU backend behind a `SyncEngine`). Either way the backend comes from
the backend registry, the family from the family registry (named, or recognised from the model's output
shapes), and the input normalisation and postprocessor from that family; with backend auto a HEF that
cannot run here falls back to its CPU model (`open_with_fallback`, the one fallback policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nvr.backends import PluginConfig, open_engine, plugin
from nvr.backends.base import InferenceBackend, InferenceEngine, OpenedEngine, OutputShape
from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections
from nvr.contracts.imaging import letterbox_into
from nvr.errors import ModelError
from nvr.families import DetectorFamily, detector_family, recognise
from nvr.models.resolve import ResolvedModel, open_with_fallback, resolve_model
from nvr.postprocess.base import Postprocessor

BackendConfigs = dict[str, PluginConfig]


class FaceDetector:
    def __init__(
        self, backend: InferenceBackend, postprocessor: Postprocessor, path: Path | None = None
    ) -> None:
        self.backend = backend
        self.postprocessor = postprocessor
        self.path = path  # the model file (the CPU model's, after a fallback)
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


@dataclass
class DetectionModel:
    """What the detection pipeline runs: an engine, its postprocessor and the model input size."""

    engine: InferenceEngine
    postprocessor: Postprocessor
    backend: str  # the registry key: "hailo", "onnx", "tflite"
    input_width: int
    input_height: int
    # Frames the engine takes without dropping any: the pipeline never has more outstanding.
    max_in_flight: int
    path: Path

    def close(self, timeout: float = 10.0) -> None:
        self.engine.close(timeout)


def open_detector(
    model: str | Path | ResolvedModel,
    backend: str = "auto",
    score_threshold: float = 0.5,
    input_width: int = 640,
    input_height: int = 640,
    *,
    detector: str = "auto",
    configs: BackendConfigs | None = None,
) -> FaceDetector:
    """A synchronous detector for `model` (a catalogue name, a file, or an already resolved model).

    `detector` names the family; "auto" recognises it from the model's outputs. `input_*` apply to models
    whose input size is not fixed by the file (dynamic SCRFD exports). `configs` holds backends' settings
    (`detector.<backend>`), defaults otherwise.
    """
    resolved = model if isinstance(model, ResolvedModel) else _resolve(model, backend, detector)

    def open_one(chosen: ResolvedModel) -> FaceDetector:
        runner = plugin(chosen.backend)
        config = _config(chosen.backend, configs)
        opened = runner.open_backend(chosen.path, config, _input_size(chosen, input_width, input_height))
        try:
            post = _postprocessor(chosen, opened, score_threshold)
        except BaseException:
            opened.close()
            raise
        return FaceDetector(opened, post, chosen.path)

    return open_with_fallback(resolved, open_one)


def open_detection_model(
    model: ResolvedModel,
    score_threshold: float,
    input_size: int = 640,
    configs: BackendConfigs | None = None,
) -> DetectionModel:
    """The daemon's engine for `model`, with the same fallback and family choice as `open_detector`."""

    def open_one(chosen: ResolvedModel) -> DetectionModel:
        config = _config(chosen.backend, configs)
        opened = open_engine(chosen.backend, chosen.path, config, _input_size(chosen, input_size, input_size))
        try:
            post = _postprocessor(chosen, opened, score_threshold)
        except BaseException:
            opened.engine.close()
            raise
        return DetectionModel(
            opened.engine, post, opened.name, opened.input_width, opened.input_height, opened.max_in_flight,
            chosen.path,
        )  # fmt: skip

    return open_with_fallback(model, open_one)


def _resolve(model: str | Path, backend: str, family: str) -> ResolvedModel:
    if family != "auto":
        detector_family(family)  # a detector family, not an embedder
    return resolve_model(model, backend=backend, family=family)


def _config(key: str, configs: BackendConfigs | None) -> PluginConfig:
    found = (configs or {}).get(key)
    return found if found is not None else plugin(key).config()


def _input_size(model: ResolvedModel, width: int, height: int) -> tuple[int, int]:
    """The input a model with a dynamic size should take: the family's fixed one, else the asked one."""
    if model.family != "auto":
        fixed = detector_family(model.family).input.size
        if fixed is not None:
            return fixed
    return width, height


def _postprocessor(
    model: ResolvedModel, opened: InferenceBackend | OpenedEngine, score_threshold: float
) -> Postprocessor:
    """The model's family (named, or recognised from the outputs) sets the opened model's input
    normalisation and makes its postprocessor."""
    family = _family(model, opened.output_shapes)
    opened.set_normalisation(family.input.mean, family.input.std)
    width, height = opened.input_width, opened.input_height
    return family.postprocessor(width, height, opened.output_shapes, score_threshold)


def _family(model: ResolvedModel, output_shapes: Sequence[OutputShape]) -> DetectorFamily:
    """The named family, checked against the outputs; or the one family the outputs belong to."""
    if model.family == "auto":
        return detector_family(recognise(output_shapes, "detector", str(model.path)).name)
    family = detector_family(model.family)
    if not family.recognises(output_shapes):
        shapes = [tuple(s) for s in output_shapes]
        raise ModelError(f"{model.path}: outputs {shapes} are not those of a {family.name} model")
    return family
