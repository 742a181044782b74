"""Tracker and event lifecycle: real faces from the Hamilton clip, synthetic ones for edge cases it lacks."""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from collections import defaultdict
from collections.abc import Sequence

import jsonschema
import numpy as np
import pytest
from PIL import Image
from video_faces import empty_frame, video_frames

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.tracks import NOT_TRACKED, TrackedFrame
from nvr.daemon.stages import FaceStages
from nvr.events.config import EventsConfig, SnapshotConfig
from nvr.events.payload import SCHEMA_PATH, FaceEvent
from nvr.tracking.config import TrackerConfig
from nvr.tracking.stage import TrackingStage
from nvr.tracking.tracker import IouTracker, iou_matrix

T0 = 1_763_683_200.0


class ListSink:
    """Collects what the stage emits (the real sinks are tested in test_mqtt_*.py)."""

    def __init__(self) -> None:
        self.events: list[FaceEvent] = []
        self.counts: list[tuple[str, int]] = []

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        self.events.extend(events)

    def publish_face_count(self, camera: str, count: int) -> None:
        self.counts.append((camera, count))

    def close(self, timeout: float = 5.0) -> None:
        pass


def faces(*boxes: tuple[float, float, float, float], scores: list[float] | None = None) -> Detections:
    """Synthetic faces with plausible landmarks inside each box."""
    b = np.array(boxes, np.float32).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)
    landmarks = b[:, None, :2] + rel[None] * np.stack([w, h], axis=1)[:, None, :]
    s = np.array(scores if scores is not None else [0.9] * len(b), np.float32)
    return Detections(b, s, landmarks.astype(np.float32), SCRFD_LANDMARKS)


def frame(i: int, detections: Detections, fps: float = 10.0, camera: str = "cam") -> FrameResult:
    return FrameResult(camera, i, T0 + i / fps, (640, 480), detections, np.zeros((480, 640, 3), np.uint8))


def run(frames: list[FrameResult], config: EventsConfig | None = None) -> ListSink:
    sink = ListSink()
    stage = FaceStages(config or EventsConfig(), sink)
    for f in frames:
        stage.handle(f)
    return sink


def by_id(events: list[FaceEvent]) -> dict[str, list[FaceEvent]]:
    grouped: dict[str, list[FaceEvent]] = defaultdict(list)
    for e in events:
        grouped[e.id].append(e)
    return grouped


def test_video_faces_entering_and_leaving_make_new_updates_end() -> None:
    config = EventsConfig(update_interval=0.3, tracker=TrackerConfig(end_after=0.4))
    clip = video_frames()
    sink = ListSink()
    stage = FaceStages(config, sink, cameras=["hamilton"])
    for f in clip:
        stage.handle(f.result())
    stage.handle(empty_frame(clip[-1], 1.0))  # the scene empties: every face has left

    events = by_id(sink.events)
    assert len(events) >= 3, "the clip shows several faces entering and leaving at scene cuts"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    full_lifecycles = 0
    for event_id, seq in events.items():
        types = [e.type for e in seq]
        # new, then updates, then end: exactly once each end, in this order, all under one id.
        assert types[0] == "new" and types[-1] == "end" and set(types[1:-1]) <= {"update"}, types
        full_lifecycles += "update" in types
        assert re.fullmatch(r"\d+\.\d{6}-[a-z0-9]{6}", event_id)
        times = [e.face.frame_time for e in seq]
        assert times == sorted(times)
        # Updates are rate-limited to update_interval (capture time), not sent per frame.
        assert all(b - a >= 0.3 - 1e-6 for a, b in itertools.pairwise(times[:-1]))
        end = seq[-1]
        assert end.end_time is not None and seq[0].start_time <= end.end_time
        assert all(e.end_time is None for e in seq[:-1])
        assert end.duration == pytest.approx(end.end_time - end.start_time)
        # The best face is the best sighting by score and size among those reported.
        assert all(
            end.best.score * math.sqrt(end.best.area) >= e.face.score * math.sqrt(e.face.area) - 1e-6
            for e in seq
        )
        assert seq[0].snapshot is not None, "a new event carries the snapshot of its best face"
        for e in seq:
            validator.validate(json.loads(e.to_json()))
            assert e.frame_size == (640, 360)
            x1, y1, x2, y2 = e.face.box  # may extend past the border for a face cut by it
            assert x1 < x2 and y1 < y2 and x2 > 0 and y2 > 0 and x1 < 640 and y1 < 360
    assert full_lifecycles >= 1, "at least one face stays long enough for an update"
    # The retained count followed the faces in view and came back to zero.
    counts = [n for camera, n in sink.counts if camera == "hamilton"]
    assert counts[0] == 0 and max(counts) >= 2 and counts[-1] == 0
    snapshot = Image.open(io.BytesIO(next(iter(events.values()))[0].snapshot or b""))
    assert snapshot.format == "JPEG" and max(snapshot.size) <= SnapshotConfig().max_size


def test_a_one_frame_false_positive_is_not_an_event() -> None:
    frames = [
        frame(0, faces()),
        frame(1, faces((100, 100, 160, 170))),
        *[frame(i, faces()) for i in range(2, 40)],
    ]
    sink = run(frames)
    assert sink.events == []
    assert all(n == 0 for _, n in sink.counts)


def test_a_face_missing_for_less_than_end_after_keeps_its_event() -> None:
    box = (100, 100, 160, 170)
    seen = [i for i in range(60) if not 20 <= i < 35]  # 1.5 s gap at 10 fps, end_after is 2 s
    frames = [frame(i, faces(box) if i in seen else faces()) for i in range(60)]
    frames += [frame(i, faces()) for i in range(60, 90)]
    sink = run(frames)
    events = by_id(sink.events)
    assert len(events) == 1
    (seq,) = events.values()
    assert seq[0].type == "new" and seq[-1].type == "end"
    assert seq[-1].end_time == pytest.approx(T0 + 5.9)
    assert seq[-1].frames == len(seen)


def test_a_face_absent_for_end_after_ends_and_a_return_is_a_new_event() -> None:
    box = (100, 100, 160, 170)
    frames = [frame(i, faces(box) if i < 10 or i >= 40 else faces()) for i in range(50)]
    sink = run(frames, EventsConfig(tracker=TrackerConfig(end_after=2.0)))
    events = list(by_id(sink.events).values())
    assert len(events) == 2
    first = events[0]
    assert first[-1].type == "end" and first[-1].end_time == pytest.approx(T0 + 0.9)
    assert events[1][0].type == "new" and events[1][0].start_time == pytest.approx(T0 + 4.0)


def test_updates_are_rate_limited() -> None:
    frames = [frame(i, faces((100 + i, 100, 160 + i, 170)), fps=30) for i in range(90)]  # 3 s at 30 fps
    sink = run(frames, EventsConfig(update_interval=1.0))
    types = [e.type for e in sink.events]
    assert types[0] == "new" and types.count("update") == 2


def test_two_faces_side_by_side_keep_their_own_events() -> None:
    frames = []
    for i in range(30):
        a = (100 + 2 * i, 100, 160 + 2 * i, 170)
        b = (300 - 2 * i, 110, 360 - 2 * i, 180)
        frames.append(frame(i, faces(a, b, scores=[0.8, 0.95] if i % 2 else [0.95, 0.8])))
    frames += [frame(i, faces()) for i in range(30, 60)]
    events = by_id(run(frames).events)
    assert len(events) == 2
    for seq in events.values():
        xs = [e.face.box[0] for e in seq[:-1]]
        assert xs == sorted(xs) or xs == sorted(xs, reverse=True), "each event follows one face"


def test_non_finite_or_empty_faces_never_become_events() -> None:
    bad = faces((100, 100, 160, 170), (300, 100, 360, 170), (400, 100, 400, 170))
    bad.boxes[0, 2] = np.nan
    bad.landmarks[1, 3, 0] = np.inf
    sink = ListSink()
    stage = FaceStages(EventsConfig(), sink)
    for i in range(30):
        stage.handle(frame(i, bad))
    assert sink.events == []
    assert stage.invalid_faces == 60  # two bad faces per frame; the zero-width one is just ignored


def test_best_face_prefers_confident_and_large_faces() -> None:
    frames = [
        frame(0, faces((100, 100, 140, 150), scores=[0.9])),
        frame(1, faces((100, 100, 150, 160), scores=[0.95])),  # bigger and surer: best
        frame(2, faces((100, 100, 150, 160), scores=[0.6])),
        frame(3, faces((102, 100, 152, 160), scores=[0.9])),
    ]
    sink = run([*frames, *[frame(i, faces()) for i in range(4, 40)]], EventsConfig(update_interval=0.1))
    end = sink.events[-1]
    assert end.type == "end"
    assert end.best.score == pytest.approx(0.95) and end.best.frame_time == pytest.approx(T0 + 0.1)
    # Snapshots go out when the best face changed: with `new` (frame 1) and not again.
    assert [e.snapshot is not None for e in sink.events] == [True] + [False] * (len(sink.events) - 1)


def test_a_stalled_camera_ends_its_events_and_close_ends_the_rest() -> None:
    now = [0.0]
    sink = ListSink()
    stage = FaceStages(EventsConfig(), sink, clock=lambda: now[0])
    for i in range(5):
        stage.handle(frame(i, faces((100, 100, 160, 170)), camera="stalled"))
        stage.handle(frame(i, faces((100, 100, 160, 170)), camera="live"))
    now[0] = 1.0
    stage.expire()
    assert [e.type for e in sink.events] == ["new", "new"]
    now[0] = 2.5  # no frame from either camera for 2.5 s > end_after
    stage.handle(frame(25, faces((100, 100, 160, 170)), camera="live"))
    stage.expire()
    ended = [e for e in sink.events if e.type == "end"]
    assert [e.camera for e in ended] == ["stalled"]
    assert ended[0].end_time == pytest.approx(T0 + 0.4)
    stage.close()
    assert [e.camera for e in sink.events if e.type == "end"] == ["stalled", "live"]
    assert ("stalled", 0) in sink.counts and sink.counts[-1] == ("live", 0)


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [100, 100, 101, 101]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 1.0, 0.0], [0.0, 0.0, 0.0]], rtol=1e-6)


def test_tracker_confirms_after_min_hits() -> None:
    tracker = IouTracker(TrackerConfig(min_hits=3))
    box = np.array([[10, 10, 50, 60]], np.float32)
    states = [tracker.update(box, float(t)).matched[0][0].confirmed for t in range(4)]
    assert states == [False, False, True, True]


def test_the_schema_rejects_what_consumers_must_not_get() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    frames = [frame(i, faces((100, 100, 160, 170)) if i < 10 else faces()) for i in range(40)]
    events = run(frames).events
    payloads = [json.loads(e.to_json()) for e in events]
    for payload in payloads:
        validator.validate(payload)
    new, end = payloads[0], payloads[-1]
    broken = [
        {k: v for k, v in new.items() if k != "id"},
        {**new, "unexpected": 1},
        {**new, "end_time": 1.0},  # only `end` has an end time
        {**end, "end_time": None},
        {**new, "type": "started"},
        {**new, "face": {**new["face"], "box": [1, 2, 3]}},
        {**new, "face": {**new["face"], "landmarks": {"third_eye": [1, 2]}}},
        {**new, "camera": "front door"},
    ]
    for payload in broken:
        assert not validator.is_valid(payload), payload
    assert events[0].type == "new" and events[-1].type == "end"


def test_tracking_stage_hands_each_detection_its_track_id() -> None:
    seen: list[TrackedFrame] = []

    class Collect:
        def handle(self, tracked: TrackedFrame) -> None:
            seen.append(tracked)

    stage = TrackingStage(TrackerConfig(min_hits=2, end_after=0.5), Collect())
    nan_face = faces((100, 100, 160, 170), (300, 100, 360, 170))
    nan_face.boxes[1, 0] = np.nan
    stage.handle(frame(0, nan_face))
    stage.handle(frame(1, faces((500, 100, 560, 170), (102, 100, 162, 170))))  # order changed, one new face
    for i in range(2, 12):
        stage.handle(frame(i, faces()))
    first, second = seen[0], seen[1]
    assert first.track_ids().tolist() == [1, NOT_TRACKED] and not first.confirmed
    assert second.track_ids().tolist() == [2, 1]
    assert [(f.track_id, f.hits) for f in second.confirmed] == [(1, 2)]  # the new face is still tentative
    assert first.identities == {} and stage.invalid_faces == 1
    ended = [t for tracked in seen for t in tracked.ended]
    assert [t.track_id for t in ended] == [1] and ended[0].last_seen == pytest.approx(T0 + 0.1)
    assert all(tracked.frame is not None for tracked in seen)
