"""The web UI inside `nvr run`: a file camera's face events reach the Recent list with their snapshots,
and the Status page knows what /healthz and /metrics know."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from mosquitto import Mosquitto
from nvr_daemon import NvrDaemon
from test_daemon import base_config, video_camera
from web_support import Client


def test_daemon_serves_recent_events_and_status(tmp_path: Path, broker: Mosquitto) -> None:
    config = base_config(tmp_path, f"w{uuid.uuid4().hex[:8]}", [video_camera("hall", fps=4)])
    config["web"] = {"port": 0}
    config["mqtt"] = {"host": broker.host, "port": broker.port, "stats_interval": 0}
    daemon = NvrDaemon(tmp_path, config)
    try:
        url = daemon.wait_for_event("web UI listening")["url"]
        daemon.wait_for_event("nvr running")
        client = Client(url)
        client.open_session()
        deadline = time.monotonic() + 60
        events: list[dict] = []  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            events = client.get("/api/events").json()["events"]
            if any(e["snapshot"] for e in events):
                break
            time.sleep(0.5)
        assert events and all(e["camera"] == "hall" for e in events)
        with_snapshot = next(e for e in events if e["snapshot"])
        thumbnail = client.get(with_snapshot["snapshot"])
        assert thumbnail.status == 200 and thumbnail.body[:2] == b"\xff\xd8"
        status = client.get("/api/status").json()
        assert status["cameras"]["hall"]["state"] == "streaming"
        assert status["detector"]["backend"] == "onnx" and status["health"]["status"] == "ok"
        assert status["health"]["cameras_streaming"] == ["hall"]
        assert status["faces_in_view"].keys() == {"hall"}
        assert status["mqtt"]["connected"] is True and "pending" in status["mqtt"]["outbox"]
        assert status["mqtt"]["delivered"] > 0
        # /metrics and /healthz keep their own listener and behaviour.
        metrics_url = daemon.wait_for_event("metrics endpoint listening")["url"]
        with urllib.request.urlopen(metrics_url.replace("/metrics", "/healthz"), timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok"
        assert urllib.parse.urlsplit(metrics_url).port != urllib.parse.urlsplit(url).port
        # The face library the web UI shares with `nvr faces`: in the state directory by default.
        assert client.send("POST", "/api/people", {"name": "Lin-Manuel Miranda"}).status == 201
        assert (tmp_path / "state" / "faces.db").is_file()
    finally:
        assert daemon.stop()[0] == 0
