"""The interface every face-detector postprocessor implements (one file per detector family)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nvr.contracts.faces import Detections
from nvr.contracts.geometry import Letterbox
from nvr.contracts.tensors import RawOutput


class Postprocessor(Protocol):
    landmark_names: tuple[str, ...]
    score_threshold: float

    def decode(self, outputs: Sequence[RawOutput], letterbox: Letterbox) -> Detections:
        """Decode one image's raw outputs into faces in source-image pixels, sorted by score."""
        ...
