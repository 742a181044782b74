"""Test double of HailoRT's Python package `hailo_platform`, for machines without a Hailo device.

Put `tests/hailo_double` on `sys.path` (or PYTHONPATH) to use it; see `pyhailort/_pyhailort.py` for the
environment variables that configure the simulated chip. Like the real package, only some names are
re-exported here: exception subclasses such as HailoRTTimeout live in `hailo_platform.pyhailort.pyhailort`.
"""

from hailo_platform.pyhailort._pyhailort import default_version
from hailo_platform.pyhailort.pyhailort import (
    HEF,
    AsyncInferJob,
    Device,
    FormatOrder,
    FormatType,
    HailoCommunicationClosedException,
    HailoFormatFlags,
    HailoRTException,
    HailoRTStreamAbortedByUser,
    HailoSchedulingAlgorithm,
    HailoStreamDirection,
    VDevice,
)

__version__ = default_version()

__all__ = [
    "HEF",
    "AsyncInferJob",
    "Device",
    "FormatOrder",
    "FormatType",
    "HailoCommunicationClosedException",
    "HailoFormatFlags",
    "HailoRTException",
    "HailoRTStreamAbortedByUser",
    "HailoSchedulingAlgorithm",
    "HailoStreamDirection",
    "VDevice",
]
