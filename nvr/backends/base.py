"""The interfaces of inference: a synchronous backend, and the queue-driven engine the daemon runs.

A backend is one module in `nvr/backends/` exposing `KEY` (its config key: `detector.backend`, and the name
of its own `detector.<KEY>` section), a typed config (`PluginConfig`) and `PLUGIN`, registered by one line
in `nvr/backends/__init__.py`. It imports its runtime only when a model is opened.

`InferenceBackend` is one call per image (`nvr detect`, `nvr eval`, benchmarks). `InferenceEngine` is what
the daemon drives: frames go in as references to their pixels (`nvr.contracts.frameref.FrameRef`),
results come out tagged with their frame, in submission order, possibly several in flight. The Hailo
engine is one natively (nvr/backends/hailo.py); any synchronous backend becomes one through `SyncEngine`
(nvr/backends/sync_engine.py), so the daemon has a single code path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from nvr.contracts.frameref import FrameRef
from nvr.contracts.tensors import RawOutput

# A model's output shape as its runtime reports it: ints, or names / None where the export is dynamic.
OutputShape = tuple[int | str | None, ...]


class InferenceBackend(Protocol):
    name: str
    input_width: int
    input_height: int

    @property
    def output_shapes(self) -> Sequence[OutputShape]: ...

    def set_normalisation(self, mean: float, std: float) -> None:
        """The family's input normalisation, (x - mean) / std (a no-op where the model does it itself)."""
        ...

    def infer(self, model_input: npt.NDArray[np.uint8]) -> list[RawOutput]:
        """Run one letterboxed H x W x 3 uint8 RGB input; return the raw outputs."""
        ...

    def close(self) -> None: ...


class EngineResult(Protocol):
    """One frame's raw outputs; the engine's buffers stay lent to the consumer until `release()`."""

    @property
    def tag(self) -> object:
        """The submitted FrameRef's `tag`."""
        ...

    @property
    def error(self) -> str | None:
        """None when `outputs` are valid; else why the frame failed (the engine has logged and counted it)."""
        ...

    @property
    def outputs(self) -> Sequence[RawOutput]: ...

    def release(self) -> None: ...


class InferenceEngine(Protocol):
    """Contract: `submit` never blocks; it calls `frame.release()` exactly once, when it is done reading the
    pixels (or drops the frame). A frame yields at most one result (none if it was dropped, or if its
    pixels changed while read: `release()` returned False), and results come out in submission order."""

    def submit(self, frame: FrameRef) -> None: ...

    def get_result(self, timeout: float | None = None) -> EngineResult | None:
        """The next result, or None after `timeout` seconds without one."""
        ...

    def close(self, timeout: float = 10.0) -> None: ...


class PluginConfig(BaseModel):
    """A backend's own settings (`detector.<key>`): unknown keys are errors, as everywhere in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class OpenedEngine:
    """An engine opened for the daemon, with what the pipeline needs to know about its model."""

    engine: InferenceEngine
    name: str
    input_width: int
    input_height: int
    output_shapes: Sequence[OutputShape]
    max_in_flight: int  # frames it takes without dropping any
    set_normalisation: Callable[[float, float], None]


class EmbedderRuntime(Protocol):
    """Runs batches of aligned 112x112 faces through a face-embedding model (nvr/families/arcface.py does
    the rest: batching to `batch`, recognising the output, L2 normalisation)."""

    name: str  # the backend's key
    batch: int | None  # the model's fixed batch size, or None when it takes any
    output_shape: OutputShape  # per batch, as the model declares it

    def run(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 [B, 112, 112, 3] RGB (B == batch when fixed) -> the model's float output [B, ...]."""
        ...

    def close(self) -> None: ...


# open_backend(model file, the backend's config, the input size a dynamic model should take)
OpenBackend = Callable[[Path, Any, tuple[int, int]], InferenceBackend]
# open_embedder(model file, the backend's config, the family's input mean and std)
OpenEmbedder = Callable[[Path, Any, float, float], EmbedderRuntime]
OpenEngine = Callable[[Path, Any, tuple[int, int]], OpenedEngine]


@dataclass(frozen=True, slots=True)
class BackendPlugin:
    key: str
    config: type[PluginConfig]
    suffixes: tuple[str, ...]  # the model files it runs, e.g. (".onnx",)
    open_backend: OpenBackend
    # The daemon's engine; None: the synchronous backend behind a `SyncEngine` (one frame at a time).
    open_engine: OpenEngine | None = None
    # Whether its runtime is installed here (cheap: no import of the runtime itself).
    available: Callable[[], bool] = lambda: True
    # Face embedders (batches of aligned faces) on this backend; None: it runs none on its own.
    open_embedder: OpenEmbedder | None = None
