"""The test double's stand-in for HailoRT's compiled `_pyhailort` module: enums, structs, statuses, devices.

Facts come from HailoRT 4.23 (`hailort.h`, `pyhailort.cpp`, `vdevice.cpp`, `device_internal.cpp`); see
../shared/reference/hailort.md. The simulated chip is configured through environment variables, read when
a VDevice is created, so a subprocess `nvr` can be pointed at it:

  HAILO_DOUBLE_ARCH        chip it pretends to be: hailo8 (default), hailo8l, hailo10h, hailo15h/m/l
  HAILO_DOUBLE_DEVICES     number of devices on the "PCIe bus" (default 1; 0 = no device / no driver)
  HAILO_DOUBLE_LOCK_DIR    where the per-device flock files live (default /tmp/hailo_double)
  HAILO_DOUBLE_SERVICE     "1" when hailort_service is running (multi_process_service works)
  HAILO_DOUBLE_VERSION     HailoRT version reported as hailo_platform.__version__ (default by arch)
  HAILO_DOUBLE_LATENCY_MS  device time per frame (default 0: only the host compute time); one number for
                           every network, or per network group: "scrfd_2_5g=1.0,arcface_mobilefacenet=0.5"
                           (a bare number among them is the default). All networks configured in one process
                           share ONE device timeline, so their combined rate is bounded like a real chip's.
  HAILO_DOUBLE_COMPUTE_LOG file to append `<epoch s> <detector|embedder|other> <seconds>` to for every frame
                           the double computes with ONNX (benchmarks: its host compute, not the chip's)
  HAILO_DOUBLE_REPLAY      "1": compute outputs for the first frame, return them for every frame (benchmarks:
                           keeps the double's own ONNX compute off the host's budget)
  HAILO_DOUBLE_QUEUE_SIZE  frames in flight per batch unit (get_async_queue_size = this x batch; default 4)
  HAILO_DOUBLE_QUEUE_FRAMES  absolute mode: get_async_queue_size returns this many frames whatever the batch
                           (overrides HAILO_DOUBLE_QUEUE_SIZE; real HailoRT's value is undocumented)
  HAILO_DOUBLE_FAIL_FRAMES comma list of frame indexes (per configured model) whose job fails
  HAILO_DOUBLE_FAIL_STATUS HailoRT status those jobs fail with (default 8, HAILO_INTERNAL_FAILURE)
  HAILO_DOUBLE_HANG_AFTER  frames after which the device stops completing jobs
  HAILO_DOUBLE_HANGS       how many configured models (per process) hang that way (default 1)
  HAILO_DOUBLE_DRIVER_VERSION  version of the hailo_pci kernel driver; VDevice() fails with status 76
                           (HAILO_INVALID_DRIVER_VERSION) unless it equals the library's (as HailoRT does)
  HAILO_DOUBLE_ONNX        ONNX model to compute SCRFD outputs with (default: by network name in NVR_ASSETS)
  HAILO_DOUBLE_EMBEDDER_ONNX  ONNX embedder for HEFs with one 112x112x3 input and one NC output (default:
                           models/recognition/fr_feature_512.onnx in NVR_ASSETS, for 512-value outputs)
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

# --- statuses (hailort.h HAILO_STATUS_VARIABLES, the ones the double can produce) -----------------------
STATUS_NAMES: dict[int, str] = {
    0: "HAILO_SUCCESS", 2: "HAILO_INVALID_ARGUMENT", 4: "HAILO_TIMEOUT", 6: "HAILO_INVALID_OPERATION",
    8: "HAILO_INTERNAL_FAILURE", 13: "HAILO_OPEN_FILE_FAILURE", 26: "HAILO_INVALID_HEF",
    36: "HAILO_DRIVER_OPERATION_FAILED", 61: "HAILO_NOT_FOUND", 62: "HAILO_COMMUNICATION_CLOSED",
    63: "HAILO_STREAM_ABORT", 64: "HAILO_DRIVER_NOT_INSTALLED", 73: "HAILO_DEVICE_IN_USE",
    74: "HAILO_OUT_OF_PHYSICAL_DEVICES", 76: "HAILO_INVALID_DRIVER_VERSION", 77: "HAILO_RPC_FAILED",
    79: "HAILO_NOT_SUPPORTED",
    82: "HAILO_QUEUE_IS_FULL", 91: "HAILO_HEF_FILE_CORRUPTED", 92: "HAILO_HEF_NOT_SUPPORTED",
    93: "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE",
}  # fmt: skip
HAILO_INVALID_ARGUMENT, HAILO_TIMEOUT, HAILO_INVALID_OPERATION = 2, 4, 6
HAILO_OPEN_FILE_FAILURE, HAILO_INVALID_HEF, HAILO_NOT_FOUND, HAILO_STREAM_ABORT = 13, 26, 61, 63
HAILO_OUT_OF_PHYSICAL_DEVICES, HAILO_RPC_FAILED, HAILO_QUEUE_IS_FULL = 74, 77, 82
HAILO_INVALID_DRIVER_VERSION = 76
HAILO_HEF_FILE_CORRUPTED, HAILO_HEF_NOT_SUPPORTED, HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE = 91, 92, 93


class HailoRTStatusException(Exception):
    """What the C++ layer throws; pyhailort's ExceptionWrapper turns it into a typed exception."""

    def __init__(self, status: int) -> None:
        super().__init__(status)


def get_status_message(status: int) -> str:
    return STATUS_NAMES.get(status, "")


def log_error(message: str) -> None:
    """HailoRT's logger prints errors on stderr (and in hailort.log)."""
    print(f"[HailoRT] [error] {message}", file=sys.stderr, flush=True)


def log_warning(message: str) -> None:
    print(f"[HailoRT] [warning] {message}", file=sys.stderr, flush=True)


def fail(status: int, message: str | None = None) -> HailoRTStatusException:
    if message:
        log_error(f"CHECK failed - {message}")
    return HailoRTStatusException(status)


# --- enums: pybind11 enums print as "FormatType.UINT8", and do not compare equal to ints -----------------
class _PybindEnum(enum.Enum):
    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return int(self.value)


class FormatType(_PybindEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(_PybindEnum):
    AUTO = 0
    NHWC = 1
    NHCW = 2
    FCR = 3
    F8CR = 4
    NHW = 5
    NC = 6
    BAYER_RGB = 7
    HAILO_NMS = 9
    RGB888 = 10
    NCHW = 11
    YUY2 = 12
    NV12 = 13
    NV21 = 14
    HAILO_NMS_WITH_BYTE_MASK = 20
    HAILO_NMS_ON_CHIP = 21
    HAILO_NMS_BY_CLASS = 22
    HAILO_NMS_BY_SCORE = 23


class FormatFlags(_PybindEnum):
    NONE = 0
    QUANTIZED = 1
    TRANSPOSED = 2


class SchedulingAlgorithm(_PybindEnum):
    NONE = 0
    ROUND_ROBIN = 1


class StreamDirection(_PybindEnum):
    H2D = 0
    D2H = 1


# Device format order (HEF) -> default host order (hailort_defaults.cpp DEFAULT_FORMAT_ORDER_MAP).
DEFAULT_USER_ORDER: dict[str, FormatOrder] = {
    "NHWC": FormatOrder.NHWC, "NHCW": FormatOrder.NHWC, "FCR": FormatOrder.FCR, "F8CR": FormatOrder.F8CR,
    "NHW": FormatOrder.NHW, "NC": FormatOrder.NC, "RGB888": FormatOrder.NHWC, "NCHW": FormatOrder.NCHW,
    "YUY2": FormatOrder.YUY2, "HAILO_NMS_ON_CHIP": FormatOrder.HAILO_NMS_BY_CLASS,
}  # fmt: skip


@dataclass
class HailoFormat:
    type: FormatType
    order: FormatOrder
    flags: FormatFlags = FormatFlags.NONE


@dataclass
class QuantInfo:
    qp_zp: float
    qp_scale: float
    limvals_min: float
    limvals_max: float


@dataclass
class VStreamInfo:
    name: str
    network_name: str
    direction: StreamDirection
    format: HailoFormat
    quant_info: QuantInfo
    hwc: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, ...]:
        h, w, c = self.hwc
        if self.format.order is FormatOrder.NC:
            return (c,)
        if self.format.order is FormatOrder.NHW:
            return (h, w)
        return (h, w, c)

    def __repr__(self) -> str:
        return f'VStreamInfo("{self.name}")'


class VDeviceParams:
    """Python defaults of `VDeviceParams.default()`: NONE scheduler, "UNIQUE" group, no service."""

    def __init__(self) -> None:
        self._scheduling_algorithm = SchedulingAlgorithm.NONE
        self.group_id = "UNIQUE"
        self.multi_process_service = False
        self.device_count = 1
        self.device_ids: list[str] = []

    @staticmethod
    def default() -> VDeviceParams:
        return VDeviceParams()

    @property
    def scheduling_algorithm(self) -> int:
        # The binding's getter returns the raw uint32, its setter only takes the enum.
        return int(self._scheduling_algorithm.value)

    @scheduling_algorithm.setter
    def scheduling_algorithm(self, value: SchedulingAlgorithm) -> None:
        if not isinstance(value, SchedulingAlgorithm):
            raise TypeError(
                "scheduling_algorithm: incompatible function arguments (expects SchedulingAlgorithm)"
            )
        self._scheduling_algorithm = value


# --- the simulated machine ----------------------------------------------------------------------------
# Chip -> (DeviceArchitectureTypes value, HEF hw_arch values it accepts: DeviceBase::is_hef_compatible).
CHIPS: dict[str, tuple[int, frozenset[int]]] = {
    "hailo8": (1, frozenset({1, 2, 3})),
    "hailo8l": (2, frozenset({3})),
    "hailo15h": (3, frozenset({4, 5, 103})),
    "hailo15l": (4, frozenset({6})),
    "hailo15m": (5, frozenset({4})),
    "hailo10h": (6, frozenset({4, 5, 103})),
}
HEF_ARCH_NAMES = {0: "HAILO8", 1: "HAILO8", 2: "HAILO8", 3: "HAILO8L", 4: "HAILO15M", 5: "HAILO10H",
                  6: "HAILO15L", 103: "HAILO15H"}  # fmt: skip
DEVICE_ID = "0000:01:00.0"


@dataclass(frozen=True)
class DoubleConfig:
    arch: str
    devices: int
    lock_dir: Path
    service: bool
    latency_s: float
    replay: bool
    queue_per_batch: int
    queue_frames: int | None
    fail_frames: frozenset[int]
    fail_status: int
    hang_after: int | None
    hangs: int
    onnx: str | None
    embedder_onnx: str | None = None
    driver_version: str | None = None
    latency_by_network: tuple[tuple[str, float], ...] = ()
    compute_log: str | None = None

    def latency_for(self, network_group: str) -> float:
        """Device seconds per frame of this network group."""
        return dict(self.latency_by_network).get(network_group, self.latency_s)

    @classmethod
    def from_env(cls) -> DoubleConfig:
        env = os.environ
        arch = env.get("HAILO_DOUBLE_ARCH", "hailo8").lower().replace("-", "")
        if arch not in CHIPS:
            raise ValueError(f"HAILO_DOUBLE_ARCH={arch!r}: choose one of {', '.join(CHIPS)}")
        fails = frozenset(int(x) for x in env.get("HAILO_DOUBLE_FAIL_FRAMES", "").split(",") if x.strip())
        hang = env.get("HAILO_DOUBLE_HANG_AFTER")
        queue_frames = env.get("HAILO_DOUBLE_QUEUE_FRAMES")
        default_ms, per_network = 0.0, []
        for item in env.get("HAILO_DOUBLE_LATENCY_MS", "0").split(","):
            name, sep, value = item.strip().rpartition("=")
            if not sep:
                default_ms = float(value)
            else:
                per_network.append((name.strip(), float(value) / 1000.0))
        return cls(
            arch=arch,
            devices=int(env.get("HAILO_DOUBLE_DEVICES", "1")),
            lock_dir=Path(env.get("HAILO_DOUBLE_LOCK_DIR", "/tmp/hailo_double")),
            service=env.get("HAILO_DOUBLE_SERVICE", "0") == "1",
            latency_s=default_ms / 1000.0,
            replay=env.get("HAILO_DOUBLE_REPLAY", "0") == "1",
            queue_per_batch=int(env.get("HAILO_DOUBLE_QUEUE_SIZE", "4")),
            queue_frames=int(queue_frames) if queue_frames else None,
            fail_frames=fails,
            fail_status=int(env.get("HAILO_DOUBLE_FAIL_STATUS", "8")),
            hang_after=int(hang) if hang else None,
            hangs=int(env.get("HAILO_DOUBLE_HANGS", "1")),
            onnx=env.get("HAILO_DOUBLE_ONNX"),
            embedder_onnx=env.get("HAILO_DOUBLE_EMBEDDER_ONNX"),
            driver_version=env.get("HAILO_DOUBLE_DRIVER_VERSION"),
            latency_by_network=tuple(per_network),
            compute_log=env.get("HAILO_DOUBLE_COMPUTE_LOG") or None,
        )


def default_version() -> str:
    if "HAILO_DOUBLE_VERSION" in os.environ:
        return os.environ["HAILO_DOUBLE_VERSION"]
    # Hailo-8/8L stay on HailoRT 4.x; the Hailo-10H/15 family runs 5.x.
    return (
        "4.23.0"
        if os.environ.get("HAILO_DOUBLE_ARCH", "hailo8").lower() in ("hailo8", "hailo8l")
        else "5.2.0"
    )


@dataclass
class _Holder:
    group_id: str
    users: int
    lock_file: IO[bytes] | None
    hangs_left: int = field(default=0)


class DeviceTimeline:
    """The chip's time: every network configured on the device books its frames here, one after another.

    A frame starts when the device is free and the frame has arrived, and takes its network's device time,
    so two networks sharing the chip get a combined rate the chip can sustain, and no more. Like HailoRT's
    scheduler, the network with the higher priority (set_scheduler_priority; default 16) goes first while
    it has frames waiting (a lower one waits at most PRIORITY_WAIT_S per frame, so a hung network cannot
    stop the others).
    """

    PRIORITY_WAIT_S = 1.0

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._free_at = 0.0
        self._waiting: dict[int, int] = {}  # priority -> frames submitted and not yet started
        self.busy_s = 0.0  # device time booked so far (utilisation = busy_s / elapsed)

    def arrive(self, priority: int, frames: int) -> None:
        with self._cond:
            self._waiting[priority] = self._waiting.get(priority, 0) + frames

    def withdraw(self, priority: int, frames: int) -> None:
        """Frames that will never run (aborted)."""
        with self._cond:
            self._waiting[priority] = self._waiting.get(priority, 0) - frames
            self._cond.notify_all()

    def alone(self, own_waiting: int) -> bool:
        """No frames but these `own_waiting` (one network's) wait for the chip."""
        with self._cond:
            return sum(self._waiting.values()) <= own_waiting

    def book(self, arrived_at: float, seconds: float, priority: int = 16) -> float:
        """Book one frame that arrived (see `arrive`); returns when the device finishes it (perf_counter)."""
        with self._cond:
            self._cond.wait_for(
                lambda: not any(n > 0 for p, n in self._waiting.items() if p > priority), self.PRIORITY_WAIT_S
            )
            self._waiting[priority] = self._waiting.get(priority, 0) - 1
            self._free_at = max(self._free_at, arrived_at) + seconds
            self.busy_s += seconds
            self._cond.notify_all()
            return self._free_at


@dataclass
class Observed:
    """What one network's host did to the device queue, for tests of how an engine feeds it."""

    queue_size: int = 0
    max_in_flight: int = 0  # frames
    job_sizes: dict[int, int] = field(default_factory=dict)  # frames per run_async -> count
    configures: list[int] = field(default_factory=list)  # batch size of each configure()
    priority: int = 16  # set_scheduler_priority (HailoRT's default 16)


class DeviceRegistry:
    """Which VDevices of this process hold the device, and the flock that keeps other processes out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: _Holder | None = None
        self.hangs_done = 0
        self.timeline = DeviceTimeline()  # the one simulated chip of this process
        self.observed: dict[str, Observed] = {}  # per network group name

    def acquire(self, config: DoubleConfig, group_id: str, service: bool) -> None:
        import hailo_platform  # the library version is the one the package reports (fixed at import)

        library = str(hailo_platform.__version__)
        if config.devices > 0 and config.driver_version and config.driver_version != library:
            # HailoRTDriver::validate_driver_version: major, minor and revision must all match.
            log_error(
                f"CHECK failed - Driver version ({config.driver_version}) is different from library "
                f"version ({library})"
            )
            raise fail(HAILO_INVALID_DRIVER_VERSION, "Driver version mismatch")
        if config.devices <= 0:
            raise fail(
                HAILO_OUT_OF_PHYSICAL_DEVICES,
                "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0",
            )
        if service:
            if not config.service:
                raise fail(
                    HAILO_RPC_FAILED, "Failed to connect to hailort_service (is hailort.service running?)"
                )
            return  # the service owns the device and multiplexes clients
        with self._lock:
            holder = self._holder
            if holder is not None:
                if group_id != "UNIQUE" and group_id == holder.group_id:
                    holder.users += 1
                    return
                raise fail(
                    HAILO_OUT_OF_PHYSICAL_DEVICES,
                    "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0",
                )
            config.lock_dir.mkdir(parents=True, exist_ok=True)
            lock_file = open(config.lock_dir / "hailo0.lock", "ab")  # noqa: SIM115 (held while in use)
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.close()
                log_error(f"Device {DEVICE_ID} is already in use by another process (HAILO_DEVICE_IN_USE)")
                raise fail(
                    HAILO_OUT_OF_PHYSICAL_DEVICES,
                    "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0",
                ) from None
            self._holder = _Holder(group_id, 1, lock_file)

    def release(self, service: bool) -> None:
        if service:
            return
        with self._lock:
            holder = self._holder
            if holder is None:
                return
            holder.users -= 1
            if holder.users == 0:
                if holder.lock_file is not None:
                    with contextlib.suppress(OSError):
                        fcntl.flock(holder.lock_file, fcntl.LOCK_UN)
                    holder.lock_file.close()
                self._holder = None


REGISTRY = DeviceRegistry()


def scan_devices() -> list[str]:
    return [DEVICE_ID] if DoubleConfig.from_env().devices > 0 else []
