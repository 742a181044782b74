"""From the `detector:` section to an open backend + postprocessor (the same factory `nvr detect` uses)."""

from __future__ import annotations

import getpass
import importlib.util
import os
from pathlib import Path

import structlog

from nvr.config import DetectorConfig
from nvr.detector import FaceDetector, open_detector
from nvr.errors import ConfigError, ModelError

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
    from nvr.catalogue import load_catalogue

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


def open_configured_detector(detector: DetectorConfig, config_dir: Path, threshold: float) -> FaceDetector:
    path, backend = resolve_model(detector, config_dir)
    try:
        opened = open_detector(
            path, backend=backend, score_threshold=threshold,
            input_width=detector.input_size, input_height=detector.input_size, detector=detector.family,
        )  # fmt: skip
    except ModelError as exc:
        if detector.backend != "auto" or backend != "hailo":
            raise
        log.warning("Hailo unavailable: falling back to the CPU", reason=str(exc))
        onnx = path.with_suffix(".onnx")
        if not onnx.is_file():
            raise
        opened = open_detector(
            onnx, backend="onnx", score_threshold=threshold,
            input_width=detector.input_size, input_height=detector.input_size, detector=detector.family,
        )  # fmt: skip
    log.info("detector ready", model=str(path), backend=opened.backend.name)
    return opened
