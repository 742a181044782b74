"""The device side of the Hailo engine: one VDevice, the networks configured on it, their buffer pools.

Everything here is created, used and closed on the engine's thread (see nvr/backends/hailo.py), except
`InferenceResult.release()` (the consumer) and the counters HailoRT's callback thread updates. The detector
and the optional face embedder (nvr/backends/hailo_embedder.py) are two configured models on ONE VDevice,
HailoRT's scheduler (ROUND_ROBIN) sharing the chip between them.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from nvr.backends import hailo_diagnostics as diag
from nvr.contracts.tensors import QuantInfo, RawOutput
from nvr.errors import DeviceError, ModelError
from nvr.hef import HefInfo, HefLayer

log = structlog.get_logger("nvr.backends.hailo")


@dataclass(frozen=True, slots=True)
class HailoSettings:
    batch_size: int = 4  # upper bound of frames per run_async job; the device's queue size sets the rest
    input_queue: int = 16  # frames waiting for the device; beyond this the oldest are dropped
    result_backlog: int = 8  # buffer sets for results the consumer has not released yet
    max_in_flight: int = 16  # frames on the device at once (also bounded by HailoRT's async queue size)
    multi_process_service: bool = False  # share the device with other processes via hailort_service
    group_id: str = "SHARED"
    hang_timeout_s: float = 5.0  # jobs in flight but none completing for this long = a hung device
    max_consecutive_failures: int = 20  # then the pipeline is considered broken and re-created
    restart_delay_s: float = 1.0
    embedder_batch: int = 8  # upper bound of faces per embedder job


@dataclass(frozen=True, slots=True)
class JobPlan:
    """How the engine feeds one network: `jobs` run_async calls of `batch` frames each in flight."""

    batch: int
    jobs: int

    @property
    def frames(self) -> int:
        return self.batch * self.jobs


DETECTOR_PRIORITY = 20  # HailoRT's scheduler priorities run 0-31, default 16 (the embedder keeps that)
MIN_JOBS_IN_FLIGHT = 3  # one on the device, one queued behind it, one the host is turning around


def plan_jobs(queue_frames: int, max_batch: int, max_in_flight: int = 1 << 16) -> JobPlan:
    """Batch and jobs in flight from HailoRT's async queue size (frames; the real value depends on the
    device and the model, and is not documented), the configured batch an upper bound.

    The device must never wait for the host: while one job's results travel back and its buffers are
    refilled, others must still be queued on the device. So the queue is split into at least
    MIN_JOBS_IN_FLIGHT jobs when it holds that many frames, and the batch is as large as that allows (larger
    batches cost the host less per frame)."""
    frames = max(1, min(queue_frames, max_in_flight))
    batch = max(1, min(max_batch, frames // MIN_JOBS_IN_FLIGHT))
    return JobPlan(batch, frames // batch)


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


def open_vdevice(hailo: ModuleType, settings: HailoSettings) -> Any:
    """The VDevice, scheduler on (the Python default is NONE), shared the way the settings say."""
    params = hailo.VDevice.create_params()
    params.scheduling_algorithm = hailo.HailoSchedulingAlgorithm.ROUND_ROBIN
    params.group_id = settings.group_id
    params.multi_process_service = settings.multi_process_service
    try:
        return hailo.VDevice(params)
    except hailo.HailoRTException as exc:
        raise diag.vdevice_error(hailo, exc) from None


def create_model(hailo: ModuleType, vdevice: Any, info: HefInfo) -> Any:
    try:
        return vdevice.create_infer_model(str(info.path))  # HailoRT takes str, not Path
    except hailo.HailoRTException as exc:
        raise diag.infer_model_error(info, hailo.__version__, exc) from None


def configure_model(hailo: ModuleType, vdevice: Any, info: HefInfo, model: Any, batch: int) -> Any:
    model.set_batch_size(batch)
    try:
        return model.configure()
    except hailo.HailoRTException as exc:
        if type(exc).__name__ in ("HailoRTHEFNotCompatibleWithDevice", "HailoRTInvalidHEFException"):
            raise diag.wrong_chip(info, diag.device_arch_of(hailo, vdevice) or "HAILO8") from None
        raise DeviceError(f"{info.path}: HailoRT cannot configure the device: {exc}") from None


class DetectorNet:
    """The detector's configured model, its job plan and its pool of buffer sets."""

    def __init__(self, hailo: ModuleType, vdevice: Any, info: HefInfo, settings: HailoSettings) -> None:
        self.info = info
        model = create_model(hailo, vdevice, info)
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
            quants.append(quant_for(info, layer, stream.quant_infos[0]))
        self.model = model
        self.configured, self.queue_size, self.plan = self._configure_for_queue(hailo, vdevice, settings)
        self.frames_per_job = self.plan.batch
        log.info(
            "Hailo jobs planned from the device queue",
            model=info.path.name, queue_frames=self.queue_size, batch=self.plan.batch, jobs=self.plan.jobs,
        )  # fmt: skip
        h, w, c = (int(v) for v in model.input().shape)
        self.input_shape = (h, w, c)
        self.free: queue.SimpleQueue[InferenceResult] = queue.SimpleQueue()
        # Buffer sets bound the frames in flight plus the results the consumer holds; ~1.5 MB each for SCRFD.
        for _ in range(self.plan.frames + settings.result_backlog):
            self.free.put(InferenceResult(self.input_shape, self.layers, quants, self.free))
        self.submitted = 0
        self.completed = 0  # written only by HailoRT's callback thread
        self.last_progress = time.monotonic()
        self.last_job: Any = None

    def _configure_for_queue(
        self, hailo: ModuleType, vdevice: Any, settings: HailoSettings
    ) -> tuple[Any, int, JobPlan]:
        """Configure, read the queue size, plan; when the plan wants smaller jobs than the configured batch,
        configure again with the job size as the device's burst (its queue may change with it). If that
        leaves fewer frames in flight, go back to the first configuration and send it the smaller jobs."""
        first_batch = max(1, settings.batch_size)
        configured = configure_model(hailo, vdevice, self.info, self.model, first_batch)
        queue_frames = int(configured.get_async_queue_size())
        plan = plan_jobs(queue_frames, first_batch, settings.max_in_flight)
        if plan.batch == first_batch:
            return configured, queue_frames, plan
        _release(configured)
        second = configure_model(hailo, vdevice, self.info, self.model, plan.batch)
        second_frames = int(second.get_async_queue_size())
        second_plan = plan_jobs(second_frames, plan.batch, settings.max_in_flight)
        if second_plan.frames >= plan.frames:
            return second, second_frames, second_plan
        _release(second)
        return configure_model(hailo, vdevice, self.info, self.model, first_batch), queue_frames, plan

    @property
    def in_flight(self) -> int:
        return self.submitted - self.completed

    def shutdown(self) -> None:
        try:
            self.configured.shutdown()
        except Exception as exc:
            log.warning("Hailo shutdown reported an error", model=self.info.path.name, error=str(exc))


class Session:
    """One VDevice and the networks configured on it. Created, used and closed on the engine thread."""

    def __init__(
        self,
        hailo: ModuleType,
        info: HefInfo | None,
        settings: HailoSettings,
        embedder_info: HefInfo | None = None,
    ) -> None:
        from nvr.backends.hailo_embedder import EmbedderNet

        self.vdevice = open_vdevice(hailo, settings)
        self.detector: DetectorNet | None = None
        self.embedder: EmbedderNet | None = None
        try:
            arch = diag.device_arch_of(hailo, self.vdevice)
            for each in (info, embedder_info):
                if each is not None:
                    diag.check_chip(each, arch)
            if info is not None:
                self.detector = DetectorNet(hailo, self.vdevice, info, settings)
            if embedder_info is not None:
                self.embedder = EmbedderNet(hailo, self.vdevice, embedder_info, settings)
                if self.detector is not None:
                    # Both ready: HailoRT's scheduler serves the higher priority first, so detection
                    # keeps its rate and faces take the rest of the chip.
                    self.detector.configured.set_scheduler_priority(DETECTOR_PRIORITY)
        except BaseException:
            self._shutdown_networks()
            self.vdevice.release()
            raise

    @property
    def in_flight(self) -> int:
        return sum(net.in_flight for net in self._networks())

    def last_progress(self) -> float:
        return max((net.last_progress for net in self._networks()), default=time.monotonic())

    def _networks(self) -> list[Any]:
        return [net for net in (self.detector, self.embedder) if net is not None]

    def _shutdown_networks(self) -> None:
        for net in self._networks():
            net.shutdown()

    def close(self, drain_s: float) -> None:
        """Let jobs in flight finish (up to `drain_s`), then shut down; aborted jobs still get a callback."""
        deadline = time.monotonic() + drain_s
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        self._shutdown_networks()
        deadline = time.monotonic() + 2.0  # the callbacks of aborted jobs run on HailoRT's thread
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        self.detector = None
        self.embedder = None
        self.vdevice.release()


def _release(configured: Any) -> None:
    """Give a configuration back to the device before configuring again: shutdown, then pyhailort's
    __exit__ drops the C++ object (and the network group it holds) with the last reference."""
    configured.shutdown()
    configured.__exit__(None, None, None)


def quant_for(info: HefInfo, layer: HefLayer, hailort: Any) -> QuantInfo:
    """HailoRT's quantization, checked against the HEF reader's; per-feature values come from the reader."""
    if info.per_feature_quant:
        return layer.quant  # HailoRT 4.23 reports an all-zero scalar for these (INVALID_QP)
    theirs = QuantInfo.per_tensor(float(hailort.qp_scale), float(hailort.qp_zp))
    ours = layer.quant
    if not (
        np.allclose(theirs.scale, ours.scale, rtol=1e-5) and np.allclose(theirs.zero_point, ours.zero_point)
    ):
        log.warning(
            "HailoRT and the HEF reader disagree on an output's quantization; using HailoRT's",
            model=str(info.path), output=layer.name, hailort_scale=float(theirs.scale),
            hef_scale=float(ours.scale), hailort_zero_point=float(theirs.zero_point),
            hef_zero_point=float(ours.zero_point),
        )  # fmt: skip
    return theirs
