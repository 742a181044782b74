"""Helpers for the capture tests: start decoder processes that are always stopped, and a real consumer."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest

from nvr.capture import CameraSpec, CaptureProcess, FrameFeed
from nvr.contracts.frameslots import RingLayout, segments
from nvr.contracts.geometry import Letterbox


@dataclass
class Received:
    frame_index: int
    pts: float
    wall_time: float
    received_at: float  # time.monotonic() in the test process
    model_letterbox: Letterbox
    snapshot_letterbox: Letterbox | None
    intact: bool
    model_input: npt.NDArray[np.uint8] | None = None


@dataclass
class Camera:
    """A started CaptureProcess plus a consumer that reads and releases its frames like the daemon will."""

    process: CaptureProcess
    frames: FrameFeed
    keep_pixels: bool = False
    hold: float = 0.0  # seconds a frame is held before release: a slow consumer
    received: list[Received] = field(default_factory=list)

    def poll(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                msg = self.frames.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                continue
            ring = self.process.ring
            frame = ring.read(msg.slot)
            if frame is not None and frame.frame_index == msg.frame_index:
                pixels = frame.model_input.copy() if self.keep_pixels else None
                if self.hold:
                    time.sleep(self.hold)
                self.received.append(
                    Received(
                        frame.frame_index, frame.pts, frame.wall_time, time.monotonic(),
                        frame.model_letterbox, frame.snapshot_letterbox, ring.is_intact(frame), pixels,
                    )
                )  # fmt: skip
            ring.release(msg.frame_index)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Consume until `condition()` holds; returns when (monotonic); fails the test after `timeout`."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}; stats: {self.process.stats()}")
            self.poll(0.05)
        return time.monotonic()

    @property
    def last_index(self) -> int:
        return self.received[-1].frame_index if self.received else -1


@pytest.fixture
def instance() -> Iterator[str]:
    """A unique instance name; fails the test if any of its segments is left in /dev/shm."""
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    leftovers = segments(name)
    for path in leftovers:
        path.unlink()
    assert not leftovers, f"shared memory left behind: {leftovers}"


@pytest.fixture
def start_camera(instance: str) -> Iterator[Callable[..., Camera]]:
    """`start_camera(spec, layout=..., hold=..., keep_pixels=...)`; every camera is stopped at teardown."""
    started: list[Camera] = []

    def start(spec: CameraSpec, layout: RingLayout | None = None, **consumer: object) -> Camera:
        frames = FrameFeed()
        process = CaptureProcess(spec, layout or RingLayout(), frames, instance=instance)
        camera = Camera(process, frames, **consumer)  # type: ignore[arg-type]
        started.append(camera)
        process.start()
        return camera

    yield start
    for camera in started:
        camera.process.stop()
