"""The float ONNX model with a HEF's output quantization applied: the Hailo path's numbers without a Hailo.

Each ONNX output is laid out as the HEF's matching output map (H, W, anchors·K, matched by shape) and
rounded to uint8 with that output's scale and zero-point, exactly as the device's output stage does; the
postprocessor then sees what the Hailo backend would hand it. Comparing its AP with the float model's
separates the cost of output quantization from anything else (weights and activations quantized inside
the network are not emulated: only a real device or the Hailo emulator shows those).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from nvr.backends.onnx import OnnxBackend
from nvr.contracts.tensors import RawOutput
from nvr.errors import ModelError
from nvr.families import detector_family
from nvr.hef.model import HefLayer
from nvr.hef.reader import read_hef


class HefQuantizedOnnx:
    """An InferenceBackend: ONNX Runtime on the CPU, outputs quantized with a HEF's parameters."""

    name = "onnx+hef-quant"

    def __init__(self, onnx_model: str | Path, hef: str | Path) -> None:
        info = read_hef(hef)
        self._layers: list[HefLayer] = list(info.default_group.outputs)
        inputs = info.default_group.inputs
        height, width = (inputs[0].shape[0], inputs[0].shape[1]) if inputs else (640, 640)
        spec = detector_family("scrfd").input  # the HEFs this stands in for are SCRFD's
        self._onnx = OnnxBackend(onnx_model, width, height, mean=spec.mean, std=spec.std)
        self.input_width = self._onnx.input_width
        self.input_height = self._onnx.input_height
        self.output_shapes = [tuple(layer.shape) for layer in self._layers]
        self._hef = Path(hef)
        self._plan: list[tuple[int, HefLayer]] | None = None

    def set_normalisation(self, mean: float, std: float) -> None:
        self._onnx.set_normalisation(mean, std)

    def infer(self, model_input: npt.NDArray[np.uint8]) -> list[RawOutput]:
        floats = self._onnx.infer(model_input)
        if self._plan is None:
            self._plan = self._match(floats)
        out: list[RawOutput] = []
        for index, layer in self._plan:
            data = floats[index].data.reshape(layer.shape)
            out.append(RawOutput(layer.name, layer.quant.quantize(np.asarray(data, np.float32)), layer.quant))
        return out

    def _match(self, floats: list[RawOutput]) -> list[tuple[int, HefLayer]]:
        """For each HEF output (in its order), the ONNX output with the same number of values per cell."""
        plan: list[tuple[int, HefLayer]] = []
        for layer in self._layers:
            h, w, c = layer.shape
            candidates = [
                i for i, f in enumerate(floats)
                if f.data.size == h * w * c and f.data.shape[-1] in (c, c // 2)
            ]  # fmt: skip
            if len(candidates) != 1:
                raise ModelError(
                    f"{self._hef}: output {layer.name} {layer.shape} matches {len(candidates)} outputs of "
                    f"{self._onnx.path} (shapes {[tuple(f.data.shape) for f in floats]}); "
                    "is this HEF compiled from that model?"
                )
            plan.append((candidates[0], layer))
        return plan

    def close(self) -> None:
        self._onnx.close()
