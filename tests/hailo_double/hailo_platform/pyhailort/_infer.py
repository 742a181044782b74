"""The VDevice / InferModel / ConfiguredInferModel half of the double's `pyhailort` (re-exported there)."""

from __future__ import annotations

import os
from typing import Any

from hailo_platform.pyhailort import _pyhailort
from hailo_platform.pyhailort._configured import ConfiguredInferModel, _ConfiguredCore
from hailo_platform.pyhailort._pyhailort import FormatOrder, FormatType, fail
from hailo_platform.pyhailort._runtime import Compute, SimulatedCore
from hailo_platform.pyhailort.pyhailort import (
    HEF,
    DeviceArchitectureTypes,
    ExceptionWrapper,
    HailoRTException,
    _quant_info,
    _read_hef,
)

_ITEMSIZE = {FormatType.UINT8: 1, FormatType.UINT16: 2, FormatType.FLOAT32: 4}


class VDevice:
    def __init__(self, params: Any = None, *, device_ids: list[str] | None = None) -> None:
        self._vdevice: bool | None = None
        self._params = params if params is not None else VDevice.create_params()
        self._creation_pid = os.getpid()
        self._config = _pyhailort.DoubleConfig.from_env()
        self._service = bool(self._params.multi_process_service)
        # The machine this VDevice was opened on: tests swap in a fresh one (hailo_support.configure_double),
        # and a VDevice an earlier test leaked must release its own, not the current test's.
        self._registry = _pyhailort.REGISTRY
        with ExceptionWrapper():
            if self._service and self._params.scheduling_algorithm == 0:
                raise fail(
                    _pyhailort.HAILO_INVALID_ARGUMENT,
                    "Multi-process service is supported only with HailoRT scheduler",
                )
            self._registry.acquire(self._config, str(self._params.group_id), self._service)
        self._vdevice = True
        self._configured: list[_ConfiguredCore] = []

    @staticmethod
    def create_params() -> _pyhailort.VDeviceParams:
        return _pyhailort.VDeviceParams.default()

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: object) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        if self._vdevice is not None:
            for core in self._configured:
                core.shutdown()
            self._registry.release(self._service)
            self._vdevice = None

    def get_physical_devices_ids(self) -> list[str]:
        return [_pyhailort.DEVICE_ID]

    def get_physical_devices(self) -> list[Any]:
        from hailo_platform.pyhailort.pyhailort import Device

        return [Device(dev_id) for dev_id in self.get_physical_devices_ids()]

    def create_infer_model(self, hef_source: str | bytes, name: str = "") -> InferModel:
        if os.getpid() != self._creation_pid:
            raise HailoRTException("InferModel can be created only from the process VDevice was created in.")
        if type(hef_source) is bytes:
            raise NotImplementedError("hailo double: create_infer_model from bytes is not simulated")
        if not isinstance(hef_source, str):  # pybind11 rejects anything but str for the file overload
            raise TypeError("create_infer_model_from_file(): incompatible function arguments")
        with ExceptionWrapper():
            info = _read_hef(hef_source)
            if len(info.network_groups) != 1 and not name:
                raise fail(_pyhailort.HAILO_INVALID_ARGUMENT, "HEF contains multiple network groups")
        return InferModel(self, info, hef_source)


class _Stream:
    """C++ InferModel::InferStream state: the layer, and the user format chosen before configure()."""

    def __init__(self, layer: Any, per_feature: bool) -> None:
        self.layer = layer
        self.per_feature = per_feature
        self.type = FormatType.UINT16 if layer.dtype == "uint16" else FormatType.UINT8
        self.order = _pyhailort.DEFAULT_USER_ORDER.get(layer.device_format, FormatOrder.NHWC)

    def frame_size(self) -> int:
        h, w, c = self.layer.shape
        return int(h * w * c * _ITEMSIZE[self.type])


class InferModel:
    class InferStream:
        def __init__(self, stream: _Stream) -> None:
            self._s = stream

        @property
        def name(self) -> str:
            return str(self._s.layer.name)

        @property
        def shape(self) -> list[int]:
            h, w, c = self._s.layer.shape
            if self._s.order is FormatOrder.NC:
                return [c]
            if self._s.order is FormatOrder.NHW:
                return [h, w]
            return [h, w, c]

        @property
        def format(self) -> _pyhailort.HailoFormat:
            return _pyhailort.HailoFormat(self._s.type, self._s.order)

        def set_format_type(self, type: FormatType) -> None:
            if not isinstance(type, FormatType):
                raise TypeError("set_format_type(): incompatible function arguments")
            self._s.type = type

        def set_format_order(self, order: FormatOrder) -> None:
            if not isinstance(order, FormatOrder):
                raise TypeError("set_format_order(): incompatible function arguments")
            self._s.order = order

        @property
        def quant_infos(self) -> list[_pyhailort.QuantInfo]:
            return [_quant_info(self._s.layer, self._s.per_feature)]  # 4.23: always one entry

        @property
        def is_nms(self) -> bool:
            return False

    def __init__(self, vdevice: VDevice, info: Any, hef_path: str) -> None:
        self._vdevice = vdevice
        self._info = info
        self._hef_path = hef_path
        self._hef: HEF | None = None
        self._batch_size = 0
        group = info.default_group
        per_feature = bool(info.per_feature_quant)
        self._inputs = {layer.name: _Stream(layer, False) for layer in group.inputs}
        self._outputs = {layer.name: _Stream(layer, per_feature) for layer in group.outputs}

    @property
    def hef(self) -> HEF:
        if self._hef is None:
            self._hef = HEF(self._hef_path)
        return self._hef

    def set_batch_size(self, batch_size: int) -> None:
        if not isinstance(batch_size, int) or not 0 <= batch_size <= 0xFFFF:
            raise TypeError("set_batch_size(): incompatible function arguments")
        self._batch_size = batch_size

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    @property
    def inputs(self) -> list[InferModel.InferStream]:
        return [self.InferStream(s) for s in self._inputs.values()]

    @property
    def outputs(self) -> list[InferModel.InferStream]:
        return [self.InferStream(s) for s in self._outputs.values()]

    def _find(self, streams: dict[str, _Stream], name: str, kind: str) -> _Stream:
        with ExceptionWrapper():
            if not name:
                if len(streams) != 1:
                    raise fail(_pyhailort.HAILO_INVALID_OPERATION, f"Model has more than one {kind}!")
                return next(iter(streams.values()))
            if name not in streams:
                raise fail(_pyhailort.HAILO_NOT_FOUND, f"Failed to find {kind} with name '{name}'")
            return streams[name]

    def input(self, name: str = "") -> InferModel.InferStream:
        return self.InferStream(self._find(self._inputs, name, "input"))

    def output(self, name: str = "") -> InferModel.InferStream:
        return self.InferStream(self._find(self._outputs, name, "output"))

    def configure(self) -> ConfiguredInferModel:
        config = self._vdevice._config
        chip_arch, accepted = _pyhailort.CHIPS[config.arch]
        with ExceptionWrapper():
            if self._vdevice._vdevice is None:
                raise fail(_pyhailort.HAILO_INVALID_OPERATION, "VDevice was released")
            if self._info.hw_arch not in accepted:
                _pyhailort.log_error(
                    "HEF format is not compatible with device. Device arch: "
                    f"{DeviceArchitectureTypes(chip_arch).name}, HEF arch: "
                    f"{_pyhailort.HEF_ARCH_NAMES.get(self._info.hw_arch, '?')}"
                )
                status = (
                    _pyhailort.HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE
                    if _installed_minor() >= (4, 21)
                    else _pyhailort.HAILO_INVALID_HEF
                )
                raise _pyhailort.HailoRTStatusException(status)
            if self._info.hw_arch == 3 and config.arch == "hailo8":
                _pyhailort.log_warning(
                    "HEF was compiled for Hailo8L device, while the device itself is Hailo8. "
                    "This will result in lower performance."
                )
            if config.queue_frames is not None:  # absolute mode: the queue does not grow with the batch
                queue_size = config.queue_frames
            else:
                queue_size = config.queue_per_batch * max(1, self._batch_size)
                if queue_size < self._batch_size:
                    raise fail(_pyhailort.HAILO_INVALID_OPERATION, "batch bigger than internal_queue_size")
            registry = self._vdevice._registry
            hang = config.hang_after is not None and registry.hangs_done < config.hangs
            registry.hangs_done += int(hang)
            group = self._info.default_group
            observed = registry.observed.setdefault(group.name, _pyhailort.Observed())
            observed.queue_size = queue_size
            observed.configures.append(self._batch_size)
            core = SimulatedCore(
                Compute(group, config),
                config,
                queue_size,
                hang,
                registry.timeline,
                config.latency_for(group.name),
                observed,
            )
        configured = _ConfiguredCore(core, self)
        self._vdevice._configured.append(configured)
        return ConfiguredInferModel(configured, self)


def _installed_minor() -> tuple[int, ...]:
    from hailo_platform.pyhailort.pyhailort import _installed_version, _version_tuple

    return _version_tuple(_installed_version())
