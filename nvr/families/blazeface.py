"""BlazeFace (MediaPipe's face detector, and the PyTorch port's ONNX exports): 6 landmarks, fixed input.

Input: the model's own size (128, 192 or 256 square), RGB in [-1, 1] as MediaPipe feeds it. Outputs:
regressors (N, 16) and scores (N, 1) over N SSD anchors, recognised by shape; the decode is
`nvr.postprocess.blazeface`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nvr.errors import ModelError
from nvr.families.base import InputSpec, Role, Shape
from nvr.postprocess.blazeface import BlazeFacePostprocessor, blazeface_anchor_count


@dataclass(frozen=True, slots=True)
class BlazeFace:
    name: str = "blazeface"
    role: Role = "detector"
    # MediaPipe feeds BlazeFace RGB in [-1, 1].
    input: InputSpec = field(default_factory=lambda: InputSpec(mean=127.5, std=127.5))

    def recognises(self, output_shapes: Sequence[Shape]) -> bool:
        return blazeface_anchor_count(output_shapes) is not None

    def postprocessor(
        self, input_width: int, input_height: int, output_shapes: Sequence[Shape], score_threshold: float
    ) -> BlazeFacePostprocessor:
        num_anchors = blazeface_anchor_count(output_shapes)
        if num_anchors is None:
            shapes = [tuple(s) for s in output_shapes]
            raise ModelError(f"outputs {shapes} are not BlazeFace's (N, 16) + (N, 1), N = 896 or 2304")
        return BlazeFacePostprocessor(input_width, input_height, score_threshold, num_anchors)


FAMILY = BlazeFace()
