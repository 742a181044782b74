"""Pure-Python reader of Hailo `.hef` files: header, integrity check, network groups, layers, quantization."""

from nvr.hef.model import ARCH_FAMILY, HefInfo, HefLayer, HwArch, NetworkGroup, arch_family
from nvr.hef.reader import HefError, parse_hef, read_hef

__all__ = [
    "ARCH_FAMILY",
    "HefError",
    "HefInfo",
    "HefLayer",
    "HwArch",
    "NetworkGroup",
    "arch_family",
    "parse_hef",
    "read_hef",
]
