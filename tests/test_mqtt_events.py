"""Face events through a real Mosquitto: the topics, payloads, snapshots, counts, discovery and availability
that Home Assistant, Node-RED and scripts see, and what must never reach the wire."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import jsonschema
import numpy as np
from mosquitto import Mosquitto, Subscriber, client_config
from mqtt_child import ChildProcess, synthetic_event
from PIL import Image
from structlog.testing import capture_logs
from video_faces import empty_frame, video_frames

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.contracts.frameresult import FrameResult
from nvr.daemon.stages import FaceStages
from nvr.events.config import EventsConfig, SnapshotConfig
from nvr.events.payload import SCHEMA_PATH, FaceEvent
from nvr.mqtt.client import MqttPublisher
from nvr.mqtt.sink import MqttSink
from nvr.tracking.config import TrackerConfig

SCHEMA = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
Factory = Callable[..., Subscriber]


class RecordingSink:
    """Passes events on to the MQTT sink and remembers their order, to compare with what arrives."""

    def __init__(self, inner: MqttSink) -> None:
        self.inner = inner
        self.sent: list[FaceEvent] = []

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        self.sent.extend(events)
        self.inner.publish_events(events)

    def publish_face_count(self, camera: str, count: int) -> None:
        self.inner.publish_face_count(camera, count)

    def close(self, timeout: float = 5.0) -> None:
        self.inner.close(timeout)


def retained(broker: Mosquitto, factory: Factory, topic: str) -> bytes:
    """What a client subscribing now gets as the retained message of `topic`. A message published live just
    after subscribing (the publisher may still be sending it) is retained by now: subscribe once more."""
    for _ in range(2):
        subscriber = factory(broker, [topic])
        (message,) = subscriber.wait_for(lambda msgs: len(msgs) >= 1, timeout=5)
        if message.retain:
            return message.payload
    raise AssertionError(f"{topic} is published, but not retained")


def test_video_face_events_reach_subscribers(
    broker: Mosquitto, subscriber_factory: Factory, tmp_path: Path
) -> None:
    subscriber = subscriber_factory(broker, ["nvr/#", "homeassistant/#"])
    config = client_config(broker, tmp_path / "outbox.sqlite3")
    sink = RecordingSink(MqttSink(config, cameras=["hamilton"]))
    stage = FaceStages(
        EventsConfig(
            update_interval=0.3, tracker=TrackerConfig(end_after=0.4), snapshot=SnapshotConfig(aligned=True)
        ),
        sink,
        cameras=["hamilton"],
    )
    clip = video_frames()
    for frame in clip:
        stage.handle(frame.result())
    stage.handle(empty_frame(clip[-1], 1.0))
    sent = sink.sent
    assert any(e.type == "update" for e in sent) and sent[-1].type == "end"
    subscriber.wait_for(lambda msgs: sum(m.topic == "nvr/hamilton/face" for m in msgs) == len(sent))
    sink.close()

    # Every event arrives once, in the order the stage produced it, schema-valid, tagged with its id.
    arrived = subscriber.on("nvr/hamilton/face")
    payloads = [json.loads(m.payload) for m in arrived]
    assert [(p["id"], p["type"]) for p in payloads] == [(e.id, e.type) for e in sent]
    for message, payload in zip(arrived, payloads, strict=True):
        SCHEMA.validate(payload)
        assert message.qos == 1 and not message.retain
        assert (
            message.user_properties == {"event_id": payload["id"]}
            and message.content_type == "application/json"
        )
    by_id: dict[str, list[str]] = {}
    for p in payloads:
        by_id.setdefault(p["id"], []).append(p["type"])
    assert all(types[0] == "new" and types[-1] == "end" for types in by_id.values())
    assert any(types.count("update") >= 1 for types in by_id.values())

    # A snapshot (and the aligned crop) precede the event message that announces them.
    announced: set[str | None] = set()
    for message in subscriber.messages:
        event_id = message.user_properties.get("event_id")
        if message.topic == "nvr/hamilton/face/snapshot":
            announced.add(event_id)
        elif message.topic == "nvr/hamilton/face":
            assert json.loads(message.payload)["snapshot"] == (event_id in announced)
            announced.discard(event_id)
    snapshots = subscriber.on("nvr/hamilton/face/snapshot")
    assert len(snapshots) == sum(p["snapshot"] for p in payloads) > 0
    first = Image.open(io.BytesIO(snapshots[0].payload))
    assert first.format == "JPEG" and max(first.size) <= 320
    aligned = subscriber.on("nvr/hamilton/face/aligned")
    assert aligned and Image.open(io.BytesIO(aligned[0].payload)).size == (112, 112)

    # Counts went up and back to zero; the latest stays retained, as do snapshot and availability.
    counts = [int(m.payload) for m in subscriber.on("nvr/hamilton/face/count")]
    assert counts[0] == 0 and max(counts) >= 2 and counts[-1] == 0
    assert retained(broker, subscriber_factory, "nvr/hamilton/face/count") == b"0"
    assert retained(broker, subscriber_factory, "nvr/hamilton/face/snapshot") == snapshots[-1].payload
    assert retained(broker, subscriber_factory, "nvr/available") == b"offline"  # clean stop
    assert subscriber.on("nvr/available")[0].payload == b"online"


def test_home_assistant_discovery(broker: Mosquitto, subscriber_factory: Factory, tmp_path: Path) -> None:
    sink = MqttSink(client_config(broker, tmp_path / "o.db"), cameras=["front_door"])
    sink.publisher.wait_connected(10)
    sink.publish_face_count("garden", 0)  # a camera first seen later gets its entities too
    sensor_topic = "homeassistant/sensor/testnode/front_door_face_count/config"
    present_topic = "homeassistant/binary_sensor/testnode/front_door_face_present/config"
    sensor = json.loads(retained(broker, subscriber_factory, sensor_topic))
    present = json.loads(retained(broker, subscriber_factory, present_topic))
    assert sensor["state_topic"] == present["state_topic"] == "nvr/front_door/face/count"
    for entity in (sensor, present):
        assert entity["availability_topic"] == "nvr/available"
        assert (entity["payload_available"], entity["payload_not_available"]) == ("online", "offline")
        assert entity["device"]["identifiers"] == ["nvr_testnode"]
    assert (
        sensor["unique_id"] == "nvr_testnode_front_door_face_count" and sensor["state_class"] == "measurement"
    )
    assert present["device_class"] == "occupancy" and "value_template" in present
    garden = json.loads(
        retained(broker, subscriber_factory, "homeassistant/sensor/testnode/garden_face_count/config")
    )
    assert garden["state_topic"] == "nvr/garden/face/count"

    # A broker that lost everything (restart without persistence) gets configs and states again.
    broker.restart()
    watcher = subscriber_factory(broker, ["homeassistant/#", "nvr/#"])
    watcher.wait_for(lambda msgs: {sensor_topic, present_topic, "nvr/garden/face/count", "nvr/available"}
                     <= {m.topic for m in msgs})  # fmt: skip
    # Home Assistant restarting (its birth message) makes us publish discovery again too.
    before = len(watcher.on(sensor_topic))
    watcher.publish("homeassistant/status", "online")
    watcher.wait_for(lambda msgs: sum(m.topic == sensor_topic for m in msgs) > before)
    sink.close()


def test_discovery_can_be_turned_off(broker: Mosquitto, subscriber_factory: Factory, tmp_path: Path) -> None:
    subscriber = subscriber_factory(broker, ["#"])
    sink = MqttSink(client_config(broker, tmp_path / "o.db", discovery={"enabled": False}), cameras=["cam"])
    sink.publisher.wait_connected(10)
    sink.publish_face_count("cam", 1)
    subscriber.wait_for(lambda msgs: any(m.topic == "nvr/cam/face/count" and m.payload == b"1" for m in msgs))
    sink.close()
    assert not [m for m in subscriber.messages if m.topic.startswith("homeassistant/")]


def test_last_will_tells_home_assistant_when_the_daemon_dies(
    broker: Mosquitto, subscriber_factory: Factory, child_factory: Callable[..., ChildProcess], tmp_path: Path
) -> None:
    config = client_config(broker, tmp_path / "o.db", keepalive=5)
    child = child_factory(config, tmp_path / "child.json", "--camera", "cam", "--wait-connected")
    child.expect("connected")
    assert retained(broker, subscriber_factory, "nvr/available") == b"online"
    subscriber = subscriber_factory(broker, ["nvr/available"])
    subscriber.wait_for(lambda msgs: [m.payload for m in msgs] == [b"online"])
    child.kill()  # SIGKILL: no clean stop, the broker notices the dropped connection
    subscriber.wait_for(lambda msgs: [m.payload for m in msgs] == [b"online", b"offline"], timeout=10)
    assert retained(broker, subscriber_factory, "nvr/available") == b"offline"


def test_stats_are_published_periodically(
    broker: Mosquitto, subscriber_factory: Factory, tmp_path: Path
) -> None:
    subscriber = subscriber_factory(broker, ["nvr/stats"])
    config = client_config(broker, tmp_path / "o.db", stats_interval=0.2)
    sink = MqttSink(config, cameras=["cam"])
    sink.publisher.set_stats({"cameras": {"cam": {"fps": 5.0}}})  # what the daemon pushes down
    sink.publish_event(synthetic_event("cam", 0))
    subscriber.wait_for(lambda msgs: len(msgs) >= 2)
    sink.close()
    stats = json.loads(subscriber.messages[-1].payload)
    assert stats["cameras"] == {"cam": {"fps": 5.0}}
    assert stats["mqtt"]["connected"] is True and stats["mqtt"]["outbox"]["pending"] == 0
    assert stats["mqtt"]["delivered"] == 1 and not subscriber.messages[0].retain


def test_malformed_or_oversized_data_never_reaches_the_wire(
    broker_factory: Callable[..., Mosquitto], subscriber_factory: Factory, tmp_path: Path
) -> None:
    broker = broker_factory(max_packet_size=4096, persistence=True)  # the limit is announced in CONNACK
    subscriber = subscriber_factory(broker, ["#"], persistent=True)
    broker.stop()  # phase 1: produced before the broker's limit is known
    sink = MqttSink(client_config(broker, tmp_path / "o.db", max_message_bytes=32 * 1024), cameras=["cam"])
    publisher: MqttPublisher = sink.publisher
    noise = np.random.default_rng(3).integers(0, 255, (120, 120, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=95)
    mid_jpeg = buffer.getvalue()
    assert 4096 < len(mid_jpeg) < 32 * 1024  # over the broker's limit, within ours

    def event(k: int, **changes: object) -> FaceEvent:
        return dataclasses.replace(synthetic_event("cam", k), **changes)  # type: ignore[arg-type]

    with capture_logs() as logs:
        # Non-finite numbers are not JSON: refused before the outbox.
        sink.publish_event(event(0, face=dataclasses.replace(event(0).face, score=math.nan)))
        # Larger than max_message_bytes: an event (a long camera name), then a snapshot.
        long_camera = "c" * 40_000
        sink.publish_event(dataclasses.replace(synthetic_event(long_camera, 1), camera=long_camera))
        sink.publish_event(event(2, snapshot=b"\xff\xd8" + bytes(40_000)))
        # A camera name that is not a topic level.
        sink.publish_event(event(3, camera="cam/#"))
        # Queued while the broker's limit is unknown: the sender drops the snapshot, the connection stays.
        sink.publish_event(event(4, snapshot=mid_jpeg))
        # NaN boxes from a detector never become events.
        stage = FaceStages(EventsConfig(), sink)
        bad = Detections(
            np.array([[np.nan, 10, 50, 60]], np.float32), np.array([0.9], np.float32),
            np.zeros((1, 5, 2), np.float32), SCRFD_LANDMARKS,
        )  # fmt: skip
        for i in range(10):
            stage.handle(FrameResult("cam", i, 1_763_683_300.0 + i, (640, 360), bad, None))
        assert publisher.outbox_pending == 3  # event 2 (without its snapshot), event 4 and its snapshot
        broker.start()
        publisher.wait_connected(10)
        # Phase 2: the broker's limit is known, so the sink refuses the snapshot itself.
        sink.publish_event(event(5, snapshot=mid_jpeg))
        sink.publish_event(event(6))
        subscriber.wait_for(lambda msgs: any(b'"frame_time":1763683206' in m.payload for m in msgs))
    sink.close()
    faces = [json.loads(m.payload) for m in subscriber.messages if m.topic == "nvr/cam/face"]
    for payload in faces:
        SCHEMA.validate(payload)
    assert [p["frame_time"] - 1_763_683_200 for p in faces] == [2, 4, 5, 6]
    # Event 4's payload promised a snapshot the broker could never take: only a broker limit learnt after
    # the event was queued can cause that.
    assert [p["snapshot"] for p in faces] == [False, True, False, False]
    assert not [m for m in subscriber.messages if "snapshot" in m.topic], "no oversized snapshot on the wire"
    assert not [m for m in subscriber.messages if long_camera in m.topic]
    assert sink.events_rejected == 3 and sink.snapshots_rejected == 2
    assert publisher.counters["oversize"] == 1 and publisher.counters["connects"] == 1
    assert publisher.outbox_pending == 0
    errors = [e for e in logs if e["log_level"] in ("warning", "error")]
    assert any("Out of range float values are not JSON compliant" in e.get("error", "") for e in errors)
    assert any("maximum packet size" in e["event"] and e["limit"] == 4096 for e in errors)
    assert any("'cam/#'" in e.get("error", "") and e["camera"] == "cam/#" for e in errors)
    assert all("\n" not in str(value) for e in errors for value in e.values())
