"""From the `detector:` section to an open inference engine + postprocessor.

The model is resolved by the one resolver (`nvr.models.resolve`: catalogue name or path; errors are
configuration errors naming `detector.model`) and opened by `nvr.detector` with the backend's own settings
(`detector.<backend>`) and the one fallback policy (backend auto: a HEF that cannot run here runs as the
catalogue's CPU model of its family).
"""

from __future__ import annotations

from pathlib import Path

import structlog

from nvr.backends import backend_keys
from nvr.config import DetectorConfig
from nvr.detector import BackendConfigs, DetectionModel, FaceDetector, open_detection_model, open_detector
from nvr.models.resolve import resolve_configured

__all__ = ["DetectionModel", "open_configured_detector", "open_configured_model"]

log = structlog.get_logger("nvr.daemon")


def backend_configs(detector: DetectorConfig) -> BackendConfigs:
    return {key: detector.backend_config(key) for key in backend_keys()}


def open_configured_model(
    detector: DetectorConfig, config_dir: Path, threshold: float, embedder_hef: Path | None = None
) -> DetectionModel:
    """The daemon's model: the Hailo engine for a HEF, else the CPU backend behind a `SyncEngine`.
    `embedder_hef`: recognition's embedder, configured on the same VDevice when the detector is a HEF."""
    model = resolve_configured(detector, config_dir)
    configs = backend_configs(detector)
    hailo = configs.get("hailo")
    if embedder_hef is not None and hailo is not None and hasattr(hailo, "with_embedder"):
        configs["hailo"] = hailo.with_embedder(embedder_hef)
    opened = open_detection_model(model, threshold, detector.input_size, configs)
    log.info("detector ready", model=str(opened.path), backend=opened.backend)
    return opened


def open_configured_detector(detector: DetectorConfig, config_dir: Path, threshold: float) -> FaceDetector:
    """The configured model as a synchronous `FaceDetector` (one image at a time), with the same fallback."""
    model = resolve_configured(detector, config_dir)
    size = detector.input_size
    return open_detector(model, score_threshold=threshold, input_width=size, input_height=size,
                         configs=backend_configs(detector))  # fmt: skip
