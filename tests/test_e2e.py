"""End to end: a real RTSP server streaming the video asset, a real mosquitto, `nvr run` as a subprocess.

Face events with snapshots arrive on the documented topics, their boxes agree with the detector `nvr detect`
uses run on the same video's frames, events resume after the camera goes away and comes back, and SIGTERM
ends it all within 10 s with `offline` published and nothing left in /dev/shm. Once on the CPU backend, once
on the Hailo test double. Also: the README's quick-start command (a local file, no broker) reaches events.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from conftest import PROJECT_ROOT, asset_path
from mosquitto import Mosquitto, Subscriber
from nvr_daemon import NvrDaemon, child_commands, outliving
from rtsp import RtspServer, rtsp_server  # noqa: F401 (the fixture)

from nvr.capture.decoder import FrameSampler
from nvr.contracts.frameslots import segments
from nvr.detector import open_detector
from nvr.errors import ExitCode

CLIP = "video/hamilton_clip.mp4"
HAILO_DOUBLE = PROJECT_ROOT / "tests" / "hailo_double"


DETECT_FPS = 4


@pytest.fixture(scope="module")
def reference_boxes() -> list[np.ndarray]:
    """The frames the daemon samples from the clip's first pass (the server starts every session at frame 0,
    and sampling goes by stream time), through the detector `nvr detect` uses: (N, 5) boxes + score each."""
    frames: list[np.ndarray] = []
    sampler = FrameSampler(DETECT_FPS)
    model = asset_path("models/scrfd/det_2.5g.onnx")
    clip = str(asset_path(CLIP))
    with open_detector(model, backend="onnx", score_threshold=0.5) as detector, av.open(clip) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and sampler.take(float(frame.time)):
                found = detector.detect(frame)  # type: ignore[arg-type]  # it letterboxes VideoFrames too
                frames.append(np.concatenate([found.boxes, found.scores[:, None]], axis=1))
    return frames


def best_iou(box: list[float], reference: list[np.ndarray]) -> tuple[float, float]:
    """The highest IoU of `box` with any reference face of any frame, and that face's score."""
    best, score = 0.0, 0.0
    b = np.asarray(box, np.float32)
    for faces in reference:
        if len(faces) == 0:
            continue
        x1 = np.maximum(faces[:, 0], b[0])
        y1 = np.maximum(faces[:, 1], b[1])
        x2 = np.minimum(faces[:, 2], b[2])
        y2 = np.minimum(faces[:, 3], b[3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        areas = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
        union = areas + (b[2] - b[0]) * (b[3] - b[1]) - inter
        iou = inter / union
        i = int(np.argmax(iou))
        if iou[i] > best:
            best, score = float(iou[i]), float(faces[i, 4])
    return best, score


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    mosquitto = Mosquitto(tmp_path / "broker")
    mosquitto.start()
    yield mosquitto
    mosquitto.kill()


def daemon_config(tmp_path: Path, broker: Mosquitto, url: str, detector: dict[str, Any]) -> dict[str, Any]:
    return {
        "instance": f"e2e{uuid.uuid4().hex[:8]}",
        "state_dir": str(tmp_path / "state"),
        "cameras": [{"name": "door", "url": url, "detect_fps": DETECT_FPS}],
        "capture": {
            "reconnect_initial": 0.5, "reconnect_max": 2, "read_timeout": 3, "open_timeout": 5,
            "snapshot_width": 640, "snapshot_height": 360,
        },
        "detector": detector,
        "mqtt": {
            "host": broker.host, "port": broker.port, "node_id": f"e2e{uuid.uuid4().hex[:6]}",
            "topic_prefix": "nvr", "stats_interval": 0,
        },
        "events": {"update_interval": 1, "tracker": {"end_after": 1.0}},
        "metrics": {"port": 0},
    }  # fmt: skip


def face_events(subscriber: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in subscriber.on("nvr/door/face")]


def run_and_check(
    tmp_path: Path,
    broker: Mosquitto,
    server: RtspServer,
    detector: dict[str, Any],
    reference: list[np.ndarray],
    min_iou: float,
    env: dict[str, str] | None = None,
    restart_camera: bool = False,
) -> None:
    subscriber = Subscriber(broker, ["nvr/#"])
    config = daemon_config(tmp_path, broker, server.url, detector)
    daemon = NvrDaemon(tmp_path / "daemon", config, env=env)
    try:
        online = ("nvr/available", b"online")
        subscriber.wait_for(lambda ms: any((m.topic, m.payload) == online for m in ms), 60)
        assert daemon.wait_for_event("detector ready", 60)["backend"] == detector["backend"]
        streaming = daemon.wait_for_event("capture streaming", 60)
        first_frame = datetime.fromisoformat(streaming["timestamp"]).timestamp()
        subscriber.wait_for(lambda _ms: len(face_events(subscriber)) >= 4, 90)
        subscriber.wait_for(lambda _ms: bool(subscriber.on("nvr/door/face/snapshot")), 30)
        snapshot = subscriber.on("nvr/door/face/snapshot")[0]
        assert snapshot.payload[:2] == b"\xff\xd8", "snapshots are raw JPEG bytes"
        events = face_events(subscriber)
        assert events[0]["type"] == "new" and events[0]["frame_size"] == [640, 360]
        # Frames of the clip's first pass (9.2 s) are the ones the reference saw.
        first_pass = [e for e in events if e["face"]["frame_time"] < first_frame + 8.5]
        assert len(first_pass) >= 3
        for event in first_pass:
            for face in (event["face"], event["best"]):
                iou, score = best_iou(face["box"], reference)
                assert iou >= min_iou, f"event box {face['box']} matches no `nvr detect` face (IoU {iou:.3f})"
                assert abs(score - face["score"]) < (0.02 if min_iou > 0.95 else 0.1)

        if restart_camera:
            mark = daemon.mark()
            server.stop()  # the camera loses power
            daemon.wait_for_event("capture lost", 30, since=mark)
            time.sleep(1.0)
            mark = daemon.mark()
            back = time.time()
            server.start()
            # Back within the backoff cap (2 s) + 2 s of connecting; then new faces become new events.
            daemon.wait_for_event("capture streaming", 2 + 2 + 5, since=mark)
            def resumed(_messages: object) -> bool:
                return any(e["type"] == "new" and e["start_time"] > back for e in face_events(subscriber))

            subscriber.wait_for(resumed, 60)

        children = child_commands(daemon.proc.pid)
        code, seconds = daemon.stop()
        assert code == ExitCode.OK and seconds < 10, f"exit {code} after {seconds:.1f} s"
        subscriber.wait_for(lambda _ms: subscriber.on("nvr/available")[-1].payload == b"offline", 5)
        assert not segments(config["instance"]), "shared memory left behind"
        assert not outliving(children), "orphaned processes"
    finally:
        daemon.close()
        subscriber.close()


def test_cpu_backend_end_to_end_with_camera_restart(
    tmp_path: Path, broker: Mosquitto, rtsp_server: type[RtspServer], reference_boxes: list[np.ndarray]  # noqa: F811
) -> None:
    server = rtsp_server(asset_path(CLIP), loop=True)
    server.start()
    detector = {"backend": "onnx", "model": str(asset_path("models/scrfd/det_2.5g.onnx"))}
    run_and_check(tmp_path, broker, server, detector, reference_boxes, min_iou=0.98, restart_camera=True)


def test_hailo_double_end_to_end(
    tmp_path: Path, broker: Mosquitto, rtsp_server: type[RtspServer], reference_boxes: list[np.ndarray]  # noqa: F811
) -> None:
    server = rtsp_server(asset_path(CLIP), loop=True)
    server.start()
    detector = {"backend": "hailo", "model": str(asset_path("hef/scrfd_2.5g.hailo10h.hef"))}
    env = {
        "PYTHONPATH": str(HAILO_DOUBLE),
        "HAILO_DOUBLE_ARCH": "hailo10h",
        "HAILO_DOUBLE_LOCK_DIR": str(tmp_path / "hailo_locks"),
    }
    # The uint8 outputs of the (simulated) chip differ from the float model by quantization only.
    run_and_check(tmp_path, broker, server, detector, reference_boxes, min_iou=0.85, env=env)


def follow_up_as_a_user_types_it(home: Path, store: Path) -> None:
    """The README's next commands, typed in a new terminal: a Debian login shell (its ~/.profile puts
    ~/.local/bin on the PATH) runs `nvr models list` and `nvr detect`, found through the set-up's launcher."""
    profile = Path("/etc/skel/.profile")
    assert profile.is_file(), "this test wants Debian's default ~/.profile (package bash)"
    (home / ".profile").write_text(profile.read_text())
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "NVR_MODELS": str(store)}
    listed = subprocess.run(
        ["bash", "-lc", "nvr models list"], env=env, cwd=home, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"^scrfd_2\.5g-onnx +onnx +- +yes +present, .* det_2\.5g\.onnx$", listed.stdout, re.M), (
        listed.stdout
    )
    image = asset_path("images/cospectrum_newton.png")
    detected = subprocess.run(
        ["bash", "-lc", f"nvr detect {image} --model scrfd_2.5g-onnx --draw faces/"],  # as the README
        env=env, cwd=home, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert detected.returncode == 0 and detected.stderr == "", detected.stderr
    assert detected.stdout.startswith(f"{image}: 1 face(s) in 768x432\n")
    assert detected.stdout.endswith(f"  drawn to faces/{image.name}\n")
    assert (home / "faces" / image.name).is_file()


def test_the_readme_quick_start_command_reaches_face_events(tmp_path: Path) -> None:
    """The README's one command, `scripts/quickstart.sh VIDEO`, run as a user would: set-up (a no-op on an
    installed checkout), a real pull from the local mirror into an empty model store, the daemon."""
    home, store = tmp_path / "home", tmp_path / "models"
    env = {**os.environ, "HOME": str(home), "NVR_MODELS": str(store)}
    for systemd_variable in ("JOURNAL_STREAM", "STATE_DIRECTORY"):
        env.pop(systemd_variable, None)
    video = asset_path(CLIP)
    proc = subprocess.Popen(
        [str(PROJECT_ROOT / "scripts" / "quickstart.sh"), str(video)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as in a terminal: the script execs nvr
    )  # fmt: skip
    lines: list[str] = []
    face_seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "face new" in line and ('"camera": "demo"' in line or "camera=demo" in line):  # JSON, console
                face_seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert face_seen.wait(120), "".join(lines[-30:])
        output = "".join(lines)
        mirrored = asset_path("models/scrfd/det_2.5g.onnx")
        stored = store / "det_2.5g.onnx"
        assert f"scrfd_2.5g-onnx: copied from the local mirror {mirrored} to {stored}" in output
        assert stored.read_bytes() == mirrored.read_bytes()
        assert f"quickstart: running nvr on {video.as_uri()}" in output
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group, as a terminal's Ctrl-C does (with SIGINT)
        assert proc.wait(10) == ExitCode.OK, "".join(lines[-30:])
        reader.join(5)
        events_file = home / ".local" / "state" / "nvr" / "events.jsonl"
        first = json.loads(events_file.read_text().splitlines()[0])
        assert (first["camera"], first["type"]) == ("demo", "new")
        assert Path(first["snapshot_path"]).parent == home / ".local" / "state" / "nvr" / "snapshots"
        # Set-up is quiet: one line per step (here: the launcher, the PATH hint, ready); no pip or apt noise.
        setup_lines = [line for line in lines if line.startswith("setup: ")]
        assert setup_lines == lines[: len(setup_lines)] and len(setup_lines) <= 6, lines[:10]
        launcher = home / ".local" / "bin" / "nvr"
        assert f"setup: made the launcher {launcher} -> {PROJECT_ROOT / '.venv' / 'bin' / 'nvr'}\n" in lines
        assert f"setup: {launcher.parent} is not on your PATH yet" in output
        follow_up_as_a_user_types_it(home, store)
    finally:
        if proc.poll() is None:
            # SIGTERM first: a SIGKILLed group takes multiprocessing's resource tracker with it, and the
            # frame queue's named semaphores would stay in /dev/shm.
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
