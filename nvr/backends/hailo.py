"""Hailo backend (registry key "hailo"): its user-settable config, the synchronous backend, the plugin.

The asynchronous engine the daemon runs is nvr/backends/hailo_engine.py (one thread owning the VDevice;
jobs sized from HailoRT's async queue), the device side nvr/backends/hailo_device.py, the face embedder
beside the detector nvr/backends/hailo_embedder.py, and HailoRT's failures as one-line messages
nvr/backends/hailo_diagnostics.py.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, PrivateAttr

from nvr.backends.base import BackendPlugin, OpenedEngine, OutputShape, PluginConfig
from nvr.backends.hailo_device import HailoSettings, InferenceResult, JobPlan, plan_jobs
from nvr.backends.hailo_embedder import (
    HailoEmbedder,
    HailoEmbedderRuntime,
    open_embedder_runtime,
    open_hailo_embedder,
)
from nvr.backends.hailo_engine import EngineStats, HailoEngine
from nvr.contracts.frameref import ArrayFrame
from nvr.contracts.tensors import RawOutput
from nvr.errors import DeviceError

__all__ = [
    "KEY",
    "PLUGIN",
    "EngineStats",
    "HailoBackend",
    "HailoConfig",
    "HailoEmbedder",
    "HailoEmbedderRuntime",
    "HailoEngine",
    "HailoSettings",
    "InferenceResult",
    "JobPlan",
    "open_embedder_runtime",
    "open_hailo_embedder",
    "plan_jobs",
]

KEY = "hailo"


class HailoConfig(PluginConfig):
    """`detector.hailo`: what a user may set. The engine adapts to the device within these bounds."""

    batch_size: int = Field(default=4, ge=1, le=64, description="frames per device job, at most")
    queue: int = Field(default=16, ge=1, le=256, description="frames waiting for the device, at most")
    multi_process_service: bool = Field(default=False, description="share the device via hailort_service")
    group_id: str = Field(default="SHARED", min_length=1, description="VDevice group for sharing")

    # Not a user setting: the daemon sets it when recognition's embedder is a HEF (one VDevice, two networks).
    _embedder_hef: Path | None = PrivateAttr(default=None)

    def with_embedder(self, hef: Path) -> HailoConfig:
        """This configuration, with a face embedder HEF configured beside the detector."""
        copy = self.model_copy()
        copy._embedder_hef = hef
        return copy

    def settings(self, **overrides: Any) -> HailoSettings:
        values: dict[str, Any] = {
            "batch_size": self.batch_size, "input_queue": self.queue,
            "multi_process_service": self.multi_process_service, "group_id": self.group_id,
        }  # fmt: skip
        values.update(overrides)
        return HailoSettings(**values)


class HailoBackend:
    """The synchronous `InferenceBackend` face of the engine, for `nvr detect` and evaluations."""

    name = "hailo"

    def __init__(self, hef_path: str | Path, settings: HailoSettings | None = None) -> None:
        self.engine = HailoEngine(hef_path, settings or HailoSettings(batch_size=1, input_queue=1)).start()
        self.input_height, self.input_width = self.engine.input_shape[0], self.engine.input_shape[1]
        self.output_shapes: list[OutputShape] = _output_shapes(self.engine)
        self.path = Path(hef_path)

    def set_normalisation(self, mean: float, std: float) -> None:
        """A HEF normalises inside the network (the Model Zoo compiles the family's values in)."""

    def infer(self, model_input: npt.NDArray[np.uint8]) -> list[RawOutput]:
        if model_input.shape != self.engine.input_shape:
            raise ValueError(
                f"model input must be {'x'.join(map(str, self.engine.input_shape))}, got {model_input.shape}"
            )
        token = object()
        self.engine.submit(ArrayFrame(model_input, token))
        deadline = time.monotonic() + 3 * self.engine.settings.hang_timeout_s + 5.0
        while (remaining := deadline - time.monotonic()) > 0:
            result = self.engine.get_result(timeout=remaining)
            if result is None:
                break
            with result:
                if result.tag is not token:
                    continue  # left over from an earlier call that gave up
                if result.error is not None:
                    raise DeviceError(f"Hailo inference failed: {result.error}")
                return [RawOutput(o.name, o.data.copy(), o.quant) for o in result.outputs]
        raise DeviceError(f"{self.path}: the Hailo device returned no result in time")

    def close(self) -> None:
        self.engine.close()


def _output_shapes(engine: HailoEngine) -> list[OutputShape]:
    assert engine.info is not None  # a detector engine
    return [tuple(layer.shape) for layer in engine.info.default_group.outputs]


def _open_backend(path: Path, config: HailoConfig, input_size: tuple[int, int]) -> HailoBackend:
    # One image at a time: one frame per job, one waiting.
    return HailoBackend(path, config.settings(batch_size=1, input_queue=1))


def _open_engine(path: Path, config: HailoConfig, input_size: tuple[int, int]) -> OpenedEngine:
    engine = HailoEngine(path, config.settings(), embedder_hef=config._embedder_hef).start()
    height, width = engine.input_shape[0], engine.input_shape[1]
    return OpenedEngine(
        engine, KEY, width, height, _output_shapes(engine),
        max_in_flight=engine.settings.input_queue, set_normalisation=lambda mean, std: None,
    )  # fmt: skip


def _open_embedder(path: Path, config: HailoConfig, mean: float, std: float) -> HailoEmbedderRuntime:
    """A face embedder HEF on a VDevice of its own (`nvr faces`); the HEF normalises its input itself, so
    the family's mean and std are not applied. In the daemon it sits beside the detector instead
    (HailoEngine(..., embedder_hef=...).embedder_runtime())."""
    return open_embedder_runtime(path, config.settings())


def _hailort_installed() -> bool:
    return importlib.util.find_spec("hailo_platform") is not None


PLUGIN = BackendPlugin(KEY, HailoConfig, (".hef",), _open_backend, _open_engine, _hailort_installed)
