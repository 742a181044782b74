"""Real SCRFD outputs for the postprocessing tests and benchmark: ONNX Runtime, and the same maps quantized
as the real SCRFD HEF's output layers quantize them (each with its own scale and zero-point)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nvr.backends.onnx import OnnxBackend
from nvr.contracts.geometry import Letterbox
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.contracts.tensors import RawOutput
from nvr.families import detector_family
from nvr.hef import HefLayer, read_hef

SCRFD = detector_family("scrfd").input

SCRFD_HEF = "hef/scrfd_2.5g.hailo10h.hef"
ANCHORS_PER_CELL = 2


def model_input(image: Path, width: int = 640, height: int = 640) -> tuple[npt.NDArray[np.uint8], Letterbox]:
    """The letterboxed uint8 RGB model input of an image file, through the project's one resizer."""
    buffer = np.zeros((height, width, 3), np.uint8)
    letterbox = letterbox_into(load_rgb(image), buffer)
    return buffer, letterbox


def hef_output_layers(hef_path: Path) -> tuple[HefLayer, ...]:
    return read_hef(hef_path).default_group.outputs


def as_hef_maps(outputs: Sequence[RawOutput], layers: Sequence[HefLayer]) -> list[RawOutput]:
    """Float ONNX outputs (N, K) / (1, N, K) as the HEF's (H, W, 2·K) maps, in the HEF's order, unquantized.

    Anchors are row-major (y, x, anchor) in both, so this is a reshape; layers are matched by shape only.
    """
    by_shape: dict[tuple[int, int, int], RawOutput] = {}
    for layer in layers:
        h, w, c = layer.shape
        matches = [
            o
            for o in outputs
            if o.data.shape[-1] * ANCHORS_PER_CELL == c
            and int(np.prod(o.data.shape[:-1])) == h * w * ANCHORS_PER_CELL
        ]
        assert len(matches) == 1, f"no single ONNX output matches HEF layer {layer.name} {layer.shape}"
        by_shape[layer.shape] = RawOutput(layer.name, matches[0].data.reshape(h, w, c).astype(np.float32))
    return [by_shape[layer.shape] for layer in layers]


def quantize_like_hef(outputs: Sequence[RawOutput], layers: Sequence[HefLayer]) -> list[RawOutput]:
    """What the device would hand over: each map quantized with its HEF layer's own parameters."""
    maps = as_hef_maps(outputs, layers)
    quantized = []
    for m, layer in zip(maps, layers, strict=True):
        dtype = np.uint8 if layer.dtype == "uint8" else np.uint16
        codes = layer.quant.quantize(m.data.astype(np.float32), dtype)
        quantized.append(RawOutput(layer.name, codes, layer.quant))
    return quantized


class ScrfdOnnx:
    """One ONNX model, run on images; outputs cached per image (tests reuse them across thresholds)."""

    def __init__(self, model: Path, input_width: int = 640, input_height: int = 640) -> None:
        self.backend = OnnxBackend(model, input_width, input_height, mean=SCRFD.mean, std=SCRFD.std)
        self._cache: dict[Path, tuple[list[RawOutput], Letterbox, npt.NDArray[np.uint8]]] = {}

    def run(self, image: Path) -> tuple[list[RawOutput], Letterbox]:
        outputs, letterbox, _ = self.run_with_input(image)
        return outputs, letterbox

    def run_with_input(self, image: Path) -> tuple[list[RawOutput], Letterbox, npt.NDArray[np.uint8]]:
        if image not in self._cache:
            tensor, letterbox = model_input(image, self.backend.input_width, self.backend.input_height)
            self._cache[image] = (self.backend.infer(tensor), letterbox, tensor)
        return self._cache[image]
