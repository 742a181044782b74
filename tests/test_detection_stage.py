"""The detection stage's interface to the supervisor: settings change on the results thread."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

from nvr.backends.base import EngineResult
from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.contracts.frameref import FrameRef
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.frameslots import FrameReady
from nvr.contracts.geometry import Letterbox
from nvr.contracts.tensors import RawOutput
from nvr.detection.pipeline import DetectionPipeline


class IdleEngine:
    """An engine that never gets a frame: the results thread just polls it."""

    def submit(self, frame: FrameRef) -> None:
        raise AssertionError("no frame was offered")

    def get_result(self, timeout: float | None = None) -> EngineResult | None:
        time.sleep(min(timeout or 0.0, 0.02))
        return None

    def close(self, timeout: float = 10.0) -> None:
        pass


class WatchedPostprocessor:
    """Records which thread changes its threshold."""

    landmark_names = SCRFD_LANDMARKS

    def __init__(self) -> None:
        self._threshold = 0.5
        self.changed_on: list[str] = []

    @property
    def score_threshold(self) -> float:
        return self._threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self.changed_on.append(threading.current_thread().name)
        self._threshold = value

    def decode(self, outputs: Sequence[RawOutput], letterbox: Letterbox) -> Detections:
        raise AssertionError("no frame was decoded")


class NullSink:
    def handle(self, result: FrameResult) -> None:
        pass

    def expire(self) -> None:
        pass


def test_set_threshold_is_applied_by_the_results_thread() -> None:
    postprocessor = WatchedPostprocessor()
    ready: queue.Queue[FrameReady] = queue.Queue()
    pipeline = DetectionPipeline(IdleEngine(), postprocessor, NullSink(), ready)
    pipeline.set_threshold(0.3)  # before start: applied once the results thread runs
    assert postprocessor.score_threshold == 0.5
    pipeline.start()
    try:
        deadline = time.monotonic() + 10
        while postprocessor.score_threshold != 0.3 and time.monotonic() < deadline:
            time.sleep(0.01)
        pipeline.set_threshold(0.4)
        while postprocessor.score_threshold != 0.4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        assert pipeline.stop()
    assert postprocessor.changed_on == ["detection-results", "detection-results"]
