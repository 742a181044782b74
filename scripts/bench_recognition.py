#!/usr/bin/env python3
"""What face recognition costs detection, and how fast a face gets its name on MQTT.

Two measurements, each as figures from this run on this machine (ratios, not absolute speeds):

  fps      detection frames per second of two daemons run at the same time, identical but for recognition
           (off / on), each saturated: CPU: several looped file cameras asking for more frames than the CPU
           can detect; Hailo: the HailoRT double in replay mode (its own ONNX compute done once, off the
           host's budget) with a simulated device time per network, one simulated device per daemon, cameras
           asking for more than the device ceiling.
           Reported: mean fps off, mean fps on, kept = on / off (goal: >= 90 % CPU, >= 95 % Hailo).
  latency  the RTSP server streams the video in a loop to `nvr run` with mosquitto; Lin-Manuel Miranda is
           enrolled; for every event that gets his name: time from the event's first frame (start_time, a
           capture time) to the arrival of the first message carrying his identity. p50 / p95 (goal: p95
           <= 2 s CPU, <= 1 s Hailo). The daemon runs with the debug log, whose latency trace (each face
           queued for / back from the embedder, each identity sent) splits every event's time into PARTS;
           also reported: the time from the first frame his face could be embedded in (`from_embeddable_*`:
           in this video some of his tracks start on a blurred audience member before the cut to him), and
           on the Hailo double, that time without the double's own ONNX compute on the event's path
           (`without_double_compute_*`, from HAILO_DOUBLE_COMPUTE_LOG: a chip takes DEVICE_MS instead).

    .venv/bin/python scripts/bench_recognition.py [--mode cpu|hailo|both] [--what fps|latency|both]
        [--seconds 20] [--rounds 2] [--cameras 3] [--latency-seconds 60] [--threshold T]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from conftest import asset_path  # noqa: E402
from hailo_support import double_subprocess_env  # noqa: E402
from hef_synth import synthetic_hailo8_scrfd  # noqa: E402
from mosquitto import Mosquitto, Subscriber  # noqa: E402
from nvr_daemon import NvrDaemon  # noqa: E402
from recognition_helpers import EMBEDDER, enrol  # noqa: E402
from rtsp import RtspServer  # noqa: E402

CLIP = "video/hamilton_clip.mp4"
LIN = "Lin-Manuel Miranda"
DEVICE_MS = "scrfd_2_5g=12,arcface_mobilefacenet=1"  # simulated device time per frame, per network


def detector_and_env(mode: str, work: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, str] | None]:
    """The detector section, the recognition embedder and the environment for `mode`."""
    if mode == "cpu":
        detector = {"backend": "onnx", "model": str(asset_path("models/scrfd/det_2.5g.onnx"))}
        return detector, {"embedder": str(asset_path(EMBEDDER))}, None
    hef = work / "scrfd_2.5g.synthetic-hailo8.hef"
    if not hef.exists():
        synthetic_hailo8_scrfd(asset_path("hef/scrfd_2.5g.hailo10h.hef"), hef)
    embedder_onnx = str(asset_path(EMBEDDER))
    env = double_subprocess_env(
        work / "locks", arch="hailo8", embedder_onnx=embedder_onnx, replay="1", latency_ms=DEVICE_MS
    )
    detector = {"backend": "hailo", "model": str(hef)}
    return detector, {"embedder": str(asset_path("hef/arcface_mobilefacenet.hailo8.hef"))}, env


def base_config(work: Path, detector: dict[str, Any], recognition: dict[str, Any]) -> dict[str, Any]:
    return {
        "instance": f"bench{uuid.uuid4().hex[:6]}",
        "state_dir": str(work / "state"),
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": detector,
        "events": {"update_interval": 1, "tracker": {"end_after": 1.0}},
        "recognition": {**recognition, "enabled": False},
        "metrics": {"port": 0},
    }


def frames_total(url: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("nvr_inference_frames_total"):
                return float(line.split()[-1])
    raise RuntimeError("no nvr_inference_frames_total in /metrics")


def measure_fps(mode: str, work: Path, seconds: float, rounds: int, cameras: int) -> dict[str, Any]:
    """Two daemons at once, identical but for recognition, each asking for more frames than it can get: they
    share the machine under the same load at every moment (this VM's load swings too much for one-after-the-
    other runs), so on / off over the same windows is what recognition costs detection."""
    detector, recognition, env = detector_and_env(mode, work)
    fps = 30 if mode == "hailo" else 10
    video = f"file://{asset_path(CLIP)}"
    daemons: dict[str, NvrDaemon] = {}
    urls: dict[str, str] = {}
    results: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for state in ("off", "on"):
            run = work / f"fps-{mode}-{state}"
            config = base_config(run, detector, recognition)
            config["cameras"] = [{"name": f"cam{i}", "url": video, "detect_fps": fps} for i in range(cameras)]
            config["recognition"]["enabled"] = state == "on"
            enrol(run / "state" / "faces.db", LIN, "faces/lin_manuel_miranda/1.png")
            run_env = None if env is None else {**env, "HAILO_DOUBLE_LOCK_DIR": str(run / "locks")}
            daemons[state] = NvrDaemon(run / "daemon", config, env=run_env)  # a simulated device each
        for state, daemon in daemons.items():
            urls[state] = daemon.wait_for_event("metrics endpoint listening", 60)["url"]
            daemon.wait_for_event("capture streaming", 60)
        time.sleep(10.0)  # warm-up: every camera streaming, the engines busy
        for round_ in range(rounds):
            start = {state: frames_total(url) for state, url in urls.items()}
            t0 = time.monotonic()
            time.sleep(seconds)
            elapsed = time.monotonic() - t0
            for state, url in urls.items():
                results[state].append((frames_total(url) - start[state]) / elapsed)
            print(f"  {mode} round {round_ + 1}: off {results['off'][-1]:6.2f}  on {results['on'][-1]:6.2f} "
                  "frames/s", flush=True)  # fmt: skip
    finally:
        for daemon in daemons.values():
            daemon.close()
    off, on = statistics.mean(results["off"]), statistics.mean(results["on"])
    return {"mode": mode, "cameras": cameras, "detect_fps": fps, "off": round(off, 2), "on": round(on, 2),
            "kept": round(on / off, 3), "rounds": results}  # fmt: skip


def measure_latency(mode: str, work: Path, seconds: float, threshold: float | None) -> dict[str, Any]:
    detector, recognition, env = detector_and_env(mode, work)
    if threshold is not None:
        recognition = {**recognition, "threshold": threshold}
    compute_log = work / f"double-compute-{mode}.log"
    if env is not None:
        env = {k: v for k, v in env.items() if k != "HAILO_DOUBLE_REPLAY"}  # real frames: real faces
        env["HAILO_DOUBLE_COMPUTE_LOG"] = str(compute_log)  # the double's own ONNX compute, per frame
    broker = Mosquitto(work / f"broker-{mode}")
    broker.start()
    server = RtspServer(asset_path(CLIP), loop=True)
    server.start()
    run = work / f"latency-{mode}"
    enrol(run / "state" / "faces.db", LIN, "faces/lin_manuel_miranda/1.png")
    config = base_config(run, detector, recognition)
    config["cameras"] = [{"name": "door", "url": server.url, "detect_fps": 5}]
    config["recognition"]["enabled"] = True
    config["logging"] = {"level": "debug"}  # the latency trace: each embedding's way, each identity sent
    config["mqtt"] = {"host": broker.host, "port": broker.port, "node_id": f"b{uuid.uuid4().hex[:6]}",
                      "topic_prefix": "nvr", "stats_interval": 0}  # fmt: skip
    arrivals: dict[str, float] = {}
    starts: dict[str, float] = {}
    subscriber = Subscriber(broker, ["nvr/door/face"], client_id=f"bench-{mode}")
    original = subscriber._on_message

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        event = json.loads(message.payload)
        identity = event.get("identity")
        if identity and identity.get("name") == LIN and event["id"] not in arrivals:
            arrivals[event["id"]] = time.time()
            starts[event["id"]] = event["start_time"]
        original(client, userdata, message)

    subscriber._client.on_message = on_message
    daemon = NvrDaemon(run / "daemon", config, env=env)
    try:
        daemon.wait_for_event("capture streaming", 60)
        time.sleep(seconds)
        daemon.stop(15)
    finally:
        daemon.close()
        subscriber.close()
        server.stop()
        broker.kill()
    delays = sorted(arrivals[k] - starts[k] for k in arrivals)
    if not delays:
        return {"mode": mode, "events": 0}
    computed = read_compute_log(compute_log) if env is not None else []
    parts = decompose(daemon.logs(), arrivals, starts, computed)
    result: dict[str, Any] = {"mode": mode, "events": len(delays)}
    result.update(summary("", delays))
    # From the first frame the face could be embedded in (quality gate passed): the pipeline's own part.
    # In this video the event's first frames are sometimes another, blurred face (see the README).
    result.update(summary("from_embeddable_", parts["from_embeddable"]))
    if computed:  # the Hailo double: its ONNX compute on this CPU stands in for the chip's device time
        result.update(summary("without_double_compute_", parts["without_double_compute"]))
    result["parts_p50_s"] = {k: round(statistics.median(v), 3) for k, v in parts.items() if v}
    result["parts_p95_s"] = {k: round(percentile(v, 0.95), 3) for k, v in parts.items() if v}
    return result


def summary(prefix: str, values: list[float]) -> dict[str, Any]:
    if not values:
        return {}
    return {f"{prefix}p50_s": round(statistics.median(values), 3),
            f"{prefix}p95_s": round(percentile(values, 0.95), 3),
            f"{prefix}max_s": round(max(values), 3)}  # fmt: skip


def read_compute_log(path: Path) -> list[tuple[float, str, float]]:
    """The double's compute log: (end time epoch s, detector|embedder, seconds) per frame it computed."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        at, kind, seconds = line.split()
        rows.append((float(at), kind, float(seconds)))
    return rows


def _double_compute(computed: list[tuple[float, str, float]], kind: str, start: float, end: float) -> float:
    """The double's compute of `kind` that ended last within [start, end] (0 when none)."""
    inside = [row for row in computed if row[1] == kind and start <= row[0] <= end]
    return inside[-1][2] if inside else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _at(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


# The parts of a face's wait for its name, in order (they add up to the total, per event):
PARTS = (
    "to_embeddable",  # event start (first frame) -> capture of the first face good enough to embed
    "evidence",  # -> capture of the face whose embedding decided the name (min_embeddings, interval)
    "detection",  # -> that frame reaches recognition (decode, detection queue and compute, tracking)
    "embed_wait",  # -> the embedder starts on it (its queue)
    "embed_compute",  # -> its embedding is done (on the Hailo double: the double's ONNX compute on this CPU)
    "decide",  # -> the name decided (results applied)
    "to_sink",  # -> the event message with the name handed to the outbox (waits for the event to start)
    "delivery",  # -> it arrives at a subscriber (outbox commit, MQTT)
)


def decompose(
    logs: list[dict[str, Any]],
    arrivals: dict[str, float],
    starts: dict[str, float],
    computed: list[tuple[float, str, float]],
) -> dict[str, list[float]]:
    """Per event that got the name, where its time went, from the daemon's debug trace (see PARTS)."""
    by_event: dict[str, dict[str, Any]] = {}
    queued: dict[tuple[str, int], list[dict[str, Any]]] = {}
    embedded: dict[tuple[str, int], list[dict[str, Any]]] = {}
    identified: dict[tuple[str, int], dict[str, Any]] = {}
    scores: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for line in logs:
        event = line.get("event")
        if event == "face identity sent" and line.get("name") == LIN:
            by_event.setdefault(line["event_id"], line)
        elif event == "face queued for embedding":
            queued.setdefault((line["camera"], line["track"]), []).append(line)
        elif event == "face embedded":
            embedded.setdefault((line["camera"], line["track"]), []).append(line)
        elif event == "face embedding applied":
            scores.setdefault((line["camera"], line["track"]), []).append(line)
        elif event == "face identified" and line.get("name") == LIN:
            identified.setdefault((line["camera"], line["track"]), line)
    extra = ("from_embeddable", "double_compute", "without_double_compute")
    parts: dict[str, list[float]] = {name: [] for name in PARTS + extra}
    for event_id, arrival in arrivals.items():
        sent = by_event.get(event_id)
        if sent is None:
            continue
        key = (sent["camera"], sent["track"])
        decided = identified.get(key)
        if decided is None or not queued.get(key):
            continue
        decided_at = _at(decided)
        # The face whose embedding named him (several may share the embedder's batch).
        decisions = [e for e in scores.get(key, []) if e["decided"] and _at(e) <= decided_at]
        capture = decisions[-1]["capture_time"] if decisions else None
        deciding = next((e for e in embedded.get(key, []) if e["capture_time"] == capture), None)
        if deciding is None:
            continue
        queue_line = next(q for q in queued[key] if q["capture_time"] == capture)
        done = _at(deciding)
        started = done - deciding["compute_s"]
        values = {
            "to_embeddable": queued[key][0]["capture_time"] - starts[event_id],
            "evidence": capture - queued[key][0]["capture_time"],
            "detection": _at(queue_line) - capture,
            "embed_wait": started - _at(queue_line),
            "embed_compute": deciding["compute_s"],
            "decide": decided_at - done,
            "to_sink": _at(sent) - decided_at,
            "delivery": arrival - _at(sent),
        }
        total = arrival - starts[event_id]
        values["from_embeddable"] = total - values["to_embeddable"]
        if computed:
            # The double's compute on this event's path, where a chip would have taken its device time
            # (DEVICE_MS): its SCRFD compute of the deciding frame, and the embedder thread's time for the
            # deciding face (waiting and computing: on the Hailo path that thread only waits for the device,
            # here the double computing ArcFace, for this face and the ones queued before it).
            det_ms, emb_ms = (float(p.split("=")[1]) / 1000.0 for p in DEVICE_MS.split(","))
            detector = _double_compute(computed, "detector", capture, _at(queue_line))
            embedder = values["embed_wait"] + values["embed_compute"]
            values["double_compute"] = detector + embedder
            values["without_double_compute"] = (
                values["from_embeddable"] - max(0.0, detector - det_ms) - max(0.0, embedder - emb_ms)
            )
        for name, value in values.items():
            parts[name].append(value)
        row = " ".join(f"{name} {value:6.3f}" for name, value in values.items())
        applied = [f"{e['score']}" for e in scores.get(key, []) if e["capture_time"] <= capture]
        print(f"  event total {total:6.3f} = {row} scores {' '.join(applied)}", flush=True)
    return parts


def main() -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--mode", choices=("cpu", "hailo", "both"), default="both")
    parser.add_argument("--what", choices=("fps", "latency", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per fps run")
    parser.add_argument("--rounds", type=int, default=3, help="measuring windows per mode")
    parser.add_argument("--cameras", type=int, default=3)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--threshold", type=float, help="match threshold (default: the embedder's own)")
    args = parser.parse_args()
    modes = ("cpu", "hailo") if args.mode == "both" else (args.mode,)
    with tempfile.TemporaryDirectory(prefix="nvr-bench-recognition-") as tmp:
        work = Path(tmp)
        for mode in modes:
            if args.what in ("fps", "both"):
                cameras = args.cameras if mode == "cpu" else max(args.cameras, 4)
                fps = measure_fps(mode, work, args.seconds, args.rounds, cameras)
                print(json.dumps({"fps": fps}), flush=True)
            if args.what in ("latency", "both"):
                latency = measure_latency(mode, work, args.latency_seconds, args.threshold)
                print(json.dumps({"latency": latency}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
