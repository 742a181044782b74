"""The daemon's detection pipeline on the asynchronous Hailo engine (against the HailoRT double).

In process: frames written into real shared-memory rings the way a decoder writes them, through the real
engine and SCRFD postprocessor, to a sink that records what the event stage would see. A slot rewritten
while its frame is in flight is dropped and counted (its faces never reach the event stage with another
frame's snapshot); a camera posting frames far faster than the device runs cannot starve a quiet one.
As a subprocess: `nvr run` keeps several frames in flight and serves a quiet camera beside a busy one.
With backend `auto`, a HEF that cannot run here falls back to the catalogue's CPU model.
"""

from __future__ import annotations

import queue
import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import asset_path
from hailo_support import SCRFD_HEF, configure_double, double_subprocess_env
from nvr_daemon import NvrDaemon

from nvr.backends.hailo import HailoEngine, HailoSettings
from nvr.backends.sync_engine import SyncEngine
from nvr.config import DetectorConfig
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.frameslots import FrameReady, FrameRing, RingLayout
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.daemon.model import open_configured_detector, open_configured_model
from nvr.detection.pipeline import DetectionPipeline
from nvr.detection.zones import FaceFilter
from nvr.errors import DeviceError
from nvr.postprocess.scrfd import ScrfdPostprocessor

FACES = "images/insightface_t1.jpg"


@dataclass
class Seen:
    camera: str
    frame_index: int
    faces: int
    snapshot: np.ndarray  # a copy: the slot is reused after `handle`


class RecordingSink:
    """The pipeline's output boundary: what the event stage is handed, frame by frame."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def handle(self, result: FrameResult) -> None:
        assert result.snapshot is not None
        self.seen.append(
            Seen(result.camera, result.frame_index, len(result.detections), result.snapshot.copy())
        )

    def expire(self) -> None:
        pass

    def frames(self, camera: str) -> list[int]:
        return [s.frame_index for s in list(self.seen) if s.camera == camera]


class Producer:
    """Writes frames into a ring exactly as a decoder process does, and posts their `FrameReady`."""

    def __init__(self, ring: FrameRing, camera: str, ready: queue.Queue[FrameReady]) -> None:
        self.ring, self.camera, self.ready = ring, camera, ready
        self.next_index = 0
        self.written: list[int] = []

    def write(self, image: np.ndarray, post: bool = True) -> int | None:
        """The frame's index, or None when every slot is held (the decoder skips the frame)."""
        slot = self.ring.begin_write()
        if slot is None:
            return None
        model_lb = letterbox_into(image, self.ring.model_input(slot))
        snapshot_lb = letterbox_into(image, self.ring.snapshot(slot))
        index = self.next_index
        self.next_index += 1
        self.ring.commit(
            slot, index, pts=index / 10, wall_time=time.time(), model_letterbox=model_lb,
            snapshot_letterbox=snapshot_lb,
        )  # fmt: skip
        if post:
            self.ready.put(FrameReady(self.camera, slot, index))
            self.written.append(index)
        return index


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def rings() -> Iterator[Callable[[str, int], FrameRing]]:
    instance = f"t{uuid.uuid4().hex[:8]}"
    made: list[FrameRing] = []

    def make(camera: str, slots: int) -> FrameRing:
        ring = FrameRing.create(instance, camera, RingLayout(slots, 640, 640, 320, 180))
        made.append(ring)
        return ring

    yield make
    for ring in made:
        ring.close()


def hailo_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **double: str
) -> tuple[DetectionPipeline, HailoEngine, RecordingSink, queue.Queue[FrameReady]]:
    configure_double(monkeypatch, tmp_path / "locks", **double)
    engine = HailoEngine(asset_path(SCRFD_HEF), HailoSettings()).start()
    sink = RecordingSink()
    ready: queue.Queue[FrameReady] = queue.Queue()
    pipeline = DetectionPipeline(
        engine, ScrfdPostprocessor(640, 640, 0.5), sink, ready,
        max_in_flight=engine.settings.input_queue, per_camera=2,
    )  # fmt: skip
    return pipeline, engine, sink, ready


def test_a_slot_rewritten_while_in_flight_is_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rings: Callable[[str, int], FrameRing]
) -> None:
    # Real outputs per frame (no replay): a black frame has no faces, the face image has some.
    pipeline, engine, sink, ready = hailo_pipeline(monkeypatch, tmp_path, latency_ms="600")
    faces = load_rgb(asset_path(FACES))
    black = np.zeros_like(faces)
    ring = rings("door", 2)
    producer = Producer(ring, "door", ready)
    pipeline.attach("door", ring, FaceFilter(0.5))
    pipeline.start()
    try:
        assert producer.write(faces) == 0  # slot 0, posted: goes to the device
        assert producer.write(black, post=False) == 1  # slot 1, never posted
        wait_until(lambda: engine.stats.submitted == 1, 10, "frame 0 to reach the engine")
        time.sleep(0.1)  # the engine copies it into its device buffer at once; the device takes 600 ms
        # Slot 0 is held while frame 0 is in flight, so a well-behaved decoder has to skip...
        assert producer.write(black) is None
        # ...and only a broken one (here: the ring released behind the pipeline's back) rewrites it.
        ring.release(0)
        assert producer.write(black, post=False) == 2
        wait_until(lambda: pipeline.counters.cameras["door"].torn == 1, 20, "the torn frame to be counted")
        assert sink.seen == [], "a torn frame's faces reached the event stage"

        # Detection carries on with the next frames, each with its own snapshot.
        ready.put(FrameReady("door", 0, 2))
        wait_until(lambda: sink.frames("door") == [2], 20, "frame 2")
        assert producer.write(faces) == 3
        wait_until(lambda: sink.frames("door") == [2, 3], 20, "frame 3")
        expected = np.zeros((180, 320, 3), np.uint8)
        lb = letterbox_into(faces, expected)
        black_frame, face_frame = sink.seen
        assert black_frame.faces == 0 and not black_frame.snapshot.any()
        assert face_frame.faces > 0
        assert np.array_equal(face_frame.snapshot, expected[: lb.resized_height, : lb.resized_width])
    finally:
        pipeline.detach("door")
        assert pipeline.stop()
        engine.close()
    counters = pipeline.counters
    assert counters.errors == 0 and counters.frames == 2


def test_a_busy_camera_does_not_starve_a_quiet_one_on_a_slow_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rings: Callable[[str, int], FrameRing]
) -> None:
    # 50 ms per frame on the device (20 frames/s) against ~100 frames/s offered by the busy camera.
    pipeline, engine, sink, ready = hailo_pipeline(monkeypatch, tmp_path, latency_ms="50", replay="1")
    image = load_rgb(asset_path(FACES))
    busy = Producer(rings("busy", 4), "busy", ready)
    quiet = Producer(rings("quiet", 4), "quiet", ready)
    pipeline.attach("busy", busy.ring, FaceFilter(0.5))
    pipeline.attach("quiet", quiet.ring, FaceFilter(0.5))
    pipeline.start()
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            busy.write(image)
            time.sleep(0.01)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        for _ in range(12):  # 5 frames/s
            time.sleep(0.2)
            quiet.write(image)
        wait_until(lambda: sink.frames("quiet") == quiet.written, 10, "every quiet frame to be processed")
        quiet_counts, busy_counts = pipeline.counters.cameras["quiet"], pipeline.counters.cameras["busy"]
    finally:
        stop.set()
        flooder.join()
        for camera in ("busy", "quiet"):
            pipeline.detach(camera)
        assert pipeline.stop()
        engine.close()
    counters = pipeline.counters
    assert quiet.written == list(range(12)), "the quiet camera's decoder had to skip frames"
    assert quiet_counts.superseded == quiet_counts.dropped == 0
    # The device was the bottleneck: the busy camera's waiting frames were superseded by newer ones.
    assert busy_counts.superseded > 0 and len(sink.frames("busy")) < len(busy.written)
    assert 2 <= counters.in_flight_max <= 2 * 2  # several in flight, at most two per camera
    assert engine.stats.dropped == 0  # the pipeline never overfills the engine's queue
    assert counters.errors == 0


def metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        match = re.match(r"^nvr_(\S+) (\S+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def test_nvr_run_on_the_hailo_engine_keeps_frames_in_flight_and_serves_every_camera(
    tmp_path: Path,
) -> None:
    clip = f"file://{asset_path('video/hamilton_clip.mp4')}"
    config = {
        "instance": f"t{uuid.uuid4().hex[:8]}",
        "state_dir": str(tmp_path / "state"),
        "cameras": [
            {"name": "busy", "url": clip, "detect_fps": 15},
            {"name": "quiet", "url": clip, "detect_fps": 2},
        ],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "hailo", "model": str(asset_path(SCRFD_HEF))},
        "metrics": {"port": 0},
    }
    # Replay mode at 150 ms a frame: the device (~6.7 frames/s) is the bottleneck, not the ONNX model.
    env = double_subprocess_env(tmp_path / "locks", replay="1", latency_ms="150")
    daemon = NvrDaemon(tmp_path, config, env=env)
    try:
        assert daemon.wait_for_event("detector ready", 60)["backend"] == "hailo"
        url = daemon.wait_for_event("metrics endpoint listening")["url"]
        processed = 'camera_processed_frames_total{camera="quiet"}'
        deadline = time.monotonic() + 90
        while (values := metrics(url)).get(processed, 0) < 10 and time.monotonic() < deadline:
            time.sleep(1)
        assert values[processed] >= 10, values
        # Several frames in flight through the one engine, the busy camera's beyond what the device
        # could take, and none of the quiet camera's lost.
        assert values["inference_in_flight_max"] >= 2
        assert values['camera_superseded_frames_total{camera="busy"}'] > 0
        assert values['camera_superseded_frames_total{camera="quiet"}'] == 0
        for reason in ("stale", "torn", "dropped", "failed"):
            assert values[f'camera_lost_frames_total{{camera="quiet",reason="{reason}"}}'] == 0
        code, seconds = daemon.stop()
        assert code == 0 and seconds < 10
    finally:
        daemon.close()


def test_auto_falls_back_to_the_families_cpu_model_when_the_hailo_cannot_be_opened(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    configure_double(monkeypatch, tmp_path / "locks", devices="0")  # HailoRT installed, no device
    hef = str(asset_path(SCRFD_HEF))
    with pytest.raises(DeviceError, match=r"no CPU model of scrfd_2\.5g .*nvr models pull scrfd_2\.5g-onnx"):
        open_configured_model(DetectorConfig(model=hef), tmp_path, 0.5)
    model_store("scrfd_2.5g-onnx")
    model = open_configured_model(DetectorConfig(model=hef), tmp_path, 0.5)
    try:
        assert model.backend == "onnx" and isinstance(model.engine, SyncEngine)
        assert (model.input_width, model.input_height, model.max_in_flight) == (640, 640, 1)
    finally:
        model.close()
    with open_configured_detector(DetectorConfig(model=hef), tmp_path, 0.5) as detector:
        assert detector.backend.name == "onnx"  # the synchronous face, for one-off use, falls back alike
    with pytest.raises(DeviceError, match="no Hailo device found"):
        open_configured_model(DetectorConfig(model=hef, backend="hailo"), tmp_path, 0.5)
