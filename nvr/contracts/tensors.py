"""Raw model outputs as they travel from an inference backend to a postprocessor.

Float backends (ONNX Runtime) hand over float32 maps with `quant=None`. The Hailo backend hands over the
device's uint8 maps untouched, each with its own scale and zero-point from the HEF, so the postprocessor can
threshold in the quantized domain and dequantize only what survives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class QuantInfo:
    """Affine quantization of one output: real = (q - zero_point) * scale (HailoRT's formula).

    `scale` and `zero_point` are float32 arrays, 0-d for a per-tensor quantization or (C,) when the HEF
    quantizes each feature (channel) separately.
    """

    scale: npt.NDArray[np.float32]
    zero_point: npt.NDArray[np.float32]

    @classmethod
    def per_tensor(cls, scale: float, zero_point: float) -> QuantInfo:
        return cls(np.asarray(scale, np.float32), np.asarray(zero_point, np.float32))

    @classmethod
    def per_feature(cls, scales: list[float], zero_points: list[float]) -> QuantInfo:
        return cls(np.asarray(scales, np.float32), np.asarray(zero_points, np.float32))

    @property
    def is_per_feature(self) -> bool:
        return self.scale.ndim > 0

    def dequantize(self, q: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        """Dequantize an array whose last axis is the feature axis."""
        return (q.astype(np.float32) - self.zero_point) * self.scale

    def quantize(
        self, x: npt.NDArray[np.floating], dtype: type[np.integer] = np.uint8
    ) -> npt.NDArray[np.integer]:
        """Round to nearest and saturate, as the device's output stage does."""
        info = np.iinfo(dtype)
        q = np.rint(x.astype(np.float32) / self.scale + self.zero_point)
        quantized: npt.NDArray[np.integer] = np.clip(q, info.min, info.max).astype(dtype)
        return quantized


@dataclass(frozen=True, slots=True)
class RawOutput:
    """One output map: float32 with `quant=None`, or integer with the quantization that decodes it."""

    name: str
    data: npt.NDArray[np.generic]
    quant: QuantInfo | None = None
