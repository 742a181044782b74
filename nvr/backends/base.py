"""The synchronous interface of an inference backend, used by `nvr detect`, `nvr eval` and benchmarks.

The daemon's Hailo engine is asynchronous and queue-driven; it offers this interface too, for one-off use.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from nvr.tensors import RawOutput


class InferenceBackend(Protocol):
    name: str
    input_width: int
    input_height: int

    def infer(self, model_input: npt.NDArray[np.uint8]) -> list[RawOutput]:
        """Run one letterboxed H x W x 3 uint8 RGB input; return the raw outputs."""
        ...

    def close(self) -> None: ...
