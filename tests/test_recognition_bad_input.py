"""Recognition's bad input: a corrupt or future-version library and an embedder that cannot be opened leave
the daemon detecting without recognition (saying so in the log and /healthz); reserved topic words as camera
names are configuration errors."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import asset_path
from nvr_daemon import NvrDaemon
from recognition_helpers import EMBEDDER, RecordingSink, enrol

from nvr.config import ConfigFileError, load_config
from nvr.config.root import NvrConfig
from nvr.daemon.recognition import open_recognition
from nvr.events.sink import read_event_lines
from nvr.recognition.library import SCHEMA_VERSION


def recognition_config(state: Path, **recognition: object) -> NvrConfig:
    return NvrConfig.model_validate({
        "state_dir": str(state),
        "recognition": {"enabled": True, "embedder": str(asset_path(EMBEDDER)), **recognition},
    })  # fmt: skip


def test_a_future_library_and_a_bad_embedder_turn_recognition_off(tmp_path: Path) -> None:
    state = tmp_path / "state"
    enrol(state / "faces.db", "Rose Leslie", "faces/rose_leslie/1.jpg")
    with sqlite3.connect(state / "faces.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    setup = open_recognition(recognition_config(state), tmp_path, state, RecordingSink())
    assert setup.factory is None and setup.status.startswith("off: ")
    assert "faces.db" in setup.status and "newer nvr" in setup.status
    not_a_model = tmp_path / "embedder.onnx"
    not_a_model.write_bytes(b"not an onnx model")
    bad = recognition_config(state, embedder=str(not_a_model), library=str(tmp_path / "other.db"))
    setup = open_recognition(bad, tmp_path, state, RecordingSink())
    assert setup.factory is None and "embedder.onnx" in setup.status
    setup = open_recognition(recognition_config(state, library=str(tmp_path / "new.db")), tmp_path, state,
                             RecordingSink())  # fmt: skip
    assert setup.factory is not None and setup.status.startswith("on (fr_feature_512-")
    setup.close()


@pytest.mark.parametrize("name", ["person", "Person", "stats", "available"])
def test_reserved_topic_words_are_not_camera_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / "nvr.yml"
    path.write_text(f"cameras:\n  - name: {name}\n    url: rtsp://cam.lan/stream\n")
    with pytest.raises(ConfigFileError, match="reserved for nvr's own MQTT topics"):
        load_config(path)


def test_a_corrupt_library_keeps_the_daemon_detecting(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "faces.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # a damaged file
    config = {
        "instance": f"bad{uuid.uuid4().hex[:8]}",
        "state_dir": str(state),
        "cameras": [
            {"name": "hall", "url": f"file://{asset_path('video/hamilton_clip.mp4')}", "detect_fps": 3}
        ],
        "detector": {"backend": "onnx", "model": str(asset_path("models/scrfd/det_2.5g.onnx"))},
        "events": {"tracker": {"end_after": 1.0}},
        "recognition": {"enabled": True, "embedder": str(asset_path(EMBEDDER))},
        "metrics": {"port": 0},
    }
    daemon = NvrDaemon(tmp_path / "daemon", config)
    try:
        error = daemon.wait_for_log(
            lambda line: "recognition off" in str(line.get("event")), 60, "recognition off"
        )
        assert error["level"] == "error" and "faces.db" in error["error"]
        daemon.wait_for_log(lambda line: str(line.get("event", "")).startswith("face new"), 90, "face new")
        url = daemon.wait_for_event("metrics endpoint listening")["url"].replace("/metrics", "/healthz")
        with urllib.request.urlopen(url, timeout=5) as response:
            health = json.loads(response.read())
        assert health["status"] == "ok" and health["recognition"].startswith("off: ")
        events = read_event_lines(state / "events.jsonl")
        assert events and all(e["identity"] is None for e in events if "identity" in e)
        code, _ = daemon.stop()
        assert code == 0
    finally:
        daemon.close()


def test_recognition_without_frame_images_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "nvr.yml"
    path.write_text("capture:\n  snapshot_width: 0\n  snapshot_height: 0\nrecognition:\n  enabled: true\n")
    with pytest.raises(ConfigFileError, match="recognition needs the frame images"):
        load_config(path)
