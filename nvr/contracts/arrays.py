"""One name per kind of array that crosses a module boundary; every module imports its aliases from here.

numpy's typing cannot express shapes, so each alias says in a comment what shape it usually carries.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RgbImage = npt.NDArray[np.uint8]  # H x W x 3, RGB, uint8
UInt8Array = npt.NDArray[np.uint8]  # raw bytes, quantized tensors, masks of pixels
FloatArray = npt.NDArray[np.float32]  # boxes (N, 4), scores (N,), landmarks (N, K, 2), embeddings (N, D)
Float64Array = npt.NDArray[np.float64]  # matrices (alignment 2x3), evaluation curves
IndexArray = npt.NDArray[np.intp]  # indices into another array
BoolArray = npt.NDArray[np.bool_]  # per-element masks
