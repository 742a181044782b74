"""Hailo backend: an asynchronous inference engine around HailoRT's InferModel API (hailo_platform 4.18+).

One thread owns the VDevice, the InferModel and the ConfiguredInferModel (HailoRT requires them to stay in
the process, and is simplest to reason about from one thread). Frames arrive as references to their
pixels (`nvr.contracts.frameref.FrameRef`) in a bounded queue that drops the oldest frame when the
device falls behind. The engine copies each frame once, into a pre-allocated input buffer bound to the
device, and releases the reference at once. Several jobs are in flight; HailoRT's callback thread only
hands the finished buffer set to the result queue. A result is the device's raw uint8 maps with each output's
quantization (`RawOutput`), tagged with its frame; the consumer (the SCRFD postprocessor) releases it,
which returns its buffers to the pool.

Failures: setup problems raise one-line `NvrError`s (see hailo_diagnostics). At run time a failed job is
logged, counted and delivered with `error` set; jobs that stop completing (a hung device) or keep failing
make the engine tear the device down and re-create it, saying so.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field

from nvr.backends import hailo_diagnostics as diag
from nvr.backends.base import BackendPlugin, OpenedEngine, OutputShape, PluginConfig
from nvr.backends.hailo_device import HailoSettings, InferenceResult, Session
from nvr.contracts.frameref import ArrayFrame, FrameRef
from nvr.contracts.tensors import RawOutput
from nvr.errors import DeviceError, NvrError
from nvr.hef import read_hef

__all__ = [
    "KEY",
    "PLUGIN",
    "EngineStats",
    "HailoBackend",
    "HailoConfig",
    "HailoEngine",
    "HailoSettings",
    "InferenceResult",
]

KEY = "hailo"


class HailoConfig(PluginConfig):
    """`detector.hailo`: what a user may set. The engine adapts to the device within these bounds."""

    batch_size: int = Field(default=4, ge=1, le=64, description="frames per device job, at most")
    queue: int = Field(default=16, ge=1, le=256, description="frames waiting for the device, at most")
    multi_process_service: bool = Field(default=False, description="share the device via hailort_service")
    group_id: str = Field(default="SHARED", min_length=1, description="VDevice group for sharing")

    def settings(self, **overrides: Any) -> HailoSettings:
        values: dict[str, Any] = {
            "batch_size": self.batch_size, "input_queue": self.queue,
            "multi_process_service": self.multi_process_service, "group_id": self.group_id,
        }  # fmt: skip
        values.update(overrides)
        return HailoSettings(**values)


log = logging.getLogger(__name__)
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


class _RestartError(Exception):
    """The device must be torn down and re-created; the message says why."""


class HailoEngine:
    """The asynchronous engine. `start()`, then `submit()` frames and `get_result()`; `close()` at the end."""

    def __init__(self, hef_path: str | Path, settings: HailoSettings | None = None) -> None:
        self.settings = settings or HailoSettings()
        self.hailo = diag.import_hailort()
        self.info = read_hef(hef_path)
        diag.check_hailort_reads(self.info, str(self.hailo.__version__))
        self.stats = EngineStats()
        self._queue: collections.deque[FrameRef] = collections.deque()
        self._queue_cond = threading.Condition()
        self._results: queue.SimpleQueue[InferenceResult] = queue.SimpleQueue()
        self._stopping = False
        self._started = threading.Event()
        self._start_error: NvrError | None = None
        self._consecutive_failures = 0
        self._last_error = ""
        self._callback_errors = 0
        self.input_shape: tuple[int, int, int] = self.info.default_group.inputs[0].shape
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

    def __enter__(self) -> HailoEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the engine thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        session: Session | None = None
        try:
            session = Session(self.hailo, self.info, self.settings)
        except NvrError as exc:
            self._start_error = exc
        except Exception as exc:  # an unexpected HailoRT failure still ends start() with a one-line error
            self._start_error = DeviceError(f"cannot start the Hailo engine: {exc}")
        self._started.set()
        while session is not None:
            try:
                self._serve(session)
                session.close(drain_s=min(5.0, self.settings.hang_timeout_s))
                return
            except _RestartError as why:
                log.warning("%s: tearing down and re-creating the Hailo device", why)
                session = self._restart(session)
            except Exception:
                log.exception("Hailo engine failed; tearing down and re-creating the Hailo device")
                session = self._restart(session)

    def _restart(self, session: Session) -> Session | None:
        self.stats.restarts += 1
        try:
            session.close(drain_s=0.0)  # aborts what is in flight: those frames come back with an error
        except Exception as exc:
            log.warning("closing the failed Hailo device: %s", exc)
        return self._reopen()

    def _reopen(self) -> Session | None:
        while not self._stopping:
            try:
                session = Session(self.hailo, self.info, self.settings)
                log.warning("Hailo device re-created; inference continues")
                self._consecutive_failures = 0
                return session
            except Exception as exc:
                message = exc.message if isinstance(exc, NvrError) else str(exc)
                log.error("cannot re-create the Hailo device: %s (retrying)", message)
                time.sleep(self.settings.restart_delay_s)
        return None

    def _check(self, session: Session) -> None:
        """Raise _RestartError when the device hangs (jobs in flight, none completing) or keeps failing."""
        if session.in_flight > 0:
            stalled = time.monotonic() - session.last_progress
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
        cim = session.configured
        # Long enough that a busy device does not look like a timeout (HailoRT logs each one as an error).
        timeout_ms = 1000
        logged_failures, logged_at = 0, -_FAILURE_LOG_INTERVAL_S
        while True:
            with self._queue_cond:
                if not self._queue and not self._stopping:
                    self._queue_cond.wait(_POLL_S)
                if self._stopping:
                    return
                n = min(session.frames_per_job, len(self._queue))
            self._check(session)
            now = time.monotonic()
            if self.stats.failed > logged_failures and now - logged_at >= _FAILURE_LOG_INTERVAL_S:
                log.warning(
                    "Hailo job failed: %s (%d frames failed so far; carrying on)",
                    self._last_error,
                    self.stats.failed,
                )
                logged_failures, logged_at = self.stats.failed, now
            if n == 0:
                continue
            entries = self._take_buffers(session, n)
            if entries is None:
                continue
            try:
                cim.wait_for_async_ready(timeout_ms=timeout_ms, frames_count=len(entries))
            except self.hailo.HailoRTException as exc:
                for entry in entries:
                    entry.release()
                if type(exc).__name__ == "HailoRTTimeout":
                    continue  # device busy; _check decides whether it hangs
                raise _RestartError(f"the Hailo pipeline failed ({exc})") from None
            self._launch(session, entries)

    def _take_buffers(self, session: Session, n: int) -> list[InferenceResult] | None:
        entries: list[InferenceResult] = []
        while len(entries) < n:
            try:
                entries.append(session.free.get(timeout=_POLL_S))
            except queue.Empty:
                # Every buffer set is in flight or held by the consumer: frames wait (and drop) in the queue.
                if entries or self._stopping:
                    break
                self._check(session)
        return entries or None

    def _launch(self, session: Session, entries: list[InferenceResult]) -> None:
        cim = session.configured
        bindings = []
        job_entries = []
        with self._queue_cond:
            frames = [self._queue.popleft() for _ in range(min(len(entries), len(self._queue)))]
        for entry in entries[len(frames) :]:
            entry.release()
        for frame, entry in zip(frames, entries[: len(frames)], strict=True):
            pixels = frame.pixels
            if pixels.shape != entry.input.shape:
                frame.release()
                entry.release()
                self.stats.rejected += 1
                log.error(
                    "frame %r is %s, the model takes %s: skipped", frame.tag, pixels.shape, entry.input.shape
                )
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
            bindings.append(binding)
            job_entries.append(entry)
        if not bindings:
            return
        if session.in_flight == 0:
            session.last_progress = time.monotonic()
        session.submitted += len(bindings)
        try:
            session.last_job = cim.run_async(bindings, functools.partial(self._on_done, session, job_entries))
        except self.hailo.HailoRTException as exc:
            session.submitted -= len(bindings)
            for entry in job_entries:
                entry.release()
            raise _RestartError(f"run_async failed ({exc})") from None

    def _on_done(self, session: Session, entries: list[InferenceResult], completion_info: Any) -> None:
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


class HailoBackend:
    """The synchronous `InferenceBackend` face of the engine, for `nvr detect` and evaluations."""

    name = "hailo"

    def __init__(self, hef_path: str | Path, settings: HailoSettings | None = None) -> None:
        self.engine = HailoEngine(hef_path, settings or HailoSettings(batch_size=1, input_queue=1)).start()
        self.input_height, self.input_width = self.engine.input_shape[0], self.engine.input_shape[1]
        self.output_shapes: list[OutputShape] = _output_shapes(self.engine)
        self.path = Path(hef_path)

    def set_normalisation(self, mean: float, std: float) -> None:
        """A HEF normalises inside the network (the Model Zoo compiles the family's values in)."""

    def infer(self, model_input: npt.NDArray[np.uint8]) -> list[RawOutput]:
        if model_input.shape != self.engine.input_shape:
            raise ValueError(
                f"model input must be {'x'.join(map(str, self.engine.input_shape))}, got {model_input.shape}"
            )
        token = object()
        self.engine.submit(ArrayFrame(model_input, token))
        deadline = time.monotonic() + 3 * self.engine.settings.hang_timeout_s + 5.0
        while (remaining := deadline - time.monotonic()) > 0:
            result = self.engine.get_result(timeout=remaining)
            if result is None:
                break
            with result:
                if result.tag is not token:
                    continue  # left over from an earlier call that gave up
                if result.error is not None:
                    raise DeviceError(f"Hailo inference failed: {result.error}")
                return [RawOutput(o.name, o.data.copy(), o.quant) for o in result.outputs]
        raise DeviceError(f"{self.path}: the Hailo device returned no result in time")

    def close(self) -> None:
        self.engine.close()


def _output_shapes(engine: HailoEngine) -> list[OutputShape]:
    return [tuple(layer.shape) for layer in engine.info.default_group.outputs]


def _open_backend(path: Path, config: HailoConfig, input_size: tuple[int, int]) -> HailoBackend:
    # One image at a time: one frame per job, one waiting.
    return HailoBackend(path, config.settings(batch_size=1, input_queue=1))


def _open_engine(path: Path, config: HailoConfig, input_size: tuple[int, int]) -> OpenedEngine:
    engine = HailoEngine(path, config.settings()).start()
    height, width = engine.input_shape[0], engine.input_shape[1]
    return OpenedEngine(
        engine, KEY, width, height, _output_shapes(engine),
        max_in_flight=engine.settings.input_queue, set_normalisation=lambda mean, std: None,
    )  # fmt: skip


def _hailort_installed() -> bool:
    return importlib.util.find_spec("hailo_platform") is not None


PLUGIN = BackendPlugin(KEY, HailoConfig, (".hef",), _open_backend, _open_engine, _hailort_installed)
