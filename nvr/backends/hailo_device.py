"""The device side of the Hailo engine: one VDevice, its configured model and the pool of buffer sets.

Everything here is created, used and closed on the engine's thread (see nvr/backends/hailo.py), except
`InferenceResult.release()` (the consumer) and the counters HailoRT's callback thread updates.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from nvr.backends import hailo_diagnostics as diag
from nvr.contracts.tensors import QuantInfo, RawOutput
from nvr.errors import DeviceError, ModelError
from nvr.hef import HefInfo, HefLayer

log = logging.getLogger("nvr.backends.hailo")


@dataclass(frozen=True, slots=True)
class HailoSettings:
    batch_size: int = 4  # frames per run_async job (the scheduler's burst); capped by the device queue
    input_queue: int = 16  # frames waiting for the device; beyond this the oldest are dropped
    result_backlog: int = 8  # buffer sets for results the consumer has not released yet
    max_in_flight: int = 16  # frames on the device at once (also bounded by HailoRT's async queue size)
    multi_process_service: bool = False  # share the device with other processes via hailort_service
    group_id: str = "SHARED"
    hang_timeout_s: float = 5.0  # jobs in flight but none completing for this long = a hung device
    max_consecutive_failures: int = 20  # then the pipeline is considered broken and re-created
    restart_delay_s: float = 1.0


class InferenceResult:
    """One frame's raw outputs, in the HEF's sorted output order; call `release()` when done with them."""

    __slots__ = ("_free", "error", "input", "output_buffers", "outputs", "tag")

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        layers: list[HefLayer],
        quants: list[QuantInfo],
        free: queue.SimpleQueue[InferenceResult],
    ) -> None:
        self.input: npt.NDArray[np.uint8] = np.zeros(input_shape, np.uint8)
        arrays = [
            np.zeros(layer.shape, np.uint16 if layer.dtype == "uint16" else np.uint8) for layer in layers
        ]
        self.output_buffers: dict[str, npt.NDArray[Any]] = {
            layer.name: a for layer, a in zip(layers, arrays, strict=True)
        }
        self.outputs: list[RawOutput] = [
            RawOutput(layer.name, a, q) for layer, a, q in zip(layers, arrays, quants, strict=True)
        ]
        self.tag: object = None
        self.error: str | None = None  # None: the outputs are valid
        self._free = free

    def release(self) -> None:
        self.tag = None
        self._free.put(self)

    def __enter__(self) -> InferenceResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Session:
    """One VDevice + configured model + buffer pool. Created, used and closed on the engine thread."""

    def __init__(self, hailo: ModuleType, info: HefInfo, settings: HailoSettings) -> None:
        self.info = info
        params = hailo.VDevice.create_params()
        params.scheduling_algorithm = hailo.HailoSchedulingAlgorithm.ROUND_ROBIN
        params.group_id = settings.group_id
        params.multi_process_service = settings.multi_process_service
        try:
            self.vdevice = hailo.VDevice(params)
        except hailo.HailoRTException as exc:
            raise diag.vdevice_error(hailo, exc) from None
        try:
            self._configure(hailo, settings)
        except BaseException:
            self.vdevice.release()
            raise
        self.submitted = 0
        self.completed = 0  # written only by HailoRT's callback thread
        self.last_progress = time.monotonic()
        self.last_job: Any = None

    def _configure(self, hailo: ModuleType, settings: HailoSettings) -> None:
        info = self.info
        diag.check_chip(info, diag.device_arch_of(hailo, self.vdevice))
        try:
            model = self.vdevice.create_infer_model(str(info.path))  # HailoRT takes str, not Path
        except hailo.HailoRTException as exc:
            raise diag.infer_model_error(info, hailo.__version__, exc) from None
        if len(model.input_names) != 1 or len(model.input().shape) != 3 or model.input().shape[2] != 3:
            raise ModelError(
                f"{info.path}: expected one H x W x 3 image input, found "
                f"{[(n, model.input(n).shape) for n in model.input_names]}"
            )
        model.input().set_format_type(hailo.FormatType.UINT8)
        layers = {layer.name: layer for layer in info.default_group.outputs}
        self.layers = [layers[name] for name in model.output_names if name in layers]
        if len(self.layers) != len(model.output_names):
            raise ModelError(
                f"{info.path}: HailoRT's outputs {model.output_names} differ from the HEF's {list(layers)}"
            )
        quants = []
        for layer in self.layers:
            stream = model.output(layer.name)
            kind = hailo.FormatType.UINT16 if layer.dtype == "uint16" else hailo.FormatType.UINT8
            stream.set_format_type(kind)  # raw quantized maps: the postprocessor thresholds them as is
            quants.append(_quant_for(info, layer, stream.quant_infos[0]))
        model.set_batch_size(settings.batch_size)
        try:
            self.configured = model.configure()
        except hailo.HailoRTException as exc:
            if type(exc).__name__ in ("HailoRTHEFNotCompatibleWithDevice", "HailoRTInvalidHEFException"):
                raise diag.wrong_chip(info, diag.device_arch_of(hailo, self.vdevice) or "HAILO8") from None
            raise DeviceError(f"{info.path}: HailoRT cannot configure the device: {exc}") from None
        self.model = model
        self.queue_size = int(self.configured.get_async_queue_size())
        in_flight = max(1, min(self.queue_size, settings.max_in_flight))
        self.frames_per_job = max(1, min(settings.batch_size, in_flight))
        h, w, c = (int(v) for v in model.input().shape)
        self.input_shape = (h, w, c)
        self.free: queue.SimpleQueue[InferenceResult] = queue.SimpleQueue()
        # Buffer sets bound the frames in flight plus the results the consumer holds; ~1.5 MB each for SCRFD.
        for _ in range(max(in_flight, self.frames_per_job) + settings.result_backlog):
            self.free.put(InferenceResult(self.input_shape, self.layers, quants, self.free))

    @property
    def in_flight(self) -> int:
        return self.submitted - self.completed

    def close(self, drain_s: float) -> None:
        """Let jobs in flight finish (up to `drain_s`), then shut down; aborted jobs still get a callback."""
        deadline = time.monotonic() + drain_s
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        try:
            self.configured.shutdown()
        except Exception as exc:
            log.warning("Hailo shutdown reported: %s", exc)
        deadline = time.monotonic() + 2.0  # the callbacks of aborted jobs run on HailoRT's thread
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        self.configured = None
        self.model = None
        self.vdevice.release()


def _quant_for(info: HefInfo, layer: HefLayer, hailort: Any) -> QuantInfo:
    """HailoRT's quantization, checked against the HEF reader's; per-feature values come from the reader."""
    if info.per_feature_quant:
        return layer.quant  # HailoRT 4.23 reports an all-zero scalar for these (INVALID_QP)
    theirs = QuantInfo.per_tensor(float(hailort.qp_scale), float(hailort.qp_zp))
    ours = layer.quant
    if not (
        np.allclose(theirs.scale, ours.scale, rtol=1e-5) and np.allclose(theirs.zero_point, ours.zero_point)
    ):
        log.warning(
            "%s: HailoRT and the HEF reader disagree on %s quantization (scale %s/%s, zero point %s/%s); "
            "using HailoRT's",
            info.path,
            layer.name,
            theirs.scale,
            ours.scale,
            theirs.zero_point,
            ours.zero_point,
        )
    return theirs
