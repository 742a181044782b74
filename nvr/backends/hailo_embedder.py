"""The face embedder on the Hailo: an ArcFace-style HEF configured beside the detector on the same VDevice.

HailoRT wants one thread to own the VDevice and its models, so the embedder has no thread of its own: its
requests go to the engine thread (hailo_engine.py), which submits them between detection jobs, and
HailoRT's scheduler (ROUND_ROBIN) shares the chip between the two networks. `HailoEmbedder` is the
embedder interface the recognition code uses: `embed(uint8 [N,112,112,3] RGB) -> float32 [N, D]`,
L2-normalised, plus `model_id` and `dim`. The HEF's single NC output is read as uint8 and dequantized with
its own scale and zero-point (normalisation of the input is inside the HEF, as the Model Zoo compiles it).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import structlog

from nvr.backends.hailo_device import (
    HailoSettings,
    JobPlan,
    configure_model,
    create_model,
    plan_jobs,
    quant_for,
)
from nvr.contracts.tensors import QuantInfo
from nvr.errors import DeviceError, ModelError
from nvr.hef import HefInfo

if TYPE_CHECKING:
    from nvr.backends.hailo_engine import HailoEngine

log = structlog.get_logger("nvr.backends.hailo")
FACE_SIZE = 112  # the ArcFace template's side (nvr/contracts alignment)
_HASH_CHUNK = 1 << 20


def model_id_of(path: str | Path) -> str:
    """A model id from the file's bytes: embeddings of different files are never compared."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return f"{Path(path).stem}-{digest.hexdigest()[:12]}"


def check_embedder(info: HefInfo) -> int:
    """The embedding size of an embedder HEF; a one-line ModelError for any other HEF."""
    group = info.default_group
    inputs, outputs = group.inputs, group.outputs
    if (
        len(inputs) == 1
        and inputs[0].shape == (FACE_SIZE, FACE_SIZE, 3)
        and len(outputs) == 1
        and outputs[0].shape[:2] == (1, 1)
    ):
        return int(outputs[0].shape[2])
    found_in = ", ".join("x".join(map(str, layer.shape)) for layer in inputs)
    found_out = ", ".join("x".join(map(str, layer.hailort_shape)) for layer in outputs)
    raise ModelError(
        f"{info.path}: not a face embedder: expected one {FACE_SIZE}x{FACE_SIZE}x3 input and one vector "
        f"output, found inputs [{found_in}] and outputs [{found_out}]"
    )


@dataclass(eq=False)
class EmbedRequest:
    """Faces waiting for (or on) the device; `done` is set when every row has come back or failed."""

    faces: npt.NDArray[np.uint8]  # [N, 112, 112, 3], owned, C-contiguous and writable (HailoRT binds it)
    raw: npt.NDArray[Any]  # [N, D] quantized outputs, written by HailoRT before the callback
    next_row: int = 0  # first row not yet submitted (engine thread only)
    remaining: int = 0  # rows not yet completed (callback thread only)
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class EmbedderNet:
    """The embedder's configured model on the session's VDevice; driven by the engine thread."""

    def __init__(self, hailo: ModuleType, vdevice: Any, info: HefInfo, settings: HailoSettings) -> None:
        self.info = info
        self.dim = check_embedder(info)
        model = create_model(hailo, vdevice, info)
        layer = info.default_group.outputs[0]
        model.input().set_format_type(hailo.FormatType.UINT8)
        wide = layer.dtype == "uint16"
        self.dtype: type[np.unsignedinteger[Any]] = np.uint16 if wide else np.uint8
        model.output().set_format_type(hailo.FormatType.UINT16 if wide else hailo.FormatType.UINT8)
        self.quant: QuantInfo = quant_for(info, layer, model.output().quant_infos[0])
        self.output_name = str(model.output_names[0])
        self.model = model
        self.configured = configure_model(hailo, vdevice, info, model, max(1, settings.embedder_batch))
        self.queue_size = int(self.configured.get_async_queue_size())
        self.plan: JobPlan = plan_jobs(
            self.queue_size, max(1, settings.embedder_batch), settings.max_in_flight
        )
        log.info(
            "Hailo embedder configured beside the detector",
            model=info.path.name, dim=self.dim, queue_frames=self.queue_size, batch=self.plan.batch,
        )  # fmt: skip
        self.pending: collections.deque[EmbedRequest] = collections.deque()  # engine thread only
        self.wake: Callable[[], None] = lambda: None  # the engine's: called when a job completes
        self.submitted = 0
        self.completed = 0  # written only by HailoRT's callbacks
        self.last_progress = time.monotonic()
        self._callback_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self.submitted - self.completed

    def can_launch(self) -> bool:
        """Faces are waiting and the device queue has room for the next job."""
        if not self.pending:
            return False
        request = self.pending[0]
        n = min(self.plan.batch, len(request.faces) - request.next_row)
        return self.in_flight + n <= self.plan.frames

    def launch(self, hailo: ModuleType) -> None:
        """Submit pending faces while the device queue has room; never waits for the device."""
        while self.pending:
            request = self.pending[0]
            n = min(self.plan.batch, len(request.faces) - request.next_row)
            if self.in_flight + n > self.plan.frames:
                return
            rows = range(request.next_row, request.next_row + n)
            bindings = []
            for row in rows:
                binding = self.configured.create_bindings(output_buffers={self.output_name: request.raw[row]})
                binding.input().set_buffer(request.faces[row])
                bindings.append(binding)
            # Room was counted above; this returns at once unless HailoRT frees slots a moment after we do.
            self.configured.wait_for_async_ready(timeout_ms=1000, frames_count=n)
            if self.in_flight == 0:
                self.last_progress = time.monotonic()
            self.submitted += n
            try:
                self.configured.run_async(bindings, functools.partial(self._on_done, request, n))
            except hailo.HailoRTException:
                self.submitted -= n
                raise
            request.next_row += n
            if request.next_row == len(request.faces):
                self.pending.popleft()

    def _on_done(self, request: EmbedRequest, n: int, completion_info: Any) -> None:
        """HailoRT's callback thread: must never raise (it would abort the process)."""
        try:
            exc = completion_info.exception
            with self._callback_lock:  # with hailort_service, callbacks come from libhailort's threads
                if exc is not None:
                    request.error = f"{type(exc).__name__}: {exc}"
                self.last_progress = time.monotonic()
                self.completed += n
                request.remaining -= n
                finished = request.remaining <= 0
            if finished:
                request.done.set()
            if self.pending:
                self.wake()  # room on the device for the faces still waiting
        except BaseException:
            request.error = request.error or "the embedder callback failed"
            request.done.set()

    def fail_pending(self, why: str) -> None:
        for request in self.pending:
            request.error = why
            request.done.set()
        self.pending.clear()

    def shutdown(self) -> None:
        try:
            self.configured.shutdown()
        except Exception as exc:
            log.warning("Hailo shutdown reported an error", model=self.info.path.name, error=str(exc))


class HailoEmbedder:
    """The embedder interface on the Hailo. Thread-safe: requests are queued to the engine thread."""

    name = "hailo"

    def __init__(
        self,
        engine: HailoEngine,
        info: HefInfo,
        dim: int,
        quant: QuantInfo,
        dtype: type[np.unsignedinteger[Any]],
        *,
        owns_engine: bool = False,
    ) -> None:
        self._engine = engine
        self._info = info
        self._quant = quant
        self._dtype = dtype
        self._owns_engine = owns_engine
        self.dim = dim
        self.path = info.path
        self.model_id = model_id_of(info.path)
        self.input_size = (FACE_SIZE, FACE_SIZE)

    def embed(self, aligned: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """uint8 [N, 112, 112, 3] RGB faces (ArcFace-aligned) -> float32 [N, dim], each row of unit length."""
        vectors = self.dequantized(aligned)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit

    def dequantized(self, aligned: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """The HEF's output for each face, dequantized with its own scale and zero-point (not normalised)."""
        if aligned.ndim != 4 or aligned.shape[1:] != (FACE_SIZE, FACE_SIZE, 3) or aligned.dtype != np.uint8:
            raise ValueError(
                f"faces must be uint8 [N, {FACE_SIZE}, {FACE_SIZE}, 3], got {aligned.dtype} {aligned.shape}"
            )
        n = len(aligned)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        request = EmbedRequest(
            faces=np.array(aligned, np.uint8, order="C", copy=True),
            raw=np.zeros((n, self.dim), self._dtype),
            remaining=n,
        )
        self._engine.submit_embedding(request)
        timeout = 3 * self._engine.settings.hang_timeout_s + 5.0
        if not request.done.wait(timeout):
            raise DeviceError(f"{self.path}: the Hailo device returned no embedding in {timeout:.0f} s")
        if request.error is not None:
            raise DeviceError(f"{self.path}: Hailo embedding failed: {request.error}")
        return self._quant.dequantize(request.raw)

    def owning(self) -> HailoEmbedder:
        """The same embedder, closing the engine on `close()` (for an engine opened just for it)."""
        return HailoEmbedder(self._engine, self._info, self.dim, self._quant, self._dtype, owns_engine=True)

    def close(self) -> None:
        if self._owns_engine:
            self._engine.close()


class HailoEmbedderRuntime:
    """The embedder family's runtime protocol (nvr/families/arcface.py `EmbedderRuntime`) on the Hailo:
    `run` returns the dequantized vectors; the family normalises them and names the model."""

    name = "hailo"
    batch: int | None = None  # any number of faces per call: the engine splits them into device jobs

    def __init__(self, embedder: HailoEmbedder) -> None:
        self.embedder = embedder
        self.output_shape: tuple[int | str | None, ...] = (None, embedder.dim)

    def run(self, faces: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        return self.embedder.dequantized(faces)

    def close(self) -> None:
        self.embedder.close()


def open_embedder_runtime(
    hef_path: str | Path, settings: HailoSettings | None = None
) -> HailoEmbedderRuntime:
    """A HEF embedder as the family's runtime, on a VDevice of its own (`nvr faces`)."""
    return HailoEmbedderRuntime(open_hailo_embedder(hef_path, settings))


def open_hailo_embedder(hef_path: str | Path, settings: HailoSettings | None = None) -> HailoEmbedder:
    """An embedder with a VDevice of its own (no detector): for `nvr faces` and tests."""
    from nvr.backends.hailo_engine import HailoEngine

    engine = HailoEngine(None, settings or HailoSettings(), embedder_hef=hef_path).start()
    embedder = engine.embedder(owns_engine=True)
    assert embedder is not None
    return embedder
