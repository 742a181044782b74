"""The face embedder family (ArcFace-style): an aligned 112x112 RGB face in, an L2-normalised vector out.

The family owns what every embedder shares: the 112x112 ArcFace-aligned input (nvr/contracts/alignment.py),
batching to what the model accepts (`fr_feature_512.onnx` takes batch 1 only, `mobilefacenet_192.tflite` a
fixed 2, insightface's `w600k_mbf.onnx` any), recognising the output (one vector per face, or a one-line
`ModelError`), L2 normalisation, and the model id (from the file's hash: embeddings of two models are never
compared). A runtime only runs a batch: ONNX Runtime and LiteRT here, the Hailo in nvr/backends/hailo.py;
the normalisation, (x - mean) / std, is the model's (inside the HEF on a Hailo).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nvr.contracts.alignment import ARCFACE_SIZE
from nvr.contracts.arrays import FloatArray, UInt8Array
from nvr.errors import InputFileError, ModelError
from nvr.families.base import InputSpec, Role, Shape

NAME = "arcface"
# The normalisation most ArcFace ports use; insightface's own exports (w600k_mbf.onnx) use 127.5 / 127.5.
DEFAULT_MEAN = 127.5
DEFAULT_STD = 128.0
MAX_BATCH = 16  # for models with a dynamic batch: enough to amortise a call, small enough to stay cache-warm
INPUT_SHAPE = (ARCFACE_SIZE, ARCFACE_SIZE, 3)


@dataclass(frozen=True, slots=True)
class ArcFace:
    """The registry's view of the family: its input, and how an embedder's outputs look."""

    name: str = NAME
    role: Role = "embedder"
    input: InputSpec = field(
        default_factory=lambda: InputSpec(
            mean=DEFAULT_MEAN, std=DEFAULT_STD, size=(ARCFACE_SIZE, ARCFACE_SIZE), letterbox=False
        )
    )

    def recognises(self, output_shapes: Sequence[Shape]) -> bool:
        """One output holding one vector per face ([B, D], [B, 1, 1, D], or a HEF's (D,) / (1, 1, D))."""
        return len(output_shapes) == 1 and _vector_dim(tuple(output_shapes[0])) is not None


FAMILY = ArcFace()


class EmbedderRuntime(Protocol):
    """Runs a batch of aligned faces through one model and returns its raw output."""

    name: str  # backend name: "onnx", "tflite", "hailo"
    batch: int | None  # the model's fixed batch size, or None when any batch is accepted
    output_shape: tuple[int | str | None, ...]  # per batch, as the model declares it

    def run(self, faces: UInt8Array) -> FloatArray:
        """`faces` uint8 [B, 112, 112, 3] RGB, B == batch when fixed; returns the float output [B, ...]."""
        ...

    def close(self) -> None: ...


class Embedder:
    """`embed(aligned uint8 [N, 112, 112, 3] RGB) -> float32 [N, D]`, L2-normalised; `model_id`, `dim`."""

    def __init__(self, runtime: EmbedderRuntime, model_id: str, path: Path) -> None:
        self.runtime = runtime
        self.model_id = model_id
        self.path = path
        self.dim = vector_length(runtime.output_shape, path)
        self.backend = runtime.name

    @property
    def batch(self) -> int:
        """How many faces one call into the model takes."""
        return self.runtime.batch or MAX_BATCH

    def embed(self, aligned: UInt8Array) -> FloatArray:
        faces = np.asarray(aligned)
        if faces.ndim == 3:
            faces = faces[None]
        if faces.shape[1:] != INPUT_SHAPE or faces.dtype != np.uint8:
            raise ValueError(
                f"embedder input must be uint8 [N, 112, 112, 3], got {faces.dtype} {faces.shape}"
            )
        count = len(faces)
        out = np.empty((count, self.dim), np.float32)
        step = self.batch
        for start in range(0, count, step):
            chunk = faces[start : start + step]
            used = len(chunk)
            if self.runtime.batch is not None and used < step:
                # A fixed-batch model: fill the rest of the batch with the last face (results discarded).
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - used, axis=0)])
            raw = np.asarray(self.runtime.run(np.ascontiguousarray(chunk)), np.float32)
            if raw.size != len(chunk) * self.dim:
                raise ModelError(
                    f"{self.path}: output of {raw.size} values for {len(chunk)} faces is not one "
                    f"{self.dim}-value vector per face"
                )
            out[start : start + used] = raw.reshape(len(chunk), self.dim)[:used]
        if not np.isfinite(out).all():
            raise ModelError(f"{self.path}: the model produced non-finite embeddings")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _vector_dim(shape: tuple[int | str | None, ...]) -> int | None:
    per_face = shape[1:] if len(shape) >= 2 else shape  # without the batch dimension
    sized = [d for d in per_face if d != 1]
    if len(sized) == 1 and isinstance(sized[0], int) and sized[0] >= 8:
        return sized[0]
    return None


def vector_length(shape: tuple[int | str | None, ...], path: Path) -> int:
    """D of an output shaped [B, D] (or [B, 1, 1, D], [B, D, 1, 1]); ModelError for anything else."""
    dim = _vector_dim(shape)
    if dim is not None:
        return dim
    raise ModelError(
        f"{path}: output shape {list(shape)} is not one embedding vector per face; "
        "is this a face embedding (ArcFace-style) model?"
    )


def model_id_for(path: str | Path) -> str:
    """`<file stem>-<first 12 hex digits of its sha256>`: the same file gives the same id everywhere."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the model ({exc.strerror})") from None
    return f"{path.stem}-{digest.hexdigest()[:12]}"


def _threads(threads: int | None) -> int:
    return threads or min(4, os.cpu_count() or 1)


class OnnxEmbedderRuntime:
    name = "onnx"

    def __init__(self, path: Path, *, mean: float, std: float, threads: int | None = None) -> None:
        import onnxruntime as ort  # the CPU runtimes load only when used

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = _threads(threads)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable models
            raise ModelError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shape = tuple(inputs[0].shape) if len(inputs) == 1 else ()
        if len(shape) != 4:
            found = [(i.name, i.shape) for i in inputs]
            raise ModelError(f"{path}: expected one 112x112 RGB image input, found {found}")
        if tuple(shape[1:]) == (3, ARCFACE_SIZE, ARCFACE_SIZE):
            self._channels_first = True
        elif tuple(shape[1:]) == INPUT_SHAPE:
            self._channels_first = False
        else:
            raise ModelError(f"{path}: input {list(shape)} is not a 112x112x3 face (NCHW or NHWC)")
        if len(outputs) != 1:
            found = [(o.name, o.shape) for o in outputs]
            raise ModelError(f"{path}: expected one embedding output, found {found}")
        self.batch = shape[0] if isinstance(shape[0], int) else None
        self.output_shape: tuple[int | str | None, ...] = tuple(outputs[0].shape)
        self._input_name = inputs[0].name
        self._mean = np.float32(mean)
        self._scale = np.float32(1.0 / std)

    def run(self, faces: UInt8Array) -> FloatArray:
        layout = faces.transpose(0, 3, 1, 2) if self._channels_first else faces
        tensor = np.subtract(layout, self._mean, dtype=np.float32)
        tensor *= self._scale
        result: Any = self._session.run(None, {self._input_name: tensor})[0]
        return np.asarray(result, np.float32)

    def close(self) -> None:
        pass


class TfliteEmbedderRuntime:
    name = "tflite"

    def __init__(self, path: Path, *, mean: float, std: float, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter: Any = Interpreter(model_path=str(path), num_threads=_threads(threads))
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: not a loadable TFLite model ({str(exc).splitlines()[0]})") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        shape = tuple(int(d) for d in inputs[0]["shape"]) if len(inputs) == 1 else ()
        if len(shape) != 4 or shape[1:] != INPUT_SHAPE:
            found = [i["shape"].tolist() for i in inputs]
            raise ModelError(f"{path}: expected one [B, 112, 112, 3] face input, found {found}")
        if inputs[0]["dtype"] != np.float32:
            raise ModelError(f"{path}: input type {np.dtype(inputs[0]['dtype']).name} is not supported")
        if len(outputs) != 1 or np.dtype(outputs[0]["dtype"]).kind != "f":
            found = [(o["name"], o["shape"].tolist()) for o in outputs]
            raise ModelError(f"{path}: expected one float embedding output, found {found}")
        # LiteRT models have a fixed batch (MobileFaceNet's is 2).
        self.batch: int | None = shape[0]
        self.output_shape: tuple[int | str | None, ...] = tuple(int(d) for d in outputs[0]["shape"])
        self._input_index = int(inputs[0]["index"])
        self._output_index = int(outputs[0]["index"])
        self._mean = np.float32(mean)
        self._scale = np.float32(1.0 / std)

    def run(self, faces: UInt8Array) -> FloatArray:
        tensor = np.subtract(faces, self._mean, dtype=np.float32)
        tensor *= self._scale
        self._interpreter.set_tensor(self._input_index, tensor)
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._output_index), np.float32)

    def close(self) -> None:
        pass


RuntimeFactory = Callable[..., EmbedderRuntime]
# The CPU runtimes by model file type; the Hailo embedder runtime opens .hef files (nvr/backends/hailo.py).
CPU_RUNTIMES: dict[str, RuntimeFactory] = {".onnx": OnnxEmbedderRuntime, ".tflite": TfliteEmbedderRuntime}


def open_embedder(
    model: str | Path,
    *,
    mean: float = DEFAULT_MEAN,
    std: float = DEFAULT_STD,
    threads: int | None = None,
) -> Embedder:
    """Open a CPU embedder (.onnx on ONNX Runtime, .tflite on LiteRT) with the model's normalisation."""
    path = Path(model)
    if not path.is_file():
        raise InputFileError(f"{path}: no such model file")
    factory = CPU_RUNTIMES.get(path.suffix.lower())
    if factory is None:
        raise ModelError(
            f"{path}: unsupported embedder file type {path.suffix or '(none)'!r}; expected .onnx or .tflite "
            "(.hef on a Hailo)"
        )
    runtime = factory(path, mean=mean, std=std, threads=threads)
    return Embedder(runtime, model_id_for(path), path)
