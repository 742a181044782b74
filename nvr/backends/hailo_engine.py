"""The Hailo engine: an asynchronous inference engine around HailoRT's InferModel API (hailo_platform 4.18+).

One thread owns the VDevice, the InferModel and the ConfiguredInferModel (HailoRT requires them to stay in
the process, and is simplest to reason about from one thread). Frames arrive as references to their
pixels (`nvr.contracts.frameref.FrameRef`) in a bounded queue that drops the oldest frame when the
device falls behind. The engine copies each frame once, into a pre-allocated input buffer bound to the
device, and releases the reference at once; it does so for the next job while the device is still busy,
so a freed device slot is refilled with one run_async call. Several jobs are in flight; HailoRT's
callback thread only hands the finished buffer set to the result queue. A result is the device's raw
uint8 maps with each output's quantization (`RawOutput`), tagged with its frame; the consumer (the SCRFD
postprocessor) releases it, which returns its buffers to the pool. How many frames go in one job, and how
many jobs are in flight, follows HailoRT's async queue size (hailo_device.plan_jobs), so the device never
waits for the host.

An optional face embedder HEF is configured on the same VDevice; its requests come in through
`submit_embedding` and are launched by the same thread, between detection jobs (hailo_embedder.py).

Failures: setup problems raise one-line `NvrError`s (see hailo_diagnostics). At run time a failed job is
logged, counted and delivered with `error` set; jobs that stop completing (a hung device) or keep failing
make the engine tear the device down and re-create it, saying so.
"""

from __future__ import annotations

import collections
import functools
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from nvr.backends import hailo_diagnostics as diag
from nvr.backends.hailo_device import DetectorNet, HailoSettings, InferenceResult, JobPlan, Session
from nvr.backends.hailo_embedder import EmbedRequest, HailoEmbedder, HailoEmbedderRuntime, check_embedder
from nvr.contracts.frameref import FrameRef
from nvr.errors import DeviceError, NvrError
from nvr.hef import read_hef

__all__ = ["EngineStats", "HailoEngine"]

log = structlog.get_logger("nvr.backends.hailo")
_POLL_S = 0.1  # how often a waiting engine thread looks at stop / hang conditions
_FAILURE_LOG_INTERVAL_S = 10.0  # failed jobs are logged at most this often (with a running count)


@dataclass(slots=True)
class EngineStats:
    submitted: int = 0  # frames handed to submit()
    dropped: int = 0  # frames dropped oldest-first because the queue was full
    torn: int = 0  # frames whose slot was rewritten while copied
    rejected: int = 0  # frames of the wrong size
    completed: int = 0  # frames whose job completed (successfully or not)
    failed: int = 0  # frames whose job reported an error
    restarts: int = 0  # times the device was torn down and re-created


@dataclass(slots=True)
class _Job:
    """One run_async call being prepared: a buffer set and its bindings per frame."""

    entries: list[InferenceResult]
    bindings: list[Any]


class _RestartError(Exception):
    """The device must be torn down and re-created; the message says why."""


class HailoEngine:
    """The asynchronous engine. `start()`, then `submit()` frames and `get_result()`; `close()` at the end.

    `hef_path` is the detector (None: an embedder-only engine); `embedder_hef` an optional face embedder
    configured on the same device, used through `embedder()`."""

    def __init__(
        self,
        hef_path: str | Path | None,
        settings: HailoSettings | None = None,
        *,
        embedder_hef: str | Path | None = None,
    ) -> None:
        self.settings = settings or HailoSettings()
        self.hailo = diag.import_hailort()
        self.info = read_hef(hef_path) if hef_path is not None else None
        self.embedder_info = read_hef(embedder_hef) if embedder_hef is not None else None
        if self.embedder_info is not None:
            check_embedder(self.embedder_info)  # before touching the device
        for info in (self.info, self.embedder_info):
            if info is not None:
                diag.check_hailort_reads(info, str(self.hailo.__version__))
        self.stats = EngineStats()
        self.plan: JobPlan | None = None  # the detector's, once started
        self._embedder: HailoEmbedder | None = None
        self._embed_requests: collections.deque[EmbedRequest] = collections.deque()
        self._queue: collections.deque[FrameRef] = collections.deque()
        self._queue_cond = threading.Condition()
        self._results: queue.SimpleQueue[InferenceResult] = queue.SimpleQueue()
        self._stopping = False
        self._started = threading.Event()
        self._start_error: NvrError | None = None
        self._consecutive_failures = 0
        # The next detector job, copied and bound while the device is still busy with the jobs before it:
        # when a slot frees, only run_async is left to do. With a short device queue (2 frames: one
        # running, one waiting) the host has one frame's device time to get the next job in; copying the
        # frame, taking the pipeline's lock and binding buffers after the slot freed would spend part of
        # it, and each may wait for the GIL behind the threads that the completion itself woke.
        self._staged: _Job | None = None
        self._last_error = ""
        self._callback_errors = 0
        self.input_shape: tuple[int, int, int] = (
            self.info.default_group.inputs[0].shape if self.info is not None else (0, 0, 0)
        )
        self._thread = threading.Thread(target=self._run, name="hailo-engine", daemon=True)

    # -- the consumer's side -----------------------------------------------------------------------------
    def start(self) -> HailoEngine:
        """Open the device on the engine thread; raises the NvrError that stopped it, if any."""
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def submit(self, frame: FrameRef) -> None:
        """Queue a frame; never blocks. When the queue is full the oldest waiting frame is dropped."""
        with self._queue_cond:
            self._queue.append(frame)
            self.stats.submitted += 1
            if len(self._queue) > self.settings.input_queue:
                self._queue.popleft().release()
                self.stats.dropped += 1
            self._queue_cond.notify()

    def submit_embedding(self, request: EmbedRequest) -> None:
        """Queue faces for the embedder (HailoEmbedder.embed); `request.done` is set when they are back."""
        with self._queue_cond:
            if self._stopping or self.embedder_info is None:
                request.error = "the Hailo engine is closed" if self._stopping else "no embedder configured"
                request.done.set()
                return
            self._embed_requests.append(request)
            self._queue_cond.notify()

    def embedder(self, *, owns_engine: bool = False) -> HailoEmbedder | None:
        """The embedder interface of the engine's embedder HEF (None without one); after `start()`."""
        return self._embedder if not owns_engine or self._embedder is None else self._embedder.owning()

    def embedder_runtime(self) -> HailoEmbedderRuntime | None:
        """The embedder as the family's runtime (nvr/families/arcface.py), sharing this engine's device."""
        embedder = self.embedder()
        return None if embedder is None else HailoEmbedderRuntime(embedder)

    def get_result(self, timeout: float | None = None) -> InferenceResult | None:
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking frames, let the jobs in flight finish, release the device (bounded by `timeout`)."""
        with self._queue_cond:
            self._stopping = True
            self._queue_cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._queue_cond:
            while self._queue:
                self._queue.popleft().release()
            while self._embed_requests:
                request = self._embed_requests.popleft()
                request.error = "the Hailo engine closed"
                request.done.set()

    def __enter__(self) -> HailoEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        session: Session | None = None
        try:
            session = self._open_session()
        except NvrError as exc:
            self._start_error = exc
        except Exception as exc:  # an unexpected HailoRT failure still ends start() with a one-line error
            self._start_error = DeviceError(f"cannot start the Hailo engine: {exc}")
        self._started.set()
        while session is not None:
            try:
                self._serve(session)
                if session.embedder is not None:  # faces not yet on the device will not be
                    session.embedder.fail_pending("the Hailo engine closed")
                session.close(drain_s=min(5.0, self.settings.hang_timeout_s))
                return
            except _RestartError as why:
                log.warning("tearing down and re-creating the Hailo device", reason=str(why))
                session = self._restart(session)
            except Exception:
                log.exception("Hailo engine failed; tearing down and re-creating the Hailo device")
                session = self._restart(session)

    def _wake(self) -> None:
        """HailoRT's callback thread: an embedder job finished, so faces waiting for room may go."""
        with self._queue_cond:
            self._queue_cond.notify()

    def _open_session(self) -> Session:
        session = Session(self.hailo, self.info, self.settings, self.embedder_info)
        if session.embedder is not None:
            session.embedder.wake = self._wake
        if session.detector is not None:
            self.plan = session.detector.plan
        if session.embedder is not None and self._embedder is None:
            net = session.embedder
            self._embedder = HailoEmbedder(self, net.info, net.dim, net.quant, net.dtype)
        return session

    def _restart(self, session: Session) -> Session | None:
        self.stats.restarts += 1
        if session.embedder is not None:
            session.embedder.fail_pending("the Hailo device was re-created")
        try:
            session.close(drain_s=0.0)  # aborts what is in flight: those frames come back with an error
        except Exception as exc:
            log.warning("closing the failed Hailo device reported an error", error=str(exc))
        return self._reopen()

    def _reopen(self) -> Session | None:
        while not self._stopping:
            try:
                session = self._open_session()
                log.warning("Hailo device re-created; inference continues")
                self._consecutive_failures = 0
                return session
            except Exception as exc:
                message = exc.message if isinstance(exc, NvrError) else str(exc)
                log.error("cannot re-create the Hailo device; retrying", error=message)
                time.sleep(self.settings.restart_delay_s)
        return None

    def _check(self, session: Session) -> None:
        """Raise _RestartError when the device hangs (jobs in flight, none completing) or keeps failing."""
        if session.in_flight > 0:
            stalled = time.monotonic() - session.last_progress()
            if stalled > self.settings.hang_timeout_s:
                raise _RestartError(
                    f"the Hailo device stopped completing jobs ({session.in_flight} frames stuck for "
                    f"{stalled:.1f} s)"
                )
        if self._consecutive_failures >= self.settings.max_consecutive_failures:
            raise _RestartError(
                f"{self._consecutive_failures} Hailo jobs failed in a row (last: {self._last_error})"
            )

    def _serve(self, session: Session) -> None:
        try:
            self._serve_jobs(session)
        finally:
            job, self._staged = self._staged, None
            if job is not None:  # never sent: its frames get no result (the consumer counts them dropped)
                for entry in job.entries:
                    entry.release()

    def _serve_jobs(self, session: Session) -> None:
        det = session.detector
        # Long enough that a busy device does not look like a timeout (HailoRT logs each one as an error).
        timeout_ms = 1000
        logged_failures, logged_at = 0, -_FAILURE_LOG_INTERVAL_S
        while True:
            with self._queue_cond:
                faces_can_go = session.embedder is not None and session.embedder.can_launch()
                waiting = self._staged or self._queue or self._embed_requests or faces_can_go
                if not (waiting or self._stopping):
                    self._queue_cond.wait(_POLL_S)  # submit(), submit_embedding() and the embedder wake it
                if self._stopping:
                    return
                n = min(det.frames_per_job, len(self._queue)) if det is not None else 0
                if session.embedder is not None:
                    session.embedder.pending.extend(self._embed_requests)
                self._embed_requests.clear()
            self._check(session)
            now = time.monotonic()
            if self.stats.failed > logged_failures and now - logged_at >= _FAILURE_LOG_INTERVAL_S:
                log.warning(
                    "Hailo job failed; carrying on", error=self._last_error, failed_frames=self.stats.failed
                )
                logged_failures, logged_at = self.stats.failed, now
            self._launch_embeddings(session)
            if det is None:
                continue
            if self._staged is None and n > 0:
                entries = self._take_buffers(session, det, n)
                self._staged = self._prepare(det, entries) if entries is not None else None
            job = self._staged
            if job is None:
                continue
            try:
                det.configured.wait_for_async_ready(timeout_ms=timeout_ms, frames_count=len(job.entries))
            except self.hailo.HailoRTException as exc:
                if type(exc).__name__ == "HailoRTTimeout":
                    continue  # device busy; _check decides whether it hangs
                raise _RestartError(f"the Hailo pipeline failed ({exc})") from None
            self._staged = None
            self._run_job(det, job)

    def _launch_embeddings(self, session: Session) -> None:
        if session.embedder is None or not session.embedder.pending:
            return
        try:
            session.embedder.launch(self.hailo)
        except self.hailo.HailoRTException as exc:
            raise _RestartError(f"the Hailo embedder failed ({exc})") from None

    def _take_buffers(self, session: Session, det: DetectorNet, n: int) -> list[InferenceResult] | None:
        # With an embedder, wait in short steps so its requests are not held up behind detection.
        poll = _POLL_S if session.embedder is None else 0.002
        entries: list[InferenceResult] = []
        while len(entries) < n:
            try:
                entries.append(det.free.get(timeout=poll))
            except queue.Empty:
                # Every buffer set is in flight or held by the consumer: frames wait (and drop) in the queue.
                if entries or self._stopping or self._embed_requests:
                    break
                self._check(session)
                self._launch_embeddings(session)
        return entries or None

    def _prepare(self, net: DetectorNet, entries: list[InferenceResult]) -> _Job | None:
        """The next job: the oldest waiting frames copied into `entries` (released back to their owner at
        once) and bound to the device's buffers; None if no frame was usable."""
        cim = net.configured
        with self._queue_cond:
            frames = [self._queue.popleft() for _ in range(min(len(entries), len(self._queue)))]
        for entry in entries[len(frames) :]:
            entry.release()
        job = _Job([], [])
        for frame, entry in zip(frames, entries[: len(frames)], strict=True):
            pixels = frame.pixels
            if pixels.shape != entry.input.shape:
                frame.release()
                entry.release()
                self.stats.rejected += 1
                log.error(
                    "frame of the wrong size skipped",
                    frame=repr(frame.tag), shape=pixels.shape, model_shape=entry.input.shape,
                )  # fmt: skip
                continue
            np.copyto(entry.input, pixels)  # the one copy: into the buffer the device reads
            if not frame.release():
                self.stats.torn += 1
                entry.release()
                continue
            entry.tag = frame.tag
            # Fresh bindings per frame: pyhailort re-points a used Bindings' outputs at its own DMA buffers.
            binding = cim.create_bindings(output_buffers=entry.output_buffers)
            binding.input().set_buffer(entry.input)
            job.bindings.append(binding)
            job.entries.append(entry)
        return job if job.entries else None

    def _run_job(self, net: DetectorNet, job: _Job) -> None:
        if net.in_flight == 0:
            net.last_progress = time.monotonic()
        net.submitted += len(job.entries)
        try:
            net.last_job = net.configured.run_async(
                job.bindings, functools.partial(self._on_done, net, job.entries)
            )
        except self.hailo.HailoRTException as exc:
            net.submitted -= len(job.entries)
            for entry in job.entries:
                entry.release()
            raise _RestartError(f"run_async failed ({exc})") from None

    def _on_done(self, session: DetectorNet, entries: list[InferenceResult], completion_info: Any) -> None:
        """HailoRT's callback thread: hand the results on. Must never raise (it would abort the process)."""
        try:
            exc = completion_info.exception
            error = None if exc is None else f"{type(exc).__name__}: {exc}"
            if error is None:
                self._consecutive_failures = 0
            else:
                self._last_error = error
                self._consecutive_failures += 1
                self.stats.failed += len(entries)
            # Account first: a consumer that sees the result may submit the next frame at once.
            session.last_progress = time.monotonic()
            session.completed += len(entries)
            self.stats.completed += len(entries)
            for entry in entries:
                entry.error = error
                self._results.put(entry)
        except BaseException:
            self._callback_errors += 1
