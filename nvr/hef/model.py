"""What the HEF reader returns: plain, immutable metadata about a compiled Hailo network."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from nvr.contracts.tensors import QuantInfo


class HwArch(IntEnum):
    """`ProtoHEFHeader.hw_arch` values (HailoRT's enum)."""

    HAILO8 = 0
    HAILO8P = 1  # what the Dataflow Compiler writes for Hailo-8 builds
    HAILO8R = 2
    HAILO8L = 3
    HAILO15M = 4
    HAILO10H = 5
    HAILO15L = 6
    HAILO15H = 103  # also used for Hailo-10H builds


# The chip family a user recognises, per hw_arch; used in messages ("compiled for Hailo-10H/15H").
ARCH_FAMILY: dict[int, str] = {
    HwArch.HAILO8: "Hailo-8",
    HwArch.HAILO8P: "Hailo-8",
    HwArch.HAILO8R: "Hailo-8",
    HwArch.HAILO8L: "Hailo-8L",
    HwArch.HAILO15M: "Hailo-15M",
    HwArch.HAILO10H: "Hailo-10H",
    HwArch.HAILO15L: "Hailo-15L",
    HwArch.HAILO15H: "Hailo-10H/15H",
}

# The oldest HailoRT that reads each HEF header version.
MIN_HAILORT_FOR_HEADER: dict[int, tuple[int, int]] = {0: (4, 0), 1: (4, 17), 2: (4, 20), 3: (4, 21)}


def arch_family(hw_arch: int) -> str:
    return ARCH_FAMILY.get(hw_arch, f"unknown architecture {hw_arch}")


@dataclass(frozen=True, slots=True)
class HefLayer:
    """One boundary input or output stream (a HailoRT vstream)."""

    name: str  # vstream name, e.g. "scrfd_2_5g/conv42"
    shape: tuple[int, int, int]  # host-side (H, W, C); NC layers are (1, 1, C)
    dtype: str  # "uint8" or "uint16"
    device_format: str  # device order name: "NHCW", "NC", "FCR", ... (host buffers are always NHWC)
    quant: QuantInfo  # per-feature arrays when the HEF has extension 25 (OUTPUT_SCALE_PER_FEATURE)
    limvals: tuple[float, float]

    @property
    def hailort_shape(self) -> tuple[int, ...]:
        """The shape HailoRT's vstream info reports: (C,) for NC layers, else (H, W, C)."""
        return (self.shape[2],) if self.device_format == "NC" else self.shape

    @property
    def frame_size(self) -> int:
        """Bytes of one host frame of this layer."""
        h, w, c = self.shape
        return h * w * c * (2 if self.dtype == "uint16" else 1)


@dataclass(frozen=True, slots=True)
class NetworkGroup:
    name: str
    network_name: str  # "<group>/<network>", the prefix HailoRT reports as network_name
    inputs: tuple[HefLayer, ...]
    outputs: tuple[HefLayer, ...]  # in HailoRT's sorted output order


@dataclass(frozen=True, slots=True)
class HefInfo:
    path: Path
    header_version: int
    hw_arch: int
    sdk_version: str
    extensions: frozenset[int]
    network_groups: tuple[NetworkGroup, ...]  # HailoRT's order: [0] is the one create_infer_model uses

    @property
    def arch_family(self) -> str:
        return arch_family(self.hw_arch)

    @property
    def hw_arch_name(self) -> str:
        try:
            return HwArch(self.hw_arch).name
        except ValueError:
            return f"UNKNOWN({self.hw_arch})"

    @property
    def min_hailort(self) -> tuple[int, int]:
        return MIN_HAILORT_FOR_HEADER.get(self.header_version, (99, 0))

    @property
    def per_feature_quant(self) -> bool:
        return 25 in self.extensions

    @property
    def default_group(self) -> NetworkGroup:
        return self.network_groups[0]
