"""CPU backend for TensorFlow Lite models (MediaPipe's BlazeFace), on LiteRT (`ai-edge-litert`).

LiteRT is Google's maintained TFLite runtime, with wheels for Linux aarch64 (Raspberry Pi OS) and x86-64.
TFLite models take NHWC input, so the letterboxed RGB frame is only normalised, never transposed; it is
written straight into the interpreter's own input tensor.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from nvr.backends.base import BackendPlugin, OutputShape, PluginConfig
from nvr.contracts.tensors import QuantInfo, RawOutput
from nvr.errors import InputFileError, ModelError
from nvr.native_output import filtered_stderr

LITERT_NOISE = re.compile(rb"INFO: (Created TensorFlow Lite|Initialized TensorFlow Lite)")

KEY = "tflite"


class TfliteConfig(PluginConfig):
    threads: int | None = Field(default=None, ge=1, le=64, description="CPU threads; default: up to 4")


class TfliteBackend:
    name = "tflite"

    def __init__(
        self, model_path: str | Path, *, mean: float, std: float, threads: int | None = None
    ) -> None:
        """`mean` and `std` normalise the uint8 input, (x - mean) / std: the model family's values."""
        path = Path(model_path)
        if not path.is_file():
            raise InputFileError(f"{path}: no such model file")
        from ai_edge_litert.interpreter import Interpreter  # imported here: only TFLite users need it

        try:
            with filtered_stderr(LITERT_NOISE):  # LiteRT's C++ INFO line on fd 2, for every interpreter
                self._interpreter: Any = Interpreter(
                    model_path=str(path), num_threads=threads or min(4, os.cpu_count() or 1)
                )
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0]
            raise InputFileError(f"{path}: not a loadable TFLite model ({reason})") from None
        inputs = self._interpreter.get_input_details()
        shape = tuple(int(d) for d in inputs[0]["shape"]) if len(inputs) == 1 else ()
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
            found = [i["shape"].tolist() for i in inputs]
            raise ModelError(f"{path}: expected one [1, H, W, 3] image input, found {found}")
        if inputs[0]["dtype"] != np.float32:
            dtype = np.dtype(inputs[0]["dtype"]).name
            raise ModelError(f"{path}: input type {dtype} is not supported (float32 models only)")
        self.input_height, self.input_width = shape[1], shape[2]
        # A callable returning a view of the input tensor; the view must not outlive the call to invoke().
        self._input_view = self._interpreter.tensor(inputs[0]["index"])
        outputs = self._interpreter.get_output_details()
        self._outputs = [(str(d["name"]), int(d["index"]), _quant_info(d)) for d in outputs]
        self.output_shapes: list[OutputShape] = [tuple(int(v) for v in d["shape"]) for d in outputs]
        self.set_normalisation(mean, std)
        self.path = path

    def set_normalisation(self, mean: float, std: float) -> None:
        self._offset = np.float32(mean)
        self._scale = np.float32(1.0 / std)

    def infer(self, model_input: npt.NDArray[np.uint8]) -> list[RawOutput]:
        if model_input.shape != (self.input_height, self.input_width, 3):
            raise ValueError(
                f"model input must be {self.input_height}x{self.input_width}x3, got {model_input.shape}"
            )
        tensor = self._input_view()[0]
        np.subtract(model_input, self._offset, out=tensor, dtype=np.float32)
        tensor *= self._scale
        del tensor  # LiteRT refuses to run while a view of its buffers is alive
        self._interpreter.invoke()
        get = self._interpreter.get_tensor  # returns a copy: results outlive the next invoke()
        return [RawOutput(name, get(index), quant) for name, index, quant in self._outputs]

    def close(self) -> None:
        pass


def _quant_info(detail: dict[str, Any]) -> QuantInfo | None:
    """Integer outputs carry TFLite's (scale, zero_point); float outputs need none."""
    if np.dtype(detail["dtype"]).kind == "f":
        return None
    scale, zero_point = detail["quantization"]
    return QuantInfo.per_tensor(float(scale), float(zero_point))


def _open(path: Path, config: TfliteConfig, input_size: tuple[int, int]) -> TfliteBackend:
    # TFLite models have a fixed input size; the family's normalisation is set once it is known.
    return TfliteBackend(path, mean=0.0, std=1.0, threads=config.threads)


FACE_SHAPE = (112, 112, 3)  # the ArcFace-aligned face every embedder takes (nvr/contracts/alignment.py)


class TfliteEmbedder:
    """A face embedder on LiteRT: batches of aligned faces into the model's fixed batch (MobileFaceNet's
    is 2)."""

    name = KEY

    def __init__(self, path: Path, *, mean: float, std: float, threads: int | None = None) -> None:
        if not path.is_file():
            raise InputFileError(f"{path}: no such model file")
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter: Any = Interpreter(
                model_path=str(path), num_threads=threads or min(4, os.cpu_count() or 1)
            )
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: not a loadable TFLite model ({str(exc).splitlines()[0]})") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        shape = tuple(int(d) for d in inputs[0]["shape"]) if len(inputs) == 1 else ()
        if len(shape) != 4 or shape[1:] != FACE_SHAPE:
            found = [i["shape"].tolist() for i in inputs]
            raise ModelError(f"{path}: expected one [B, 112, 112, 3] face input, found {found}")
        if inputs[0]["dtype"] != np.float32:
            raise ModelError(f"{path}: input type {np.dtype(inputs[0]['dtype']).name} is not supported")
        if len(outputs) != 1 or np.dtype(outputs[0]["dtype"]).kind != "f":
            found = [(o["name"], o["shape"].tolist()) for o in outputs]
            raise ModelError(f"{path}: expected one float embedding output, found {found}")
        self.batch: int | None = shape[0]
        self.output_shape: OutputShape = tuple(int(d) for d in outputs[0]["shape"])
        self._input_index = int(inputs[0]["index"])
        self._output_index = int(outputs[0]["index"])
        self._mean = np.float32(mean)
        self._scale = np.float32(1.0 / std)

    def run(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        tensor = np.subtract(faces, self._mean, dtype=np.float32)
        tensor *= self._scale
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._output_index), np.float32)

    def close(self) -> None:
        pass


def _open_embedder(path: Path, config: TfliteConfig, mean: float, std: float) -> TfliteEmbedder:
    return TfliteEmbedder(path, mean=mean, std=std, threads=config.threads)


PLUGIN = BackendPlugin(KEY, TfliteConfig, (".tflite",), _open, open_embedder=_open_embedder)
