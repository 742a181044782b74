#!/usr/bin/env python3
"""Soak: 4 RTSP cameras through `nvr run` on the Hailo test double (replay mode) into a real mosquitto.

Reports, at the start (after a warm-up) and at the end: resident memory of the daemon and its decoders,
the daemon's open file descriptors, and /dev/shm use; and the end-to-end latency from frame capture
(`face.frame_time` in each event) to the event's arrival at an MQTT subscriber, as p50/p95.

    .venv/bin/python scripts/soak.py                 # 10 minutes
    .venv/bin/python scripts/soak.py --minutes 1     # a quick run

Replay mode returns the outputs computed once for every frame, so the figures measure our pipeline, not
the ONNX model inside the double. At the end it also prints the daemon's own figures from /metrics: frames
processed and lost per camera, and the most frames the Hailo engine had in flight at once. Needs
mosquitto, GStreamer's RTSP server (see DEVELOPERS.md) and the assets (NVR_ASSETS).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from mosquitto import Mosquitto, Subscriber  # noqa: E402
from nvr_daemon import child_pids  # noqa: E402
from rtsp import RtspServer  # noqa: E402

from nvr.assets import assets_dir  # noqa: E402
from nvr.contracts.frameslots import segments  # noqa: E402


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample(pid: int, instance: str) -> dict[str, float]:
    decoders = child_pids(pid)
    shm = sum(p.stat().st_blocks * 512 for p in segments(instance))
    return {
        "daemon_rss_mib": rss_kib(pid) / 1024,
        "decoders_rss_mib": sum(rss_kib(c) for c in decoders) / 1024,
        "children": len(decoders),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "shm_mib": shm / 2**20,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daemon_figures(port: int) -> list[str]:
    """The /metrics lines worth reporting: per-camera processed and lost frames, the engine's in-flight."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    wanted = re.compile(
        r"^nvr_(camera_processed_frames_total|camera_superseded_frames_total|camera_skipped_frames_total"
        r"|camera_lost_frames_total|inference_in_flight_max|inference_frames_total|inference_errors_total)"
    )
    return [line for line in text.splitlines() if wanted.match(line) and not line.endswith(" 0")]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=float, default=5.0, help="detect_fps per camera")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the start figures")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nvr-soak-"))
    clip = assets_dir() / "video" / "hamilton_clip.mp4"
    hef = assets_dir() / "hef" / "scrfd_2.5g.hailo10h.hef"
    broker = Mosquitto(work / "broker")
    broker.start()
    server = RtspServer(clip, loop=True)
    server.start()
    instance = f"soak{uuid.uuid4().hex[:6]}"
    metrics_port = free_port()
    config: dict[str, Any] = {
        "instance": instance,
        "state_dir": str(work / "state"),
        "cameras": [
            {"name": f"cam{i}", "url": server.url, "detect_fps": args.fps} for i in range(args.cameras)
        ],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "hailo", "model": str(hef)},
        "mqtt": {"host": broker.host, "port": broker.port, "node_id": instance, "stats_interval": 0},
        "events": {"update_interval": 1.0},
        "logging": {"level": "warning", "format": "json"},
        "metrics": {"port": metrics_port},
    }
    config_path = work / "nvr.yml"
    config_path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "tests" / "hailo_double"),
        "HAILO_DOUBLE_ARCH": "hailo10h",
        "HAILO_DOUBLE_REPLAY": "1",
        "HAILO_DOUBLE_LATENCY_MS": "1",
        "HAILO_DOUBLE_LOCK_DIR": str(work / "locks"),
    }
    latencies: list[float] = []
    lock = threading.Lock()
    subscriber = Subscriber(broker, ["nvr/+/face"], client_id=f"soak-{instance}")
    original = subscriber._on_message  # record the arrival time with each face event

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        arrived = time.time()
        original(client, userdata, message)
        try:
            event = json.loads(message.payload)
        except ValueError:
            return
        with lock:
            latencies.append(arrived - float(event["face"]["frame_time"]))

    subscriber._client.on_message = on_message
    log = open(work / "nvr.log", "w")  # noqa: SIM115
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nvr", "run", str(config_path)], cwd=ROOT, env=env, stdout=log, stderr=log
    )
    print(f"soak: {args.cameras} cameras, {args.fps} fps, {args.minutes} min; work dir {work}", flush=True)
    try:
        time.sleep(args.warmup)
        with lock:
            latencies.clear()
        start = sample(daemon.pid, instance)
        print(f"start: {json.dumps({k: round(v, 1) for k, v in start.items()})}", flush=True)
        end_at = time.monotonic() + args.minutes * 60
        while time.monotonic() < end_at:
            time.sleep(min(30.0, max(0.0, end_at - time.monotonic())))
            if daemon.poll() is not None:
                print(f"soak: the daemon exited with {daemon.returncode}; see {work}/nvr.log")
                return 1
            now = sample(daemon.pid, instance)
            print(f"  {json.dumps({k: round(v, 1) for k, v in now.items()})}", flush=True)
        end = sample(daemon.pid, instance)
        print(f"end:   {json.dumps({k: round(v, 1) for k, v in end.items()})}")
        with lock:
            values = list(latencies)
        if values:
            print(
                f"end-to-end latency capture -> MQTT subscriber over {len(values)} events: "
                f"p50 {percentile(values, 0.5) * 1000:.1f} ms, p95 {percentile(values, 0.95) * 1000:.1f} ms"
            )
        else:
            print("no face events arrived")
        print("daemon figures (non-zero):")
        for line in daemon_figures(metrics_port):
            print(f"  {line}")
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(15)
        print(
            f"stopped with exit code {code} in {time.monotonic() - started:.1f} s; "
            f"/dev/shm segments left: {len(segments(instance))}"
        )
        return 0 if values and code == 0 else 1
    finally:
        if daemon.poll() is None:
            daemon.kill()
        subscriber.close()
        server.stop()
        broker.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
