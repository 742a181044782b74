"""The backend registry: one line per backend, its config key -> its module (which exposes `PLUGIN`).

Inference backends take a letterboxed uint8 RGB model input and return raw output maps (one file per
backend). Modules are imported when first asked for, and import their runtime (ONNX Runtime, LiteRT,
HailoRT) only when a model is opened, so listing the backends (the config does) loads none of them.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import cast

from nvr.backends.base import BackendPlugin, InferenceBackend, OpenedEngine, PluginConfig
from nvr.errors import ModelError

__all__ = [
    "BACKEND_MODULES", "BackendPlugin", "InferenceBackend", "OpenedEngine", "PluginConfig",
    "backend_for_suffix", "backend_keys", "model_suffixes", "open_engine", "plugin",
]  # fmt: skip

BACKEND_MODULES: dict[str, str] = {
    "onnx": "nvr.backends.onnx",
    "tflite": "nvr.backends.tflite",
    "hailo": "nvr.backends.hailo",
}


def backend_keys() -> tuple[str, ...]:
    return tuple(BACKEND_MODULES)


@cache
def plugin(key: str) -> BackendPlugin:
    module = BACKEND_MODULES.get(key)
    if module is None:
        raise ModelError(f"unknown backend {key!r}: choose one of auto, {', '.join(BACKEND_MODULES)}")
    found = cast(BackendPlugin, importlib.import_module(module).PLUGIN)
    assert found.key == key, f"{module} registers {found.key!r} under {key!r}"
    return found


def backend_for_suffix(suffix: str) -> BackendPlugin | None:
    """The backend that runs model files ending in `suffix` (".onnx", ".hef", ...), if any."""
    return next((p for p in map(plugin, BACKEND_MODULES) if suffix.lower() in p.suffixes), None)


def model_suffixes() -> tuple[str, ...]:
    return tuple(s for key in BACKEND_MODULES for s in plugin(key).suffixes)


def open_engine(key: str, path: Path, config: PluginConfig, input_size: tuple[int, int]) -> OpenedEngine:
    """The daemon's engine on backend `key`: its own, or its synchronous backend behind a `SyncEngine`."""
    runner = plugin(key)
    if runner.open_engine is not None:
        return runner.open_engine(path, config, input_size)
    from nvr.backends.sync_engine import SyncEngine

    backend = runner.open_backend(path, config, input_size)
    return OpenedEngine(
        SyncEngine(backend), backend.name, backend.input_width, backend.input_height,
        backend.output_shapes, max_in_flight=1, set_normalisation=backend.set_normalisation,
    )  # fmt: skip
