"""Recognition on the Hailo test double: SCRFD and the ArcFace embedder HEF on ONE (simulated) VDevice.

No real chip runs both our SCRFD HEF (a Hailo-10H build) and the ArcFace HEF (a Hailo-8 build), so the
detector is the SYNTHETIC Hailo-8 copy of the real SCRFD HEF (tests/hef_synth.py: only the chip field and the
SDK label differ), and the double serves the ArcFace HEF with real embeddings of the 512-d test model
quantized with the HEF's own output scale/zero-point. Lin-Manuel Miranda is enrolled with the CPU model;
the daemon re-embeds his sample with the HEF's model in the background and names him. What a user sees goes
through mosquitto: his face events carry his name (nobody else's does), his person topic turns `present`, and
`absent` once the clip has ended and the presence timeout passed.
"""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from pathlib import Path

from conftest import asset_path
from hailo_support import double_subprocess_env
from hef_synth import synthetic_hailo8_scrfd
from mosquitto import Mosquitto, Received, Subscriber
from nvr_daemon import NvrDaemon
from recognition_helpers import EMBEDDER, enrol

from nvr.recognition.library import FaceLibrary

LIN = "Lin-Manuel Miranda"
LIN_TOPIC = "nvr/person/lin_manuel_miranda"


def _states(messages: list[Received]) -> list[str]:
    return [json.loads(m.payload)["state"] for m in messages if m.topic == LIN_TOPIC and m.payload]


def test_both_networks_on_one_hailo_name_the_enrolled_person(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    subscriber = Subscriber(broker, ["nvr/#"], client_id="recognition-hailo")
    state = tmp_path / "state"
    enrol(state / "faces.db", LIN, "faces/lin_manuel_miranda/1.png")
    detector = tmp_path / "scrfd_2.5g.synthetic-hailo8.hef"
    synthetic_hailo8_scrfd(asset_path("hef/scrfd_2.5g.hailo10h.hef"), detector)
    embedder = asset_path("hef/arcface_mobilefacenet.hailo8.hef")
    config = {
        "instance": f"hr{uuid.uuid4().hex[:8]}",
        "state_dir": str(state),
        "cameras": [
            {"name": "door", "url": f"file://{asset_path('video/hamilton_clip.mp4')}", "detect_fps": 5,
             "enabled": True}
        ],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "hailo", "model": str(detector)},
        "events": {"update_interval": 1, "tracker": {"end_after": 1.0}},
        "recognition": {"enabled": True, "embedder": str(embedder), "presence_timeout_s": 3.0},
        "mqtt": {"host": broker.host, "port": broker.port, "node_id": f"h{uuid.uuid4().hex[:6]}",
                 "topic_prefix": "nvr", "stats_interval": 0},
        "metrics": {"port": 0},
    }  # fmt: skip
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
        subscriber.wait_for(
            lambda messages: any(m.topic == "nvr/door/face" and json.loads(m.payload)["type"] == "end"
                                 for m in messages), 30)  # fmt: skip
        url = daemon.wait_for_event("metrics endpoint listening")["url"]
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        metrics = dict(line.rsplit(" ", 1) for line in lines if line.startswith("nvr_recognition_"))
        assert float(metrics["nvr_recognition_decisions_total"]) >= 1
        assert float(metrics["nvr_recognition_embeddings_total"]) >= 1
        subscriber.wait_for(lambda messages: "present" in _states(messages), 30)
        # The camera is switched off (a reload): he is absent once the presence timeout has passed.
        config["cameras"][0]["enabled"] = False  # type: ignore[index]
        daemon.write_config(config)
        daemon.signal(signal.SIGHUP)
        subscriber.wait_for(lambda messages: _states(messages)[-1:] == ["absent"], 30)
        code, _ = daemon.stop()
        assert code == 0
    finally:
        daemon.close()
        subscriber.close()
        broker.kill()
    events = [json.loads(m.payload) for m in subscriber.messages if m.topic == "nvr/door/face"]
    named = {e["identity"]["name"] for e in events if e.get("identity") and e["identity"]["name"]}
    assert named == {LIN}, f"only Lin-Manuel Miranda is named: {named}"
    with FaceLibrary(state / "faces.db") as library:
        models = {m.id for m in library.models()}
    assert any(m.startswith("arcface_mobilefacenet.hailo8-") for m in models), "re-embedded with the HEF"
    assert any(m.startswith("fr_feature_512-") for m in models), "the CPU embedding is kept"
