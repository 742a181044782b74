"""One threshold story: a camera's threshold below the detector's works end to end, and the tracker's
`min_score` follows the detector/camera threshold unless it is set on purpose."""

from __future__ import annotations

import uuid
from pathlib import Path

import av
import numpy as np
from conftest import asset_path
from nvr_daemon import NvrDaemon
from test_tracker import ListSink, faces, frame

from nvr.contracts.imaging import load_rgb
from nvr.daemon.stages import FaceStages
from nvr.errors import ExitCode
from nvr.events.config import EventsConfig
from nvr.events.sink import read_event_lines
from nvr.tracking.config import TrackerConfig

# A crowd photo whose small faces SCRFD-2.5G scores between 0.3 and 0.5 (and others above).
CROWD = "images/retinaface_test.jpg"


def still_video(image_path: Path, path: Path, seconds: float = 4.0, fps: int = 10) -> None:
    """An H.264 file showing one image (cropped to even dimensions) for `seconds`."""
    image = load_rgb(image_path)
    image = np.ascontiguousarray(image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2])
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = image.shape[1], image.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for _ in range(int(seconds * fps)):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def test_a_camera_threshold_of_0_3_yields_faces_scored_0_3_to_0_5(tmp_path: Path) -> None:
    video = tmp_path / "crowd.mp4"
    still_video(asset_path(CROWD), video)
    config = {
        "instance": f"t{uuid.uuid4().hex[:8]}",
        "state_dir": str(tmp_path / "state"),
        "cameras": [{"name": "crowd", "url": f"file://{video}", "detect_fps": 5, "threshold": 0.3}],
        "detector": {"backend": "onnx", "model": str(asset_path("models/scrfd/det_2.5g.onnx"))},
        "events": {"tracker": {"end_after": 1.0}},  # min_score unset: it follows the camera's 0.3
        "metrics": {"port": 0},
    }
    assert "threshold" not in config["detector"]  # the global threshold stays at its default, 0.5
    daemon = NvrDaemon(tmp_path, config)
    try:
        below = "a face scored below 0.5"
        daemon.wait_for_log(lambda line: line.get("event") == "face new" and line["score"] < 0.5, 90, below)
        code, _ = daemon.stop()
        assert code == ExitCode.OK
    finally:
        daemon.close()
    events = read_event_lines(tmp_path / "state" / "events.jsonl")
    scores = [e["face"]["score"] for e in events]
    assert min(scores) >= 0.3, "the camera's threshold is the lower bound"
    assert any(0.3 <= s < 0.5 for s in scores) and any(s >= 0.5 for s in scores)


def test_the_tracker_follows_the_threshold_unless_min_score_is_set() -> None:
    def scores_of_events(config: EventsConfig) -> set[float]:
        sink = ListSink()
        stages = FaceStages(config, sink)
        for i in range(5):  # what the detection stage passed at a camera threshold of 0.3
            stages.handle(frame(i, faces((100, 100, 160, 170), (300, 100, 360, 170), scores=[0.35, 0.9])))
        return {round(e.face.score, 2) for e in sink.events}

    assert scores_of_events(EventsConfig()) == {0.35, 0.9}
    assert scores_of_events(EventsConfig(tracker=TrackerConfig(min_score=0.5))) == {0.9}
