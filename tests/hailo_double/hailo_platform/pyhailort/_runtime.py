"""The simulated chip behind a ConfiguredInferModel: a device thread running jobs in order, a callback thread.

Outputs are real: for an SCRFD HEF the matching ONNX model runs on the uint8 input (normalised the way the
HEF does it internally) and each output is quantized with that HEF layer's own scale and zero point; ONNX
outputs are matched to HEF layers by shape. An embedder HEF (112x112x3 in, one NC output) gets the ONNX
embedder's vector quantized with its output's qp. Other HEFs get each layer's zero point (real value 0.0).
"""

from __future__ import annotations

import collections
import functools
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hailo_platform.pyhailort._pyhailort import (
    HAILO_QUEUE_IS_FULL,
    HAILO_STREAM_ABORT,
    DeviceTimeline,
    DoubleConfig,
    FormatType,
    Observed,
    fail,
)
from nvr.assets import assets_dir
from nvr.contracts.tensors import QuantInfo
from nvr.hef.model import HefLayer, NetworkGroup

AnyArray = npt.NDArray[Any]
EMBEDDER_ONNX = {512: "fr_feature_512.onnx"}
SCRFD_ONNX = {"scrfd_2_5g": "det_2.5g.onnx", "scrfd_500m": "det_500m.onnx", "scrfd_10g": "det_10g.onnx"}
WAIT_FOR_ASYNC_IN_DTOR_TIMEOUT_S = 10.0

_sessions: dict[str, Any] = {}
_sessions_lock = threading.Lock()


def _onnx_session(path: str) -> Any:
    with _sessions_lock:
        if path not in _sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.intra_op_num_threads = 1
            _sessions[path] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return _sessions[path]


_compute_log_lock = threading.Lock()


def _log_compute(path: str, kind: str, seconds: float) -> None:
    """One line per frame computed: `<epoch s> <kind> <seconds>` (HAILO_DOUBLE_COMPUTE_LOG; benchmarks
    tell the double's own host compute apart from the pipeline's time)."""
    with _compute_log_lock, open(path, "a") as f:
        f.write(f"{time.time():.6f} {kind} {seconds:.6f}\n")


def _looks_like_scrfd(outputs: tuple[HefLayer, ...]) -> bool:
    return len(outputs) == 9 and sorted(layer.shape[2] for layer in outputs) == [2, 2, 2, 8, 8, 8, 20, 20, 20]


def _looks_like_embedder(group: NetworkGroup) -> bool:
    """One 112x112x3 input and one NC output: an ArcFace-style face embedder."""
    return (
        len(group.inputs) == 1
        and group.inputs[0].shape == (112, 112, 3)
        and len(group.outputs) == 1
        and group.outputs[0].device_format == "NC"
    )


class Compute:
    """Turns one input frame into the HEF's raw (quantized) output maps, in the HEF's sorted order."""

    def __init__(self, group: NetworkGroup, config: DoubleConfig) -> None:
        self.layers = group.outputs
        self.input_shape = group.inputs[0].shape
        self._session: Any = None
        self._replay = config.replay
        self._cached: list[AnyArray] | None = None
        self._run: Callable[[npt.NDArray[np.uint8]], list[AnyArray]] = self._zeros_for
        self._compute_log = config.compute_log
        self.kind = "other"
        if _looks_like_scrfd(group.outputs):
            self.kind = "detector"
            prefix = group.outputs[0].name.split("/")[0]
            onnx = config.onnx or str(
                assets_dir() / "models" / "scrfd" / SCRFD_ONNX.get(prefix, f"{prefix}.onnx")
            )
            if not Path(onnx).is_file():
                raise RuntimeError(
                    f"hailo double: no ONNX model for {prefix} at {onnx} (set HAILO_DOUBLE_ONNX)"
                )
            self._session = _onnx_session(onnx)
            self._run = self._scrfd
        elif _looks_like_embedder(group):
            self.kind = "embedder"
            dim = group.outputs[0].shape[2]
            onnx = config.embedder_onnx or (
                str(assets_dir() / "models" / "recognition" / EMBEDDER_ONNX[dim])
                if dim in EMBEDDER_ONNX
                else ""
            )
            if not Path(onnx).is_file():
                raise RuntimeError(
                    f"hailo double: no ONNX embedder for a {dim}-value output at {onnx or '-'} "
                    "(set HAILO_DOUBLE_EMBEDDER_ONNX)"
                )
            self._session = _onnx_session(onnx)
            self._run = self._embed

    def run(self, frame: npt.NDArray[np.uint8]) -> list[AnyArray]:
        if self._replay and self._cached is not None:
            return self._cached
        started = time.perf_counter()
        outputs = self._run(frame) if self._session is not None else self._zeros()
        if self._compute_log is not None:
            _log_compute(self._compute_log, self.kind, time.perf_counter() - started)
        if self._replay:
            self._cached = outputs
        return outputs

    def _zeros_for(self, frame: npt.NDArray[np.uint8]) -> list[AnyArray]:
        return self._zeros()

    def _zeros(self) -> list[AnyArray]:
        return [self._quantize(np.zeros(layer.shape, np.float32), layer) for layer in self.layers]

    def _scrfd(self, frame: npt.NDArray[np.uint8]) -> list[AnyArray]:
        tensor = ((frame.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        session = self._session
        results = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(tensor)})
        remaining = [np.asarray(r, np.float32) for r in results]
        outputs = []
        for layer in self.layers:
            h, w, c = layer.shape
            matches = [
                i
                for i, r in enumerate(remaining)
                if r.size == h * w * c
                and (r.size // r.shape[-1]) % (h * w) == 0
                and r.shape[-1] * (r.size // r.shape[-1] // (h * w)) == c
            ]
            if not matches:
                raise RuntimeError(f"hailo double: no ONNX output matches {layer.name} {layer.shape}")
            outputs.append(self._quantize(remaining.pop(matches[0]).reshape(h, w, c), layer))
        return outputs

    def _embed(self, frame: npt.NDArray[np.uint8]) -> list[AnyArray]:
        """The ArcFace recipe the Model Zoo compiles into the HEF: RGB, (x - 127.5) / 128, NCHW float."""
        tensor = ((frame.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        session = self._session
        (embedding,) = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(tensor)})
        layer = self.layers[0]
        return [self._quantize(np.asarray(embedding, np.float32).reshape(layer.shape), layer)]

    @staticmethod
    def _quantize(values: npt.NDArray[np.float32], layer: HefLayer) -> AnyArray:
        quant: QuantInfo = layer.quant
        dtype = np.uint16 if layer.dtype == "uint16" else np.uint8
        return quant.quantize(values, dtype)


@dataclass
class Frame:
    input: AnyArray  # the bytes the device reads (DMA from the user's buffer)
    outputs: list[tuple[AnyArray, FormatType]]  # user memory to write, per output in sorted order


@dataclass
class Job:
    frames: list[Frame]
    on_done: Callable[[int], None]  # C++ completion -> queues the Python callback
    submitted_at: float = field(default_factory=time.perf_counter)
    priority: int = 16  # the scheduler priority when it was submitted
    finish_at: float | None = None  # when the chip is done with it (perf_counter), once it ran
    done: threading.Event = field(default_factory=threading.Event)
    callback_done: threading.Event = field(default_factory=threading.Event)


class SimulatedCore:
    """One configured network on the chip: in-order execution, bounded queue, abort on shutdown.

    Like HailoRT, where the driver frees a job's queue slots and wakes its callback worker in C, a job's
    slots are free and its callback due at the moment the chip finishes it (`Job.finish_at`, on the device
    timeline), however late the Python thread that simulates the chip gets the GIL: the host's
    `wait_for_async_ready` and the callback thread wake at that moment themselves.
    """

    def __init__(
        self,
        compute: Compute,
        config: DoubleConfig,
        queue_size: int,
        hang: bool,
        timeline: DeviceTimeline,
        latency_s: float,
        observed: Observed,
    ) -> None:
        self.compute = compute
        self.config = config
        self.queue_size = queue_size
        self.timeline = timeline
        self.latency_s = latency_s
        self.observed = observed
        self.priority = 16  # HailoRT's default scheduler priority
        self._hang_after = config.hang_after if hang else None
        self._cond = threading.Condition()
        self._queued: collections.deque[Job] = collections.deque()  # submitted, not yet run by the chip
        self._pending: collections.deque[Job] = collections.deque()  # submitted, not yet finished (in order)
        self._in_flight = 0  # frames of `_pending`
        self._aborted = False
        self._frame_index = 0
        self._deadline = 0.0
        self._callbacks: collections.deque[tuple[Job, Callable[[int], None], int]] = collections.deque()
        self._callback_cond = threading.Condition()
        self._unreported = 0  # jobs submitted whose callback is not queued yet (under _callback_cond)
        self._callback_thread: threading.Thread | None = None
        self._device = threading.Thread(target=self._device_loop, name="hailo-double-device", daemon=True)
        self._device.start()

    # -- queue slots (under self._cond) ----------------------------------------------------------------
    def _occupied(self) -> int:
        """Frames in the device's queue now: jobs finish in order, so retire the finished head."""
        now = time.perf_counter()
        pending = self._pending
        while pending and pending[0].finish_at is not None and pending[0].finish_at <= now:
            self._in_flight -= len(pending.popleft().frames)
        return self._in_flight

    def _wait(self, ready: Callable[[], bool], timeout_s: float) -> bool:
        """Wait for `ready`, waking by itself when the next job in the queue finishes on the chip."""
        end = time.perf_counter() + timeout_s
        while not ready():
            now = time.perf_counter()
            if now >= end:
                return False
            head = self._pending[0].finish_at if self._pending else None
            self._cond.wait(end - now if head is None else min(end - now, max(0.0, head - now)))
        return True

    # -- host side -------------------------------------------------------------------------------------
    def wait_ready(self, timeout_s: float, frames: int) -> bool:
        with self._cond:
            room = self.queue_size - frames
            return self._wait(lambda: self._aborted or self._occupied() <= room, timeout_s)

    @property
    def aborted(self) -> bool:
        return self._aborted

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._aborted:
                raise fail(HAILO_STREAM_ABORT, "Pipeline was aborted")
            if self._occupied() + len(job.frames) > self.queue_size:
                raise fail(HAILO_QUEUE_IS_FULL, "Failed to push buffers: queue is full")
            if self._callback_thread is None:  # like pyhailort: created on the first run_async
                self._callback_thread = threading.Thread(
                    target=self._callback_loop, name="hailo-double-callbacks", daemon=True
                )
                self._callback_thread.start()
            self._in_flight += len(job.frames)
            job.priority = self.priority
            self.timeline.arrive(job.priority, len(job.frames))
            self.observed.max_in_flight = max(self.observed.max_in_flight, self._in_flight)
            sizes = self.observed.job_sizes
            sizes[len(job.frames)] = sizes.get(len(job.frames), 0) + 1
            with self._callback_cond:
                self._unreported += 1
            self._queued.append(job)
            self._pending.append(job)
            self._cond.notify_all()

    def shutdown(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
            self._wait(lambda: self._occupied() == 0, WAIT_FOR_ASYNC_IN_DTOR_TIMEOUT_S)
        with self._callback_cond:
            self._callback_cond.notify_all()  # the callback thread ends once every callback has run
        if threading.current_thread() is not self._device:
            self._device.join(WAIT_FOR_ASYNC_IN_DTOR_TIMEOUT_S)

    def enqueue_callback(self, job: Job, callback: Callable[[int], None], status: int) -> None:
        with self._callback_cond:
            self._callbacks.append((job, callback, status))
            self._unreported -= 1
            self._callback_cond.notify()

    # -- device side -----------------------------------------------------------------------------------
    def _device_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queued) or self._aborted)
                if not self._queued:
                    return
                job = self._queued.popleft()
            status = self._execute(job)
            job.on_done(status)  # the callback thread runs it when the chip finishes the job
            finish_at = job.finish_at or 0.0
            with self._cond:
                self._cond.notify_all()  # waiters now know when the job's slots free up
                # The next job starts when this one ends. A network alone on the chip gets its next job's
                # place on the timeline as soon as it is queued (frames run in the order they came), so its
                # slots free on time however late this thread gets the GIL; while another network has
                # frames waiting too, the choice (by priority) is made when this job ends.
                self._cond.wait_for(
                    functools.partial(self._next_may_start, finish_at),
                    timeout=max(0.0, finish_at - time.perf_counter()),
                )

    def _next_may_start(self, finish_at: float) -> bool:
        """Under self._cond: whether the device thread may take its next job now (see _device_loop)."""
        if self._aborted or time.perf_counter() >= finish_at:
            return True
        return bool(self._queued) and self.timeline.alone(sum(len(job.frames) for job in self._queued))

    def _execute(self, job: Job) -> int:
        """Run the job on the chip's timeline: outputs written, `job.finish_at` set; returns its status."""
        status = 0
        for index, frame in enumerate(job.frames):
            if self._hang_after is not None and self._frame_index >= self._hang_after:
                with self._cond:  # the chip stops answering; only an abort (shutdown) ends the wait
                    self._cond.wait_for(lambda: self._aborted)
            if self._aborted:
                self.timeline.withdraw(job.priority, len(job.frames) - index)
                job.finish_at = max(self._deadline, time.perf_counter())
                return HAILO_STREAM_ABORT
            outputs = self.compute.run(frame.input)
            for layer, data, (dest, fmt) in zip(self.compute.layers, outputs, frame.outputs, strict=True):
                if (
                    fmt is FormatType.FLOAT32
                ):  # HailoRT dequantizes on the host, per feature when the HEF says so
                    np.copyto(dest.reshape(-1).view(np.float32), layer.quant.dequantize(data).reshape(-1))
                else:
                    np.copyto(dest.reshape(-1).view(data.dtype), data.reshape(-1), casting="no")
            if self._frame_index in self.config.fail_frames and status == 0:
                status = self.config.fail_status
            self._frame_index += 1
            # The chip's schedule depends on when frames arrived, not on how promptly Python threads run;
            # the networks sharing the chip take turns on its one timeline.
            self._deadline = self.timeline.book(
                max(self._deadline, job.submitted_at), self.latency_s, job.priority
            )
        job.finish_at = self._deadline
        return status

    def _callback_loop(self) -> None:
        while True:
            with self._callback_cond:
                self._callback_cond.wait_for(lambda: bool(self._callbacks) or self._all_done(), timeout=0.5)
                if not self._callbacks:
                    if self._all_done():
                        return
                    continue
                job, callback, status = self._callbacks.popleft()
            delay = (job.finish_at or 0.0) - time.perf_counter()
            if delay > 0:  # HailoRT's worker is woken when the chip finishes the job, not before
                time.sleep(delay)
            job.done.set()
            try:
                callback(status)
            except BaseException:
                # An exception escaping a Python callback reaches a std::thread: std::terminate.
                sys.stderr.write(
                    "terminate called after throwing an instance of 'pybind11::error_already_set'\n"
                )
                traceback.print_exc()
                sys.stderr.flush()
                os.abort()
            job.callback_done.set()

    def _all_done(self) -> bool:
        return self._aborted and self._unreported == 0
