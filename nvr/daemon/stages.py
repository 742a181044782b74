"""The stages after detection, wired in data-flow order: tracking -> (recognition) -> events.

The detection pipeline hands each processed frame to `FaceStages.handle` on its results thread; every stage
after it runs synchronously on that thread, so the frame's snapshot image stays valid all the way down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from nvr.contracts.frameresult import FrameResult
from nvr.contracts.tracks import TrackSink
from nvr.events.config import EventsConfig
from nvr.events.sink import EventSink
from nvr.events.stage import EventStage
from nvr.recognition.output import RecognitionOutput
from nvr.recognition.stage import RecognitionStage
from nvr.tracking.stage import TrackingStage

# Builds the recognition stage once its downstream (the event stage) exists.
RecognitionFactory = Callable[[TrackSink], RecognitionStage]


class FaceStages:
    """What the detection pipeline delivers to (its `FrameSink`)."""

    def __init__(
        self,
        config: EventsConfig,
        sink: EventSink,
        cameras: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        *,
        recognition: tuple[RecognitionOutput, RecognitionFactory] | None = None,
    ) -> None:
        output = recognition[0] if recognition is not None else None
        # The stages run on the results thread; recognition's embedder thread also hands its decisions
        # down at once (not at the camera's next frame), so every entry point takes this lock.
        self._lock = threading.Lock()
        self.events = EventStage(config, sink, cameras, recognition=output)
        self.recognition: RecognitionStage | None = None
        after_tracking: TrackSink = self.events
        if recognition is not None:
            self.recognition = recognition[1](self.events)
            self.recognition.on_result = self._recognised
            after_tracking = self.recognition
        self.tracking = TrackingStage(config.tracker, after_tracking, clock=clock)

    def handle(self, frame: FrameResult) -> None:
        with self._lock:
            self.tracking.handle(frame)

    def expire(self) -> None:
        """End the tracks (and so the events) of cameras gone quiet; the pipeline calls it periodically."""
        with self._lock:
            self.tracking.expire()
            if self.recognition is not None:
                self.recognition.expire()

    def _recognised(self) -> None:
        with self._lock:
            if self.recognition is not None:
                self.recognition.flush()

    def close(self) -> None:
        """End every open track and event; the sink stays open (the daemon closes it after the stages)."""
        if self.recognition is not None:
            self.recognition.on_result = None
        with self._lock:
            try:
                self.tracking.close()
                if self.recognition is not None:
                    self.recognition.flush()  # identities decided in the last moments still go out
            finally:
                self.events.close()
        if self.recognition is not None:
            self.recognition.close()

    @property
    def events_out(self) -> int:
        return self.events.events_out

    @property
    def invalid_faces(self) -> int:
        return self.tracking.invalid_faces
