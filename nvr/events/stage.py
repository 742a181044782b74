"""The event stage: per-frame face results in, face events and per-camera face counts out to a sink."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from nvr.contracts.frameresult import FrameResult
from nvr.events.config import EventsConfig
from nvr.events.lifecycle import CameraEvents
from nvr.events.payload import FaceEvent
from nvr.events.sink import EventSink
from nvr.events.snapshot import SnapshotMaker

log = logging.getLogger(__name__)


class EventStage:
    """Runs on the thread that receives frame results (`handle`, `expire` and `close` from that one thread);
    the sink does the (durable, asynchronous) delivery."""

    def __init__(
        self,
        config: EventsConfig,
        sink: EventSink,
        cameras: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._sink = sink
        self._clock = clock
        self._snapshots = SnapshotMaker(config.snapshot)
        self._cameras: dict[str, CameraEvents] = {}
        self._last_frame: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.events_out = 0
        for camera in cameras:
            self._camera(camera)
            self._publish_count(camera, 0)

    def handle(self, frame: FrameResult) -> None:
        camera = self._camera(frame.camera)
        self._last_frame[frame.camera] = self._clock()
        self._emit(camera, camera.process(frame))

    def expire(self) -> None:
        """End the events of cameras that sent no frame for `end_after` seconds (call it periodically)."""
        now = self._clock()
        for name, camera in self._cameras.items():
            if camera.open_count and now - self._last_frame.get(name, now) >= self._config.tracker.end_after:
                log.info(
                    "camera %s sent no frames for %.1f s: ending its face events",
                    name,
                    now - self._last_frame[name],
                )
                self._emit(camera, camera.end_all())

    def close(self) -> None:
        """End every open event; the sink stays open (the daemon closes it after the stage)."""
        for camera in self._cameras.values():
            self._emit(camera, camera.end_all())

    @property
    def invalid_faces(self) -> int:
        return sum(c.invalid_faces for c in self._cameras.values())

    def _camera(self, name: str) -> CameraEvents:
        camera = self._cameras.get(name)
        if camera is None:
            camera = self._cameras[name] = CameraEvents(name, self._config, self._snapshots)
        return camera

    def _emit(self, camera: CameraEvents, events: list[FaceEvent]) -> None:
        if events:
            self._sink.publish_events(events)
            self.events_out += len(events)
        if self._counts.get(camera.camera) != camera.open_count:
            self._publish_count(camera.camera, camera.open_count)

    def _publish_count(self, camera: str, count: int) -> None:
        self._counts[camera] = count
        self._sink.publish_face_count(camera, count)
