"""A daemon killed with SIGKILL while faces are in view: the next start ends those events (reason
"daemon restarted", end_time = the last sighting it had sent), through the outbox like any event."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from conftest import asset_path
from mosquitto import Mosquitto, Subscriber
from nvr_daemon import NvrDaemon


def config(tmp_path: Path, broker: Mosquitto, enabled: bool) -> dict[str, Any]:
    return {
        "instance": f"t{uuid.uuid4().hex[:8]}",
        "state_dir": str(tmp_path / "state"),
        "cameras": [{
            "name": "door", "url": f"file://{asset_path('video/hamilton_clip.mp4')}", "detect_fps": 5,
            "enabled": enabled,
        }],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "onnx", "model": str(asset_path("models/scrfd/det_500m.onnx"))},
        "mqtt": {"host": broker.host, "port": broker.port, "node_id": "restart", "stats_interval": 0},
        "events": {"update_interval": 0.5, "tracker": {"end_after": 30.0}},  # no face leaves on its own
        "metrics": {"port": 0},
    }  # fmt: skip


def events(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in subscriber.on("nvr/door/face")]


def test_sigkill_then_restart_ends_the_open_events(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    subscriber = Subscriber(broker, ["nvr/door/face"])
    first = NvrDaemon(tmp_path / "first", config(tmp_path, broker, enabled=True))
    try:
        subscriber.wait_for(lambda _m: any(e["type"] == "update" for e in events(subscriber)), 120)
        first.kill()  # SIGKILL: no `end` is sent
        seen = events(subscriber)
        assert not [e for e in seen if e["type"] == "end"]
        last_sent = {e["id"]: e["frame_time"] for e in seen}  # latest message of each open event
        second = NvrDaemon(tmp_path / "second", config(tmp_path, broker, enabled=False))
        try:
            subscriber.wait_for(
                lambda _m: {e["id"] for e in events(subscriber) if e["type"] == "end"} >= set(last_sent), 60
            )
            second.wait_for_event("nvr running", 60)
            code, _ = second.stop()
            assert code == 0
        finally:
            second.close()
    finally:
        first.close()
        subscriber.close()
        broker.kill()
    ends = [e for e in events(subscriber) if e["type"] == "end"]
    assert {e["id"] for e in ends} == set(last_sent)
    for end in ends:
        assert end["reason"] == "daemon restarted"
        # The last sighting on disk is the latest message committed, which may be one newer than the
        # latest the subscriber had got when the kill came.
        assert end["end_time"] >= last_sent[end["id"]]
        assert end["duration"] == round(end["end_time"] - end["start_time"], 3)
