"""Delivery that loses nothing: broker outages, daemon restarts and kills, with the durable outbox between."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
from mosquitto import Mosquitto, Received, Subscriber, client_config
from mqtt_child import EPOCH, ChildProcess, synthetic_event

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.contracts.frameresult import FrameResult
from nvr.daemon.stages import FaceStages
from nvr.events.config import EventsConfig
from nvr.mqtt.sink import MqttSink

Factory = Callable[..., Subscriber]


def face_keys(messages: list[Received]) -> dict[str, list[float]]:
    """Frame times of the face events received, per camera, in arrival order (duplicates kept)."""
    keys: dict[str, list[float]] = defaultdict(list)
    for message in messages:
        if message.topic.endswith("/face"):
            payload = json.loads(message.payload)
            keys[payload["camera"]].append(payload["frame_time"])
    return keys


def first_occurrences(values: list[float]) -> list[float]:
    seen: set[float] = set()
    return [v for v in values if not (v in seen or seen.add(v))]  # type: ignore[func-returns-value]


def outbox_rows(path: Path) -> int:
    return int(sqlite3.connect(path).execute("SELECT COUNT(*) FROM messages").fetchone()[0])


def test_thousand_events_survive_a_30s_outage_and_a_daemon_restart(
    broker_factory: Callable[..., Mosquitto],
    subscriber_factory: Factory,
    child_factory: Callable[..., ChildProcess],
    tmp_path: Path,
) -> None:
    """The issue's acceptance test: 1,000 events produced while the broker is down for 30 s, the daemon killed
    and restarted in between; every event arrives at least once, in order per camera; the outbox empties."""
    broker = broker_factory(persistence=True)  # the subscriber's session survives the broker restart
    subscriber = subscriber_factory(broker, ["nvr/+/face"], persistent=True)
    outbox = tmp_path / "outbox.sqlite3"
    config = client_config(broker, outbox, reconnect_max_delay=2)
    cameras = ["--camera", "cam_a", "--camera", "cam_b"]

    first = child_factory(
        config, tmp_path / "first.json", *cameras, "--count", "250", "--wait-connected", "--wait-go"
    )
    first.expect("waiting")
    broker.stop()
    outage_started = time.monotonic()
    first.go()
    first.expect("produced 500")
    first.kill()  # SIGKILL mid-outage: whatever is in the outbox must survive it
    second = child_factory(config, tmp_path / "second.json", *cameras, "--first", "250", "--count", "250")
    second.expect("produced 500")
    assert outbox_rows(outbox) == 1000

    time.sleep(max(0.0, 30.0 - (time.monotonic() - outage_started)))
    broker.start()

    def everything(msgs: list[Received]) -> bool:
        return [len(set(v)) for v in face_keys(msgs).values()] == [500, 500]  # distinct events per camera

    subscriber.wait_for(everything, timeout=60)
    assert second.terminate() == 0
    assert second.expect("stopped") == "stopped pending=0"

    received = face_keys(subscriber.messages)
    assert sorted(received) == ["cam_a", "cam_b"]
    for camera, times in received.items():
        assert first_occurrences(times) == [EPOCH + k for k in range(500)], (
            f"{camera}: out of order or missing"
        )
    assert outbox_rows(outbox) == 0


def test_events_made_during_a_broker_outage_arrive_in_order_after_it(
    broker_factory: Callable[..., Mosquitto], subscriber_factory: Factory, tmp_path: Path
) -> None:
    broker = broker_factory(persistence=True)
    subscriber = subscriber_factory(broker, ["nvr/#"], persistent=True)
    sink = MqttSink(client_config(broker, tmp_path / "o.db", reconnect_max_delay=2), cameras=["door"])
    sink.publisher.wait_connected(10)
    stage = FaceStages(EventsConfig(update_interval=0.5), sink, cameras=["door"])
    broker.stop()
    # Faces come and go in front of the camera while the broker is down (the real tracker path).
    for i in range(120):
        present = (i // 20) % 2 == 0
        x = 100.0 + (i % 20) * 3
        boxes = np.array([[x, 80, x + 60, 150]], np.float32) if present else np.zeros((0, 4), np.float32)
        landmarks = np.repeat(boxes[:, None, :2] + 30, 5, axis=1)
        detections = Detections(boxes, np.full(len(boxes), 0.9, np.float32), landmarks, SCRFD_LANDMARKS)
        stage.handle(FrameResult("door", i, EPOCH + i / 10, (640, 360), detections, None))
    stage.close()
    produced = stage.events_out
    assert produced >= 12 and sink.publisher.outbox_pending == produced
    time.sleep(2.0)
    broker.start()
    restarted = time.monotonic()
    sink.publisher.wait_connected(2 + 5)  # within the backoff cap (2 s), with room for a busy machine
    reconnect_seconds = time.monotonic() - restarted
    subscriber.wait_for(lambda msgs: len(face_keys(msgs)["door"]) >= produced)
    sink.close()
    times = first_occurrences(face_keys(subscriber.messages)["door"])
    assert len(times) == produced and times == sorted(times)
    assert sink.publisher.outbox_pending == 0
    assert reconnect_seconds < 7
    counts = [m.payload for m in subscriber.on("nvr/door/face/count")]
    assert counts[-1] == b"0", "the retained count is current after the reconnect"


def test_stop_while_the_broker_is_down_is_quick_and_keeps_the_events(
    broker_factory: Callable[..., Mosquitto], subscriber_factory: Factory, tmp_path: Path
) -> None:
    broker = broker_factory(persistence=True)
    subscriber = subscriber_factory(broker, ["nvr/+/face"], persistent=True)
    broker.stop()
    config = client_config(broker, tmp_path / "o.db")
    sink = MqttSink(config, cameras=["cam"])
    for k in range(20):
        sink.publish_event(synthetic_event("cam", k))
    started = time.monotonic()
    sink.close(timeout=5.0)
    assert time.monotonic() - started < 10.0, "shutdown must finish within systemd's stop timeout"
    assert sink.publisher.outbox_pending == 20
    broker.start()
    later = MqttSink(config, cameras=["cam"])  # the next start delivers them
    subscriber.wait_for(lambda msgs: len(face_keys(msgs)["cam"]) >= 20)
    later.close()
    assert first_occurrences(face_keys(subscriber.messages)["cam"]) == [EPOCH + k for k in range(20)]
