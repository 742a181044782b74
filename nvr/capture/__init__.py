"""Camera capture: one decoder process per camera writing sampled, letterboxed frames into a shared ring.

`CaptureProcess` (process.py) is what the daemon uses, `FrameFeed` (feed.py) how decoders announce
frames; `CameraSpec` (spec.py) describes a camera; the decoder loop is in decoder.py, stream opening in
source.py, statistics in stats.py. The slot layout the consumers read is `nvr.contracts.frameslots`.
"""

from nvr.capture.feed import FrameFeed
from nvr.capture.process import CaptureProcess, capture_context
from nvr.capture.spec import Backoff, CameraSpec, Transport
from nvr.capture.stats import CaptureState, CaptureStats

__all__ = [
    "Backoff",
    "CameraSpec",
    "CaptureProcess",
    "CaptureState",
    "CaptureStats",
    "FrameFeed",
    "Transport",
    "capture_context",
]
