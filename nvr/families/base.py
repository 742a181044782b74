"""What a model family is: everything about a kind of network that does not depend on the runtime.

A family (SCRFD, BlazeFace, an ArcFace embedder, ...) owns its input (size, normalisation, whether frames
are letterboxed into it), how its outputs are recognised (by shape: names differ between exports), and,
for a detector, the postprocessor that turns its raw outputs into faces. Backends know nothing of
families: the same family runs on ONNX Runtime, LiteRT or a Hailo. Adding a family is one module in
`nvr/families/` exposing `FAMILY` plus one line in the registry (`nvr/families/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from nvr.postprocess.base import Postprocessor

# A model's output shape as its runtime reports it: ints, or names / None where the export is dynamic.
Shape = Sequence[int | str | None]
Role = Literal["detector", "embedder"]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How a uint8 RGB image becomes the family's model input."""

    mean: float  # float runtimes feed (x - mean) / std; a HEF does this inside the network
    std: float
    size: tuple[int, int] | None = None  # (width, height) every model of the family takes; None: the
    # model's own (fixed exports) or the configured size (dynamic ones)
    letterbox: bool = True  # frames are letterboxed into the input; False: the caller hands crops
    # already at `size` (an embedder's aligned faces)


class ModelFamily(Protocol):
    """What every family declares."""

    @property
    def name(self) -> str:
        """The registry key, also the value of `detector.family` for detectors."""
        ...

    @property
    def role(self) -> Role: ...

    @property
    def input(self) -> InputSpec: ...

    def recognises(self, output_shapes: Sequence[Shape]) -> bool:
        """True when a model with these output shapes is one of this family's."""
        ...


class DetectorFamily(ModelFamily, Protocol):
    """A face-detector family: its postprocessor decodes raw outputs into faces in source pixels."""

    def postprocessor(
        self, input_width: int, input_height: int, output_shapes: Sequence[Shape], score_threshold: float
    ) -> Postprocessor: ...
