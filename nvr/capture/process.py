"""`CaptureProcess`: one camera's decoder in its own process, with the ring it writes and its stats.

The daemon's side of capture::

    frames = FrameFeed()                   # every camera's FrameReady(camera, slot, index): nvr.capture.feed
    remove_stale_segments(instance)        # leftovers of a killed run
    cam = CaptureProcess(spec, RingLayout(...), frames, instance=instance)
    cam.start()                            # creates and owns the ring, spawns the decoder
    cam.ring                               # the consumer's FrameRing (or FrameRing.attach elsewhere)
    cam.stats()                            # CaptureStats snapshot, any time
    if not cam.is_alive(): cam.start()     # a decoder that died is restarted on the same ring
    cam.stop(timeout=5.0)                  # SIGTERM, then SIGKILL; unlinks the ring

The ring belongs to this object, not to the decoder process, so a decoder killed by anything still
leaves nothing in /dev/shm once `stop()` runs, and consumers keep their mapping across decoder restarts.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
from collections.abc import Callable

from nvr.capture.decoder import run_capture
from nvr.capture.feed import FrameFeed
from nvr.capture.spec import CameraSpec
from nvr.capture.stats import CaptureState, CaptureStats, StatsBlock
from nvr.contracts.frameslots import FrameRing, RingLayout


def capture_context() -> multiprocessing.context.SpawnContext:
    """Decoder processes are spawned, never forked: the daemon has threads (inference, MQTT) by then."""
    return multiprocessing.get_context("spawn")


class CaptureProcess:
    def __init__(
        self,
        spec: CameraSpec,
        layout: RingLayout,
        frames: FrameFeed | None,
        instance: str = "nvr",
        log_setup: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.layout = layout
        self.instance = instance
        self._frames = frames
        self._log_setup = log_setup
        self._ctx = capture_context()
        self._stats: StatsBlock = self._ctx.RawValue(StatsBlock)
        self._process: multiprocessing.context.SpawnProcess | None = None
        self._ring: FrameRing | None = None

    @property
    def ring(self) -> FrameRing:
        if self._ring is None:
            raise RuntimeError(f"camera {self.spec.name}: capture not started")
        return self._ring

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Create the ring (first time) and spawn the decoder; restarts a decoder that has exited."""
        if self._process is not None and self._process.is_alive():
            return
        if self._ring is None:
            self._ring = FrameRing.create(self.instance, self.spec.name, self.layout)
        self._stats.state = CaptureState.STARTING
        # A new pipe per start: whatever the previous decoder was doing when it died, nothing of it is shared.
        notices = self._frames.connect(self.spec.name) if self._frames is not None else None
        try:
            self._process = self._ctx.Process(
                target=run_capture,
                args=(self.spec, self.instance, self._stats, notices, self._log_setup),
                name=f"nvr-capture-{self.spec.name}",
                daemon=True,
            )
            self._process.start()
        finally:
            if notices is not None:
                notices.close()  # the decoder has its own copy; the pipe ends when the decoder does

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def stats(self) -> CaptureStats:
        return CaptureStats.read(self._stats)

    def stop(self, timeout: float = 5.0) -> int | None:
        """End the decoder (SIGTERM, SIGKILL after `timeout` s) and remove the ring; returns its exit code."""
        exitcode = None
        process, self._process = self._process, None
        if process is not None:
            if process.is_alive():
                process.terminate()
                process.join(timeout)
                if process.is_alive():
                    process.kill()
                    process.join(5.0)
            exitcode = process.exitcode
            with contextlib.suppress(ValueError):
                process.close()
        self._stats.state = CaptureState.STOPPED
        if self._ring is not None:
            self._ring.close(unlink=True)
            self._ring = None
        return exitcode
