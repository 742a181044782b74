"""The event stage: tracked frames in, face events and per-camera face counts out to a sink."""

from __future__ import annotations

from collections.abc import Iterable

from nvr.contracts.tracks import TrackedFrame
from nvr.events.config import EventsConfig
from nvr.events.lifecycle import CameraEvents
from nvr.events.payload import FaceEvent
from nvr.events.sink import EventSink
from nvr.events.snapshot import SnapshotMaker
from nvr.recognition.output import RecognitionOutput


class EventStage:
    """Runs on the thread that receives tracked frames (`handle` and `close` from that one thread); the sink
    does the (durable, asynchronous) delivery."""

    def __init__(
        self,
        config: EventsConfig,
        sink: EventSink,
        cameras: Iterable[str] = (),
        recognition: RecognitionOutput | None = None,
    ) -> None:
        self._config = config
        self._sink = sink
        self._recognition = recognition
        # With recognition, every event keeps its best face with room for the aligned crop.
        self._snapshots = SnapshotMaker(config.snapshot, keep_aligned=recognition is not None)
        self._cameras: dict[str, CameraEvents] = {}
        self._counts: dict[str, int] = {}
        self.events_out = 0
        for camera in cameras:
            self._camera(camera)
            self._publish_count(camera, 0)

    def handle(self, tracked: TrackedFrame) -> None:
        camera = self._camera(tracked.camera)
        self._emit(camera, camera.process(tracked))

    def close(self) -> None:
        """End every open event whose track has not ended; the sink stays open (the daemon closes it)."""
        for camera in self._cameras.values():
            self._emit(camera, camera.end_all())

    def _camera(self, name: str) -> CameraEvents:
        camera = self._cameras.get(name)
        if camera is None:
            camera = self._cameras[name] = CameraEvents(
                name, self._config, self._snapshots, self._recognition
            )
        return camera

    def _emit(self, camera: CameraEvents, events: list[FaceEvent]) -> None:
        if events:
            self._sink.publish_events(events)
            self.events_out += len(events)
        if camera.strangers and self._recognition is not None:
            # After the event's messages: a consumer of the stranger event finds its snapshot published.
            for stranger, evidence in camera.strangers:
                self._recognition.stranger(stranger, evidence)
            camera.strangers.clear()
        if self._counts.get(camera.camera) != camera.open_count:
            self._publish_count(camera.camera, camera.open_count)

    def _publish_count(self, camera: str, count: int) -> None:
        self._counts[camera] = count
        self._sink.publish_face_count(camera, count)
