"""Letterbox geometry shared by capture (which resizes) and postprocessing (which maps results back).

The model input is the source image scaled with its aspect ratio kept, placed at the top-left, with zero
padding to the right and bottom: the preprocessing SCRFD was evaluated with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Letterbox:
    src_width: int
    src_height: int
    dst_width: int
    dst_height: int
    resized_width: int  # width of the image inside the model input; the rest is padding
    resized_height: int

    @classmethod
    def fit(cls, src_width: int, src_height: int, dst_width: int, dst_height: int) -> Letterbox:
        if min(src_width, src_height, dst_width, dst_height) <= 0:
            raise ValueError(
                f"letterbox needs positive sizes, got {src_width}x{src_height} -> {dst_width}x{dst_height}"
            )
        # insightface's SCRFD.detect rounding: the longer side fills the input, the other is truncated.
        if src_height * dst_width > dst_height * src_width:
            resized_height = dst_height
            resized_width = int(dst_height * src_width / src_height)
        else:
            resized_width = dst_width
            resized_height = int(dst_width * src_height / src_width)
        return cls(
            src_width, src_height, dst_width, dst_height, max(1, resized_width), max(1, resized_height)
        )

    @property
    def scale_x(self) -> float:
        """Model-input pixels per source pixel, horizontally."""
        return self.resized_width / self.src_width

    @property
    def scale_y(self) -> float:
        return self.resized_height / self.src_height

    def points_to_source(self, xy: npt.NDArray[np.float32]) -> None:
        """Map points (..., 2k) laid out x, y, x, y, ... from model input to source pixels, in place."""
        xy[..., 0::2] *= np.float32(1.0 / self.scale_x)
        xy[..., 1::2] *= np.float32(1.0 / self.scale_y)

    def points_to_input(self, xy: npt.NDArray[np.float32]) -> None:
        """Inverse of `points_to_source`, in place."""
        xy[..., 0::2] *= np.float32(self.scale_x)
        xy[..., 1::2] *= np.float32(self.scale_y)
