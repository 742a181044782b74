"""SCRFD (insightface; the Hailo Model Zoo's face detector): HEF maps or ONNX tensors, 5 landmarks.

Input: any size that is a multiple of 32 (dynamic ONNX exports take the configured size), RGB normalised
as (x - 127.5) / 128 (the Model Zoo compiles the same numbers into its HEFs). Outputs: score, box and
keypoint outputs for strides 8, 16, 32, recognised by shape; the decode is `nvr.postprocess.scrfd`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nvr.families.base import InputSpec, Role, Shape
from nvr.postprocess.scrfd import ANCHORS_PER_CELL, ROLES, STRIDES, ScrfdPostprocessor

# Values per anchor (flat ONNX outputs) and channels per cell (HEF maps), one output of each per stride.
_FLAT = sorted(k for k in ROLES.values() for _ in STRIDES)
_MAPS = sorted(ANCHORS_PER_CELL * k for k in ROLES.values() for _ in STRIDES)


@dataclass(frozen=True, slots=True)
class Scrfd:
    name: str = "scrfd"
    role: Role = "detector"
    # insightface's normalisation; the Model Zoo compiles the same numbers into its HEFs.
    input: InputSpec = field(default_factory=lambda: InputSpec(mean=127.5, std=128.0))

    def recognises(self, output_shapes: Sequence[Shape]) -> bool:
        last = [shape[-1] if len(shape) else None for shape in output_shapes]
        if not all(isinstance(d, int) for d in last):
            return False
        return sorted(d for d in last if isinstance(d, int)) in (_FLAT, _MAPS)

    def postprocessor(
        self, input_width: int, input_height: int, output_shapes: Sequence[Shape], score_threshold: float
    ) -> ScrfdPostprocessor:
        return ScrfdPostprocessor(input_width, input_height, score_threshold)


FAMILY = Scrfd()
