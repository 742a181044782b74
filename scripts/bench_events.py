#!/usr/bin/env python3
"""Face events per second through tracker -> lifecycle -> durable outbox -> MQTT broker (PUBACK).

Synthetic frames with several faces per camera drive the real tracking and event stages (`FaceStages`)
with an update interval small enough that every face yields an event each frame; the `MqttSink` commits
each event to the SQLite outbox and
the publisher delivers it at QoS 1. A run ends when the broker has acknowledged every event and the outbox
is empty. Measured in the same run, for ratios that carry over to other machines:

  * stage only:     tracker + lifecycle + JSON encoding, events dropped (the ceiling of the CPU side)
  * paho only:      the same payloads published straight with paho at QoS 1, no outbox (the broker path)
  * outbox only:    commit + read + delete of the same payloads, no network (the durability cost)

    .venv/bin/python scripts/bench_events.py [--events 3000] [--cameras 2] [--faces 3] [--broker HOST:PORT]

Without --broker it starts its own mosquitto (Debian package `mosquitto`) on a free port.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import paho.mqtt.client as mqtt  # noqa: E402 - after the path set-up for running from a checkout
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections  # noqa: E402
from nvr.contracts.frameresult import FrameResult  # noqa: E402
from nvr.daemon.stages import FaceStages  # noqa: E402
from nvr.events.config import EventsConfig, SnapshotConfig  # noqa: E402
from nvr.events.payload import FaceEvent  # noqa: E402
from nvr.mqtt.config import MqttConfig, OutboxConfig  # noqa: E402
from nvr.mqtt.outbox import NewMessage, Outbox  # noqa: E402
from nvr.mqtt.sink import MqttSink  # noqa: E402
from nvr.tracking.config import TrackerConfig  # noqa: E402

EPOCH = 1_763_683_200.0


def run_paced(
    stage: FaceStages, work: Sequence[FrameResult], fps: float
) -> tuple[list[float], list[float], float]:
    """Hand the frames to the stage at `fps` (as cameras would): each frame's due time (monotonic), the
    stage's time per frame, and the elapsed time of the whole run."""
    due_times: list[float] = []
    per_frame: list[float] = []
    period = 1.0 / fps
    started = time.monotonic()
    for i, frame in enumerate(work):
        due = started + i * period
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        due_times.append(due)
        t0 = time.monotonic()
        stage.handle(frame)
        per_frame.append(time.monotonic() - t0)
    return due_times, per_frame, time.monotonic() - started


def frames(cameras: int, faces: int, count: int) -> list[FrameResult]:
    """`count` frames per camera at 25 fps, each with `faces` slowly moving, growing faces."""
    image = np.zeros((360, 640, 3), np.uint8)
    out = []
    for i in range(count):
        x = 40.0 + np.arange(faces, dtype=np.float32) * 150 + (i % 50)
        grow = (i % 50) * 0.5  # faces come closer: the best face (and its snapshot) keeps changing
        boxes = np.stack([x, np.full(faces, 80.0), x + 90 + grow, np.full(faces, 200.0 + grow)], axis=1)
        boxes = boxes.astype(np.float32)
        landmarks = np.repeat(boxes[:, None, :2] + 40, 5, axis=1).astype(np.float32)
        detections = Detections(boxes, np.full(faces, 0.9, np.float32), landmarks, SCRFD_LANDMARKS)
        for c in range(cameras):
            out.append(FrameResult(f"cam{c}", i, EPOCH + i / 25, (640, 360), detections, image))
    return out


def events_config(snapshots: bool) -> EventsConfig:
    # An update on every frame: the benchmark is about event throughput, not about the rate limit.
    return EventsConfig(
        update_interval=0.001, tracker=TrackerConfig(min_hits=1), snapshot=SnapshotConfig(enabled=snapshots)
    )


class CollectingSink:
    def __init__(self) -> None:
        self.events: list[FaceEvent] = []

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        for event in events:
            event.to_json()
        self.events.extend(events)

    def publish_face_count(self, camera: str, count: int) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        pass


@contextlib.contextmanager
def mosquitto() -> Iterator[tuple[str, int]]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        proc = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                    break
                time.sleep(0.05)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            proc.wait(10)


def bench_stage(work: list[FrameResult], snapshots: bool) -> tuple[float, list[FaceEvent]]:
    sink = CollectingSink()
    stage = FaceStages(events_config(snapshots), sink)
    started = time.perf_counter()
    for frame in work:
        stage.handle(frame)
    stage.close()
    return len(sink.events) / (time.perf_counter() - started), sink.events


def bench_paho(host: str, port: int, payloads: list[tuple[str, bytes]]) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=mqtt.MQTTv5)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *args: acked.release()
    client.max_inflight_messages_set(20)
    client.connect(host, port)
    client.loop_start()
    started = time.perf_counter()
    for topic, payload in payloads:
        client.publish(topic, payload, qos=1)
    for _ in payloads:
        acked.acquire()
    rate = len(payloads) / (time.perf_counter() - started)
    client.disconnect()
    client.loop_stop()
    return rate


def bench_outbox(path: Path, synchronous: str, payloads: list[tuple[str, bytes]]) -> float:
    outbox = Outbox(path, OutboxConfig(synchronous=synchronous))
    started = time.perf_counter()
    for topic, payload in payloads:
        outbox.put([NewMessage("cam", topic, payload)])
    last = 0
    while rows := outbox.pending(last, 20):
        last = rows[-1].seq
        outbox.delete([r.seq for r in rows])
    rate = len(payloads) / (time.perf_counter() - started)
    outbox.close()
    return rate


def bench_pipeline(host: str, port: int, work: list[FrameResult], outbox: Path, synchronous: str) -> float:
    config = MqttConfig(
        host=host, port=port, node_id="bench", stats_interval=0, discovery={"enabled": False},
        outbox=OutboxConfig(path=outbox, synchronous=synchronous),
    )  # fmt: skip
    sink = MqttSink(config)
    sink.publisher.wait_connected(10)
    stage = FaceStages(events_config(False), sink)
    started = time.perf_counter()
    for frame in work:
        stage.handle(frame)
    stage.close()
    while sink.publisher.outbox_pending:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    delivered = sink.publisher.counters["delivered"]
    sink.close()
    assert delivered >= stage.events_out, f"only {delivered} of {stage.events_out} events acknowledged"
    return stage.events_out / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3000, help="about this many events per measurement")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--faces", type=int, default=3, help="faces in view per camera")
    parser.add_argument("--broker", help="HOST:PORT of a running broker (default: start mosquitto)")
    args = parser.parse_args()
    per_frame = args.cameras * args.faces
    work = frames(args.cameras, args.faces, max(1, args.events // per_frame))

    stage_rate, events = bench_stage(work, snapshots=False)
    snapshot_rate, _ = bench_stage(work[: max(per_frame, len(work) // 5)], snapshots=True)
    payloads = [(f"nvr/{e.camera}/face", e.to_json()) for e in events]
    size = sum(len(p) for _, p in payloads) / len(payloads)

    with tempfile.TemporaryDirectory() as tmp:
        outbox_full = bench_outbox(Path(tmp) / "full.db", "full", payloads)
        outbox_normal = bench_outbox(Path(tmp) / "normal.db", "normal", payloads)
        broker = contextlib.nullcontext(tuple(args.broker.rsplit(":", 1))) if args.broker else mosquitto()
        with broker as (host, port):
            paho_rate = bench_paho(str(host), int(port), payloads)
            full = bench_pipeline(str(host), int(port), work, Path(tmp) / "p_full.db", "full")
            normal = bench_pipeline(str(host), int(port), work, Path(tmp) / "p_normal.db", "normal")

    print(
        f"{len(events)} events ({args.cameras} cameras x {args.faces} faces), {size:.0f}-byte JSON payloads"
    )
    print(f"{'measurement':46s} {'events/s':>10s} {'vs paho':>8s}")
    rows = [
        ("stage only (tracker + lifecycle + JSON)", stage_rate),
        ("stage only, with a JPEG snapshot per event", snapshot_rate),
        ("outbox only, one commit per event, sync=full", outbox_full),
        ("outbox only, one commit per event, sync=normal", outbox_normal),
        ("paho only, QoS 1 to the broker (baseline)", paho_rate),
        ("tracker -> outbox (full) -> broker PUBACK", full),
        ("tracker -> outbox (normal) -> broker PUBACK", normal),
    ]
    for label, rate in rows:
        print(f"{label:46s} {rate:10.0f} {rate / paho_rate:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
