"""The interfaces of inference: a synchronous backend, and the queue-driven engine the daemon runs.

`InferenceBackend` is one call per image (`nvr detect`, `nvr eval`, benchmarks). `InferenceEngine` is what
the daemon drives: frames go in as references to their pixels (`nvr.contracts.frameref.FrameRef`),
results come out tagged with their frame, in submission order, possibly several in flight. The Hailo
engine is one natively (nvr/backends/hailo.py); any synchronous backend becomes one through `SyncEngine`
(nvr/backends/sync_engine.py), so the daemon has a single code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from nvr.contracts.frameref import FrameRef
from nvr.contracts.tensors import RawOutput


class InferenceBackend(Protocol):
    name: str
    input_width: int
    input_height: int

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
