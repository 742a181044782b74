"""What the daemon tells a camera's capture process: where the stream is and how to treat it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["tcp", "udp"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter between reconnection attempts.

    Attempt n waits `min(cap, initial * factor**n)` minus up to `jitter` of it at random, so cameras that
    dropped together do not reconnect in lock step, and no wait ever exceeds `cap`.
    """

    initial: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got initial={self.initial} cap={self.cap}")
        if self.factor < 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before attempt `attempt` (0-based count of consecutive failures)."""
        base = min(self.cap, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """One camera. `url` is rtsp(s)://..., a file:// URL or a local path (files play at their own rate)."""

    name: str
    url: str
    detect_fps: float = 5.0  # frames per second sampled into the ring; every frame is still decoded
    transport: Transport = "tcp"  # RTSP lower transport
    open_timeout: float = 10.0  # seconds to connect and read the stream's headers
    read_timeout: float = 10.0  # seconds without data before a silent stream counts as lost
    backoff: Backoff = field(default_factory=Backoff)
    loop: bool = True  # local files: start over at the end (demos, tests)
    decoder_threads: int = 0  # 0: FFmpeg picks

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("camera name must not be empty")
        if self.detect_fps <= 0:
            raise ValueError(f"camera {self.name}: detect_fps must be positive, got {self.detect_fps}")
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"camera {self.name}: transport must be tcp or udp, got {self.transport!r}")
        if self.open_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError(f"camera {self.name}: timeouts must be positive")
        if self.decoder_threads < 0:
            raise ValueError(f"camera {self.name}: decoder_threads must be >= 0")
