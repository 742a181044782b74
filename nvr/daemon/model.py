"""From the `detector:` section to an open inference engine + postprocessor.

The daemon always drives an `InferenceEngine`: the Hailo engine itself (several frames in flight), or a CPU
backend opened by the same factory `nvr detect` uses, wrapped in `SyncEngine`. With backend `auto`, a HEF
that cannot run here (no HailoRT, no device, device busy, wrong chip) falls back to the catalogue's CPU
model of the HEF's family, found the way `nvr detect` finds it (`nvr.backends.hailo.cpu_fallback_model`).
"""

from __future__ import annotations

import getpass
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from nvr.backends.base import InferenceEngine
from nvr.config import DetectorConfig
from nvr.detector import FaceDetector, open_detector
from nvr.errors import ConfigError, ModelError, NvrError
from nvr.postprocess.base import Postprocessor

log = structlog.get_logger("nvr.daemon")

MODEL_SUFFIXES = (".onnx", ".hef", ".tflite")


def hailo_available() -> bool:
    return importlib.util.find_spec("hailo_platform") is not None


def resolve_model(detector: DetectorConfig, config_dir: Path) -> tuple[Path, str]:
    """The model file and the backend to run it on.

    A path (anything with a model suffix or a '/') is taken relative to the config file's folder. A bare
    name is a catalogue model, found in the model store (`nvr models pull NAME` puts it there).
    """
    name = detector.model
    if name.lower().endswith(MODEL_SUFFIXES) or "/" in name:
        path = Path(name).expanduser()
        path = path if path.is_absolute() else (config_dir / path)
        if not path.is_file():
            raise ConfigError(f"detector.model: no such model file {path}")
        backend: str = detector.backend
        if backend == "auto":
            backend = {".hef": "hailo", ".tflite": "tflite"}.get(path.suffix.lower(), "onnx")
        return path, backend
    return _from_catalogue(name, detector.backend)


def _from_catalogue(name: str, backend: str) -> tuple[Path, str]:
    """`name` is a catalogue id (scrfd_2.5g-hailo8, scrfd_2.5g-onnx) or a family (scrfd_2.5g): the family
    picks a pulled HEF when the backend is hailo (or auto with HailoRT installed), else the ONNX model.
    Only the model store counts: the daemon never reads the local mirror, users pull first."""
    from nvr.assets import models_dir
    from nvr.models.catalogue import load_catalogue

    entries = load_catalogue()
    exact = [e for e in entries if e.id == name]
    family = exact or [e for e in entries if e.family == name]
    if not family:
        known = sorted({e.family for e in entries})
        raise ConfigError(
            f"detector.model: {name!r} is neither a model file nor a catalogue model ({', '.join(known)})"
        )
    want_hailo = backend == "hailo" or (backend == "auto" and hailo_available())
    kinds = ["hef", "onnx"] if backend == "auto" and want_hailo else ["hef" if want_hailo else "onnx"]
    for kind in kinds:
        candidates = [e for e in family if e.kind == kind]
        for entry in candidates:
            if entry.local_path.is_file():
                return entry.local_path, "hailo" if kind == "hef" else "onnx"
    wanted = [e for e in family if e.kind == kinds[0]] or family
    ids = " or ".join(e.id for e in wanted)
    raise ConfigError(
        f"detector.model: {name!r} is not in the model store {models_dir()}: run `{pull_command(ids)}`"
    )


def pull_command(ids: str) -> str:
    """The `nvr models pull` that fills the store this process reads: under systemd (or with NVR_MODELS
    set) a user's shell would pick another store, so the command names it."""
    from nvr.assets import MODELS_ENV, models_dir

    if not os.environ.get(MODELS_ENV) and not os.environ.get("STATE_DIRECTORY"):
        return f"nvr models pull {ids}"
    command = f"{MODELS_ENV}={models_dir()} nvr models pull {ids}"
    return f"sudo -u {getpass.getuser()} {command}" if os.environ.get("STATE_DIRECTORY") else command


@dataclass
class DetectionModel:
    """What the detection pipeline runs: an engine, its postprocessor and the model input size."""

    engine: InferenceEngine
    postprocessor: Postprocessor
    backend: str  # "hailo", "onnx", "tflite"
    input_width: int
    input_height: int
    # Frames the engine takes without dropping any: the pipeline never has more outstanding.
    max_in_flight: int

    def close(self, timeout: float = 10.0) -> None:
        self.engine.close(timeout)


def open_configured_model(detector: DetectorConfig, config_dir: Path, threshold: float) -> DetectionModel:
    """The daemon's model: the Hailo engine for a HEF, else the CPU backend behind a `SyncEngine`."""
    from nvr.backends.sync_engine import SyncEngine

    path, backend = resolve_model(detector, config_dir)
    if backend == "hailo":
        from nvr.backends.hailo import HailoEngine, HailoSettings, cpu_fallback_model
        from nvr.postprocess.scrfd import ScrfdPostprocessor

        if detector.family == "blazeface":
            raise ModelError(f"{path}: BlazeFace runs as .tflite or .onnx; this .hef is run as SCRFD")
        try:
            engine = HailoEngine(path, HailoSettings()).start()
        except NvrError as exc:
            if detector.backend != "auto":
                raise
            path, backend = cpu_fallback_model(path, exc), "onnx"
        else:
            height, width = engine.input_shape[0], engine.input_shape[1]
            log.info("detector ready", model=str(path), backend="hailo")
            return DetectionModel(
                engine, ScrfdPostprocessor(width, height, threshold), "hailo", width, height,
                max_in_flight=engine.settings.input_queue,
            )  # fmt: skip
    opened = _open_detector(path, backend, detector, threshold)
    cpu = opened.backend
    log.info("detector ready", model=str(path), backend=cpu.name)
    return DetectionModel(
        SyncEngine(cpu), opened.postprocessor, cpu.name, cpu.input_width, cpu.input_height, max_in_flight=1
    )


def open_configured_detector(detector: DetectorConfig, config_dir: Path, threshold: float) -> FaceDetector:
    """The configured model as a synchronous `FaceDetector` (one image at a time), with the same fallback."""
    path, backend = resolve_model(detector, config_dir)
    if backend == "hailo":
        from nvr.backends.hailo import cpu_fallback_model

        try:
            return _open_detector(path, backend, detector, threshold)
        except NvrError as exc:
            if detector.backend != "auto":
                raise
            path, backend = cpu_fallback_model(path, exc), "onnx"
    return _open_detector(path, backend, detector, threshold)


def _open_detector(path: Path, backend: str, detector: DetectorConfig, threshold: float) -> FaceDetector:
    return open_detector(
        path, backend=backend, score_threshold=threshold,
        input_width=detector.input_size, input_height=detector.input_size, detector=detector.family,
    )  # fmt: skip
