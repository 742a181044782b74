"""The face embedder family (ArcFace-style): an aligned 112x112 RGB face in, an L2-normalised vector out.

The family owns what every embedder shares: the 112x112 ArcFace-aligned input (nvr/contracts/alignment.py),
batching to what the model accepts (`fr_feature_512.onnx` takes batch 1 only, `mobilefacenet_192.tflite` a
fixed 2, insightface's `w600k_mbf.onnx` any), recognising the output (one vector per face, or a one-line
`ModelError`), L2 normalisation, and the model id (from the file's hash: embeddings of two models are never
compared). A backend only runs a batch (`EmbedderRuntime`: nvr/backends/onnx.py, tflite.py; the Hailo's
runs beside the detector, nvr/backends/hailo_embedder.py); the normalisation, (x - mean) / std, is the
model's (inside the HEF on a Hailo).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nvr.contracts.alignment import ARCFACE_SIZE
from nvr.contracts.arrays import FloatArray, UInt8Array
from nvr.errors import InputFileError, ModelError
from nvr.families.base import InputSpec, Role, Shape

if TYPE_CHECKING:  # the registry itself loads no runtime, but a family needs none of it to be listed
    from nvr.backends.base import EmbedderRuntime

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


def open_embedder(
    model: str | Path,
    *,
    mean: float = DEFAULT_MEAN,
    std: float = DEFAULT_STD,
    configs: Mapping[str, Any] | None = None,
) -> Embedder:
    """Open an embedder file on the backend that runs its file type (the backend registry), with the
    model's normalisation; `configs` holds backends' settings by key (defaults otherwise)."""
    from nvr.backends import backend_for_suffix

    path = Path(model)
    if not path.is_file():
        raise InputFileError(f"{path}: no such model file")
    owner = backend_for_suffix(path.suffix)
    if owner is None or owner.open_embedder is None:
        raise ModelError(
            f"{path}: cannot run {path.suffix or 'this file'} face embedders here; expected .onnx or .tflite "
            "(a .hef embedder runs in the daemon, beside the detector)"
        )
    config = (configs or {}).get(owner.key) or owner.config()
    return Embedder(owner.open_embedder(path, config, mean, std), model_id_for(path), path)
