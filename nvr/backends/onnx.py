"""CPU backend: ONNX Runtime running an ONNX model (fixed or dynamic input, any output names).

The input normalisation is the model family's (`nvr/families/`), given at open or set afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import Field

from nvr.backends.base import BackendPlugin, OutputShape, PluginConfig
from nvr.contracts.tensors import RawOutput
from nvr.errors import InputFileError, ModelError

KEY = "onnx"


class OnnxConfig(PluginConfig):
    threads: int | None = Field(default=None, ge=1, le=64, description="CPU threads; default: up to 4")


class OnnxBackend:
    name = "onnx"

    def __init__(
        self,
        model_path: str | Path,
        input_width: int = 640,
        input_height: int = 640,
        threads: int | None = None,
        *,
        mean: float,
        std: float,
        channels_last: bool = False,
    ) -> None:
        """`mean`, `std` (the model family's normalisation) and `channels_last` (NHWC input)."""
        import onnxruntime as ort  # imported here: only models that run on it load it

        path = Path(model_path)
        if not path.is_file():
            raise InputFileError(f"{path}: no such model file")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # ONNX Runtime's warnings are not actionable for users
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise InputFileError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        inputs = self._session.get_inputs()
        layout = "NHWC" if channels_last else "NCHW"
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            found = [(i.name, i.shape) for i in inputs]
            raise ModelError(f"{path}: expected one {layout} image input, found {found}")
        model_input = inputs[0]
        if channels_last:
            _, fixed_h, fixed_w, channels = model_input.shape
        else:
            _, channels, fixed_h, fixed_w = model_input.shape
        if channels not in (3, None) and not isinstance(channels, str):
            raise ModelError(f"{path}: input {model_input.name!r} has {channels} channels, expected 3")
        # A fixed-size export dictates the input size; a dynamic one takes what the user asked for.
        self.input_width = fixed_w if isinstance(fixed_w, int) else input_width
        self.input_height = fixed_h if isinstance(fixed_h, int) else input_height
        self._input_name = model_input.name
        self._output_names = [o.name for o in self._session.get_outputs()]
        # Dimensions are ints, or strings/None where the export left them dynamic.
        self.output_shapes: list[OutputShape] = [tuple(o.shape) for o in self._session.get_outputs()]
        self._channels_last = channels_last
        self.set_normalisation(mean, std)
        tensor_shape = (
            (1, self.input_height, self.input_width, 3)
            if channels_last
            else (1, 3, self.input_height, self.input_width)
        )
        self._tensor = np.empty(tensor_shape, np.float32)
        self.path = path

    def set_normalisation(self, mean: float, std: float) -> None:
        self._mean = np.float32(mean)
        self._inv_std = np.float32(1.0 / std)

    def infer(self, model_input: npt.NDArray[np.uint8]) -> list[RawOutput]:
        if model_input.shape != (self.input_height, self.input_width, 3):
            raise ValueError(
                f"model input must be {self.input_height}x{self.input_width}x3, got {model_input.shape}"
            )
        # HWC uint8 -> normalised float32 in the model's layout, written into the one preallocated tensor.
        image = model_input if self._channels_last else model_input.transpose(2, 0, 1)
        np.subtract(image, self._mean, out=self._tensor[0], dtype=np.float32)
        self._tensor *= self._inv_std
        results = self._session.run(self._output_names, {self._input_name: self._tensor})
        return [RawOutput(name, data) for name, data in zip(self._output_names, results, strict=True)]

    def close(self) -> None:
        pass


def _open(path: Path, config: OnnxConfig, input_size: tuple[int, int]) -> OnnxBackend:
    # Normalisation comes from the family once the model's outputs have told which one it is.
    return OnnxBackend(path, input_size[0], input_size[1], config.threads, mean=0.0, std=1.0)


FACE_SIZE = 112  # the ArcFace-aligned face every embedder takes (nvr/contracts/alignment.py)


class OnnxEmbedder:
    """A face embedder on ONNX Runtime: batches of aligned faces, NCHW or NHWC, fixed or dynamic batch."""

    name = KEY

    def __init__(self, path: Path, *, mean: float, std: float, threads: int | None = None) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise InputFileError(f"{path}: no such model file")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise ModelError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
        if len(shape) != 4:
            found = [(i.name, i.shape) for i in inputs]
            raise ModelError(f"{path}: expected one 112x112 RGB face input, found {found}")
        if tuple(shape[1:]) == (3, FACE_SIZE, FACE_SIZE):
            self._channels_first = True
        elif tuple(shape[1:]) == (FACE_SIZE, FACE_SIZE, 3):
            self._channels_first = False
        else:
            raise ModelError(f"{path}: input {list(shape)} is not a 112x112x3 face (NCHW or NHWC)")
        if len(outputs) != 1:
            found = [(o.name, o.shape) for o in outputs]
            raise ModelError(f"{path}: expected one embedding output, found {found}")
        self.batch: int | None = shape[0] if isinstance(shape[0], int) else None
        self.output_shape: OutputShape = tuple(outputs[0].shape)
        self._input_name = inputs[0].name
        self._mean = np.float32(mean)
        self._scale = np.float32(1.0 / std)

    def run(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        layout = faces.transpose(0, 3, 1, 2) if self._channels_first else faces
        tensor = np.subtract(layout, self._mean, dtype=np.float32)
        tensor *= self._scale
        result: npt.NDArray[np.float32] = np.asarray(
            self._session.run(None, {self._input_name: tensor})[0], np.float32
        )
        return result

    def close(self) -> None:
        pass


def _open_embedder(path: Path, config: OnnxConfig, mean: float, std: float) -> OnnxEmbedder:
    return OnnxEmbedder(path, mean=mean, std=std, threads=config.threads)


PLUGIN = BackendPlugin(KEY, OnnxConfig, (".onnx",), _open, open_embedder=_open_embedder)
