"""ConfiguredInferModel, Bindings and AsyncInferJob of the double's `pyhailort` (re-exported there)."""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from hailo_platform.pyhailort import _pyhailort
from hailo_platform.pyhailort._pyhailort import FormatType, fail
from hailo_platform.pyhailort._runtime import Frame, Job, SimulatedCore
from hailo_platform.pyhailort.pyhailort import AsyncInferCompletionInfo, ExceptionWrapper, HailoRTException

if TYPE_CHECKING:
    from hailo_platform.pyhailort._infer import InferModel


class _ConfiguredCore:
    """C++ ConfiguredInferModel + its pybind wrapper: formats and frame sizes snapshotted at configure()."""

    def __init__(self, core: SimulatedCore, model: InferModel) -> None:
        self.core = core
        self.pid = os.getpid()
        self.inputs = {n: (s.layer, s.type, s.frame_size()) for n, s in model._inputs.items()}
        self.outputs = {n: (s.layer, s.type, s.frame_size()) for n, s in model._outputs.items()}
        self.is_shutdown = False

    def shutdown(self) -> None:
        self.is_shutdown = True
        self.core.shutdown()


class _BindingStream:
    def __init__(self) -> None:
        self.memory: np.ndarray[Any, Any] | None = None  # what the C++ side points at


class ConfiguredInferModel:
    class Bindings:
        class InferStream:
            def __init__(self, cpp: _BindingStream) -> None:
                self._cpp = cpp
                self._buffer: np.ndarray[Any, Any] | None = None

            def set_buffer(self, buffer: np.ndarray[Any, Any]) -> None:
                with ExceptionWrapper():
                    if not buffer.flags.c_contiguous:
                        raise HailoRTException("Buffer must be C_CONTIGUOUS")
                    if not buffer.flags.writeable:  # py::array::mutable_data() throws on read-only arrays
                        raise ValueError("array is not writeable")
                    self._cpp.memory = buffer
                self._buffer = buffer

            def get_buffer(self, tf_format: bool | None = False) -> np.ndarray[Any, Any] | None:
                return self._buffer

        def __init__(self, core: _ConfiguredCore) -> None:
            self._cpp_inputs = {n: _BindingStream() for n in core.inputs}
            self._cpp_outputs = {n: _BindingStream() for n in core.outputs}
            self._inputs: dict[str, ConfiguredInferModel.Bindings.InferStream] = {}
            self._outputs: dict[str, ConfiguredInferModel.Bindings.InferStream] = {}

        def _stream(self, cpp: dict[str, _BindingStream], cache: dict[str, Any], name: str, kind: str) -> Any:
            if name == "" and len(cpp) == 1:
                name = next(iter(cpp))
            if name not in cache:
                with ExceptionWrapper():
                    if name not in cpp:
                        raise fail(
                            _pyhailort.HAILO_NOT_FOUND if name else _pyhailort.HAILO_INVALID_OPERATION,
                            f"Failed to find {kind} '{name}'",
                        )
                cache[name] = self.InferStream(cpp[name])
            return cache[name]

        def input(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._stream(self._cpp_inputs, self._inputs, name, "input")  # type: ignore[no-any-return]

        def output(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._stream(self._cpp_outputs, self._outputs, name, "output")  # type: ignore[no-any-return]

        def get(self) -> ConfiguredInferModel.Bindings:
            return self

    def __init__(self, configured: _ConfiguredCore, infer_model: InferModel) -> None:
        self._configured_infer_model: _ConfiguredCore | None = configured
        self._input_names = infer_model.input_names
        self._output_names = infer_model.output_names
        self._infer_model = infer_model
        self._buffer_guards: collections.deque[list[Any]] = collections.deque()

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Only drops the reference; the C++ destructor shuts down and joins the callback thread.
        if self._configured_infer_model is not None:
            self._configured_infer_model.shutdown()
        self._configured_infer_model = None

    def _cim(self) -> _ConfiguredCore:
        if self._configured_infer_model is None:
            raise AttributeError("'NoneType' object has no attribute (the ConfiguredInferModel was closed)")
        if os.getpid() != self._configured_infer_model.pid:
            raise HailoRTException("ConfiguredInferModel used from another process (undefined behavior)")
        return self._configured_infer_model

    def activate(self) -> None:
        with ExceptionWrapper():
            raise fail(
                _pyhailort.HAILO_INVALID_OPERATION, "activate() is invalid while the scheduler is enabled"
            )

    def deactivate(self) -> None:
        self.activate()

    def create_bindings(
        self, input_buffers: dict[str, Any] | None = None, output_buffers: dict[str, Any] | None = None
    ) -> ConfiguredInferModel.Bindings:
        cim = self._cim()
        for name in self._output_names:  # pyhailort's _get_nms_infos() looks at every output's format
            _ = self._infer_model.output(name).format.order
        bindings = self.Bindings(cim)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        cim = self._cim()
        with ExceptionWrapper():
            if cim.core.aborted:
                raise fail(_pyhailort.HAILO_STREAM_ABORT, "Pipeline was aborted")
            if not cim.core.wait_ready(timeout_ms / 1000.0, frames_count):
                raise fail(
                    _pyhailort.HAILO_TIMEOUT,
                    f"Got timeout in `wait_for_async_ready` ({timeout_ms}ms) - the edge could not receive "
                    f"{frames_count} transfer-requests",
                )

    def run(self, bindings: list[ConfiguredInferModel.Bindings], timeout: int) -> None:
        self.run_async(bindings).wait(timeout)

    def run_async(
        self, bindings: list[ConfiguredInferModel.Bindings], callback: Callable[..., None] | None = None
    ) -> AsyncInferJob:
        cim = self._cim()
        if not isinstance(bindings, list):
            raise TypeError("run_async(): incompatible function arguments (bindings must be a list)")
        guards = [b.input(n).get_buffer() for b in bindings for n in self._input_names]
        guards += [b.output(n).get_buffer(None) for b in bindings for n in self._output_names]
        self._buffer_guards.append(guards)
        guard_deque = self._buffer_guards

        def callback_wrapper(error_code: int) -> None:
            exception = ExceptionWrapper.create_exception_from_status(error_code) if error_code else None
            if callback:
                callback(completion_info=AsyncInferCompletionInfo(exception))
            guard_deque.popleft()

        with ExceptionWrapper():
            try:
                frames = [self._frame(cim, b) for b in bindings]
                job = Job(frames, lambda status: None)
                job.on_done = lambda status: cim.core.enqueue_callback(job, callback_wrapper, status)
                cim.core.submit(job)
            except _pyhailort.HailoRTStatusException:
                cim.shutdown()  # ConfiguredInferModel::run_async shuts the model down on any failure
                raise
        return AsyncInferJob(job)

    @staticmethod
    def _frame(cim: _ConfiguredCore, bindings: ConfiguredInferModel.Bindings) -> Frame:
        inputs = []
        for name, (layer, fmt, size) in cim.inputs.items():
            memory = bindings._cpp_inputs[name].memory
            if memory is None:
                raise fail(_pyhailort.HAILO_NOT_FOUND, f"Couldnt find input buffer for '{name}'")
            if memory.nbytes != size:
                raise fail(
                    _pyhailort.HAILO_INVALID_OPERATION,
                    f"Input buffer size {memory.nbytes} is different than expected {size} for input '{name}'",
                )
            flat = memory.reshape(-1).view(np.uint8)
            if fmt is FormatType.FLOAT32:  # quantized on the host with the input's qp
                flat = layer.quant.quantize(memory.reshape(-1).view(np.float32))
            inputs.append(flat.reshape(layer.shape))
        outputs = []
        for name, (_layer, fmt, size) in cim.outputs.items():
            stream = bindings._cpp_outputs[name]
            memory = stream.memory
            if memory is None:
                raise fail(_pyhailort.HAILO_NOT_FOUND, f"Couldnt find output buffer for '{name}'")
            if memory.nbytes != size:
                raise fail(
                    _pyhailort.HAILO_INVALID_OPERATION,
                    f"Output buffer size {memory.nbytes} is different than expected {size} "
                    f"for output '{name}'",
                )
            outputs.append((memory, fmt))
            # The pybind wrapper swaps in a temporary DMA buffer and copies it back on completion; the C++
            # binding keeps pointing at that temporary buffer, so a reused Bindings without set_buffer()
            # writes somewhere the user never reads.
            stream.memory = np.empty(size, np.uint8)
        return Frame(inputs[0], outputs)

    def get_async_queue_size(self) -> int:
        return self._cim().core.queue_size

    def set_scheduler_timeout(self, timeout_ms: int) -> None:
        self._cim()

    def set_scheduler_threshold(self, threshold: int) -> None:
        self._cim()

    def set_scheduler_priority(self, priority: int) -> None:
        if not 0 <= priority <= 31:
            with ExceptionWrapper():
                raise fail(_pyhailort.HAILO_INVALID_ARGUMENT, "priority out of range")
        core = self._cim().core
        core.priority = core.observed.priority = priority

    def shutdown(self) -> None:
        self._cim().shutdown()


class AsyncInferJob:
    def __init__(self, job: Job) -> None:
        self._job = job

    def wait(self, timeout_ms: int) -> None:
        with ExceptionWrapper():
            # Like pyhailort: the job, then its callback, each with the full timeout.
            if not self._job.done.wait(timeout_ms / 1000.0) or not self._job.callback_done.wait(
                timeout_ms / 1000.0
            ):
                raise fail(
                    _pyhailort.HAILO_TIMEOUT,
                    f"Waiting for async job to finish has failed with timeout ({timeout_ms}ms)",
                )
