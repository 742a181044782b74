"""Test double of `hailo_platform.pyhailort.pyhailort` (HailoRT 4.23): the async InferModel API, its errors.

Mirrors the real module's names, signatures, exception mapping and quirks (str-only HEF paths, list shapes,
byte-size checks at run_async, callbacks on one worker thread with `completion_info=`, a failed run_async
shutting the model down, Bindings whose output buffers are swapped for temporary DMA buffers by run_async).
"""

from __future__ import annotations

import os
from enum import IntEnum
from types import TracebackType
from typing import Any

from hailo_platform.pyhailort import _pyhailort
from hailo_platform.pyhailort._pyhailort import FormatOrder, FormatType, HailoRTStatusException

HAILO_DEFAULT_BATCH_SIZE = 0
HailoSchedulingAlgorithm = _pyhailort.SchedulingAlgorithm
HailoFormatFlags = _pyhailort.FormatFlags
HailoStreamDirection = _pyhailort.StreamDirection


class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTStreamAborted(HailoRTException):
    pass


class HailoRTStreamAbortedByUser(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


class HailoRTNetworkGroupNotActivatedException(HailoRTException):
    pass


class HailoCommunicationClosedException(HailoRTException):
    pass


_SEE_LOG = ". See hailort.log for more information"
_TYPED: dict[str, tuple[type[HailoRTException], str]] = {
    "HAILO_TIMEOUT": (
        HailoRTTimeout,
        "Received a timeout - hailort has failed because a timeout had occurred",
    ),
    "HAILO_STREAM_ABORT": (HailoRTStreamAborted, "Stream was aborted"),
    "HAILO_INVALID_OPERATION": (HailoRTInvalidOperationException, "Invalid operation" + _SEE_LOG),
    "HAILO_INVALID_ARGUMENT": (HailoRTInvalidArgumentException, "Invalid argument" + _SEE_LOG),
    "HAILO_NOT_FOUND": (HailoRTNotFoundException, "Item not found" + _SEE_LOG),
    "HAILO_INVALID_HEF": (HailoRTInvalidHEFException, "Invalid HEF" + _SEE_LOG),
    "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE": (
        HailoRTHEFNotCompatibleWithDevice,
        "HEF file is not compatible with device" + _SEE_LOG,
    ),
    "HAILO_DRIVER_OPERATION_FAILED": (
        HailoRTDriverOperationFailedException,
        "Failure in hailort driver ioctl. run 'dmesg | grep hailo' for more information",
    ),
    "HAILO_COMMUNICATION_CLOSED": (
        HailoCommunicationClosedException,
        "Communication closed failure. Check server-client connection",
    ),
}


class ExceptionWrapper:
    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(value, HailoRTStatusException):
            raise self.create_exception_from_status(int(value.args[0])) from value

    @staticmethod
    def create_exception_from_status(error_code: int) -> HailoRTException:
        name = _pyhailort.get_status_message(error_code)
        if name in _TYPED:
            cls, message = _TYPED[name]
            return cls(message)
        return HailoRTException(f"libhailort failed with error: {error_code} ({name})")


def _installed_version() -> str:
    import hailo_platform

    return str(hailo_platform.__version__)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2])


def _read_hef(hef_source: str) -> Any:
    from nvr.errors import NvrError
    from nvr.hef import read_hef

    if not os.path.isfile(hef_source):
        raise _pyhailort.fail(_pyhailort.HAILO_OPEN_FILE_FAILURE, f'Failed to open HEF file "{hef_source}"')
    try:
        info = read_hef(hef_source)
    except NvrError:
        raise _pyhailort.fail(_pyhailort.HAILO_HEF_FILE_CORRUPTED, "HEF file is corrupted") from None
    supported = {0: (4, 0), 1: (4, 17), 2: (4, 20), 3: (4, 21)}.get(info.header_version, (99, 0))
    if _version_tuple(_installed_version()) < supported:
        raise _pyhailort.fail(
            _pyhailort.HAILO_HEF_NOT_SUPPORTED, f"HEF version is not supported: {info.header_version}"
        )
    return info


class HEF:
    def __init__(self, hef_source: str | bytes) -> None:
        if isinstance(hef_source, bytes):
            raise NotImplementedError("hailo double: HEF from bytes is not simulated")
        if not isinstance(hef_source, str):
            raise ValueError("HEF can only be created from a file path (str) or a buffer (bytes)")
        with ExceptionWrapper():
            self._info = _read_hef(hef_source)
        self._path = hef_source

    @property
    def path(self) -> str:
        return self._path

    def get_network_group_names(self) -> list[str]:
        return [group.name for group in self._info.network_groups]

    def _infos(self, layers: Any, direction: Any) -> list[_pyhailort.VStreamInfo]:
        group = self._info.default_group
        return [_vstream_info(layer, group.network_name, direction) for layer in layers]

    def get_input_vstream_infos(self, name: str | None = None) -> list[_pyhailort.VStreamInfo]:
        return self._infos(self._info.default_group.inputs, _pyhailort.StreamDirection.H2D)

    def get_output_vstream_infos(self, name: str | None = None) -> list[_pyhailort.VStreamInfo]:
        return self._infos(self._info.default_group.outputs, _pyhailort.StreamDirection.D2H)

    def get_sorted_output_names(self, network_group_name: str | None = None) -> list[str]:
        return [layer.name for layer in self._info.default_group.outputs]


def _quant_info(layer: Any, per_feature: bool) -> _pyhailort.QuantInfo:
    if per_feature:  # fill_layer_info leaves the scalar as INVALID_QP when the HEF has per-feature values
        return _pyhailort.QuantInfo(0.0, 0.0, 0.0, 0.0)
    return _pyhailort.QuantInfo(float(layer.quant.zero_point), float(layer.quant.scale), *layer.limvals)


def _vstream_info(
    layer: Any, network_name: str, direction: Any, per_feature: bool = False
) -> _pyhailort.VStreamInfo:
    fmt = _pyhailort.HailoFormat(
        FormatType.UINT16 if layer.dtype == "uint16" else FormatType.UINT8,
        _pyhailort.DEFAULT_USER_ORDER.get(layer.device_format, FormatOrder.NHWC),
    )
    return _pyhailort.VStreamInfo(
        layer.name, network_name, direction, fmt, _quant_info(layer, per_feature), layer.shape
    )


class DeviceArchitectureTypes(IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2
    HAILO15H = 3
    HAILO15L = 4
    HAILO15M = 5
    HAILO10H = 6

    def __str__(self) -> str:
        return self.name


class BoardInformation:
    def __init__(self, device_architecture: int) -> None:
        self.device_architecture = DeviceArchitectureTypes(device_architecture)
        self.board_name = "Hailo double"
        self.serial_number = ""
        self.product_name = ""


class Control:
    def __init__(self, device_id: str) -> None:
        self._device_id = device_id

    def identify(self) -> BoardInformation:
        config = _pyhailort.DoubleConfig.from_env()
        return BoardInformation(_pyhailort.CHIPS[config.arch][0])


class Device:
    @classmethod
    def scan(cls) -> list[str]:
        return _pyhailort.scan_devices()

    def __init__(self, device_id: str | None = None) -> None:
        if device_id is None:
            ids = Device.scan()
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")
            device_id = ids[0]
        self._device_id = device_id
        self._control_object = Control(device_id)

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def control(self) -> Control:
        return self._control_object

    def release(self) -> None:
        pass


class AsyncInferCompletionInfo:
    def __init__(self, exception: HailoRTException | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> HailoRTException | None:
        return self._exception


# The InferModel half of the module lives in sibling files to keep each file readable; same names here.
from hailo_platform.pyhailort._configured import AsyncInferJob, ConfiguredInferModel  # noqa: E402
from hailo_platform.pyhailort._infer import InferModel, VDevice  # noqa: E402

__all__ = [
    "HAILO_DEFAULT_BATCH_SIZE", "HEF", "AsyncInferCompletionInfo", "AsyncInferJob", "BoardInformation",
    "ConfiguredInferModel", "Control", "Device", "DeviceArchitectureTypes", "ExceptionWrapper", "FormatOrder",
    "FormatType", "HailoCommunicationClosedException", "HailoFormatFlags",
    "HailoRTDriverOperationFailedException", "HailoRTException", "HailoRTHEFNotCompatibleWithDevice",
    "HailoRTInvalidArgumentException", "HailoRTInvalidHEFException", "HailoRTInvalidOperationException",
    "HailoRTNetworkGroupNotActivatedException",
    "HailoRTNotFoundException", "HailoRTStreamAborted", "HailoRTStreamAbortedByUser", "HailoRTTimeout",
    "HailoSchedulingAlgorithm", "HailoStreamDirection", "InferModel", "VDevice",
]  # fmt: skip
