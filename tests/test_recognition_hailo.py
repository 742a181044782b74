"""Recognition on the Hailo test double: SCRFD and the ArcFace embedder HEF on ONE (simulated) VDevice.

No real chip runs both our SCRFD HEF (a Hailo-10H build) and the ArcFace HEF (a Hailo-8 build), so the
detector is the SYNTHETIC Hailo-8 copy of the real SCRFD HEF (tests/hef_synth.py: only the chip field and the
SDK label differ), and the double serves the ArcFace HEF with real embeddings of the 512-d test model
quantized with the HEF's own output scale/zero-point. Lin-Manuel Miranda is enrolled with the CPU model;
the daemon re-embeds his sample with the HEF's model in the background and names him.
"""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path

from conftest import asset_path
from hailo_support import double_subprocess_env
from hef_synth import synthetic_hailo8_scrfd
from nvr_daemon import NvrDaemon
from recognition_helpers import EMBEDDER, enrol

from nvr.events.sink import read_event_lines
from nvr.recognition.library import FaceLibrary

LIN = "Lin-Manuel Miranda"


def test_both_networks_on_one_hailo_name_the_enrolled_person(tmp_path: Path) -> None:
    state = tmp_path / "state"
    enrol(state / "faces.db", LIN, "faces/lin_manuel_miranda/1.png")
    detector = tmp_path / "scrfd_2.5g.synthetic-hailo8.hef"
    synthetic_hailo8_scrfd(asset_path("hef/scrfd_2.5g.hailo10h.hef"), detector)
    embedder = asset_path("hef/arcface_mobilefacenet.hailo8.hef")
    config = {
        "instance": f"hr{uuid.uuid4().hex[:8]}",
        "state_dir": str(state),
        "cameras": [
            {"name": "door", "url": f"file://{asset_path('video/hamilton_clip.mp4')}", "detect_fps": 5}
        ],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "hailo", "model": str(detector)},
        "events": {"update_interval": 1, "tracker": {"end_after": 1.0}},
        "recognition": {"enabled": True, "embedder": str(embedder)},
        "metrics": {"port": 0},
    }
    env = double_subprocess_env(tmp_path / "locks", arch="hailo8", embedder_onnx=str(asset_path(EMBEDDER)))
    daemon = NvrDaemon(tmp_path / "daemon", config, env=env)
    try:
        beside = daemon.wait_for_event("Hailo embedder configured beside the detector", 60)
        assert beside["model"] == embedder.name
        on = daemon.wait_for_event("recognition on", 30)
        assert on["backend"] == "hailo" and on["embedder"].startswith("arcface_mobilefacenet.hailo8-")
        daemon.wait_for_event("library samples embedded with the daemon's model", 30)
        daemon.wait_for_log(
            lambda line: line.get("event") == "face identified" and line.get("name") == LIN, 90, "Lin named"
        )
        daemon.wait_for_log(
            lambda line: str(line.get("event", "")).startswith("face end"), 30, "an event ends"
        )
        url = daemon.wait_for_event("metrics endpoint listening")["url"]
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        metrics = dict(line.rsplit(" ", 1) for line in lines if line.startswith("nvr_recognition_"))
        assert float(metrics["nvr_recognition_decisions_total"]) >= 1
        assert float(metrics["nvr_recognition_embeddings_total"]) >= 1
        code, _ = daemon.stop()
        assert code == 0
    finally:
        daemon.close()
    events = [e for e in read_event_lines(state / "events.jsonl") if "identity" in e]
    named = {e["identity"]["name"] for e in events if e["identity"] and e["identity"]["name"]}
    assert named == {LIN}, f"only Lin-Manuel Miranda is named: {named}"
    with FaceLibrary(state / "faces.db") as library:
        models = {m.id for m in library.models()}
    assert any(m.startswith("arcface_mobilefacenet.hailo8-") for m in models), "re-embedded with the HEF"
    assert any(m.startswith("fr_feature_512-") for m in models), "the CPU embedding is kept"
