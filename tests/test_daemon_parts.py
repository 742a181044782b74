"""The daemon's small parts: fair scheduling, face filters, reload planning, file watching, sd_notify,
the metrics endpoint and log redaction."""

from __future__ import annotations

import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import structlog

from nvr.capture import CameraSpec
from nvr.config import CameraConfig
from nvr.config.models import CaptureConfig
from nvr.contracts.faces import Detections
from nvr.contracts.frameslots import FrameReady
from nvr.daemon.cameras import camera_spec, plan_changes
from nvr.daemon.sdnotify import SystemdNotifier
from nvr.daemon.watch import FileWatcher
from nvr.detection.scheduler import FairScheduler
from nvr.detection.zones import FaceFilter, points_in_polygon
from nvr.logsetup import configure_logging
from nvr.metrics import MetricFamily, MetricsServer, render


def test_a_busy_camera_cannot_starve_a_quiet_one() -> None:
    scheduler: FairScheduler[FrameReady] = FairScheduler()
    served: list[str] = []
    displaced = 0
    # "busy" posts 10 frames for each frame of "quiet"; the engine serves one frame per post of "busy".
    quiet_index = 0
    for i in range(100):
        displaced += scheduler.offer(FrameReady("busy", i % 4, i)) is not None
        if i % 10 == 0:
            scheduler.offer(FrameReady("quiet", 0, quiet_index))
            quiet_index += 1
        if i % 2 == 0:  # the engine runs at half the busy camera's rate
            frame = scheduler.take()
            assert frame is not None
            served.append(frame.camera)
    assert served.count("quiet") == quiet_index  # every quiet frame was served
    assert displaced > 0  # the busy camera dropped its own stale frames, not the quiet one's


def test_mailboxes_keep_the_newest_frame_and_serve_round_robin() -> None:
    scheduler: FairScheduler[FrameReady] = FairScheduler()
    assert scheduler.offer(FrameReady("a", 0, 1)) is None
    assert scheduler.offer(FrameReady("b", 0, 1)) is None
    assert scheduler.offer(FrameReady("a", 1, 2)) == FrameReady("a", 0, 1)
    assert scheduler.offer(FrameReady("a", 0, 1)) == FrameReady("a", 0, 1)  # a late older frame is refused
    assert [scheduler.take(), scheduler.take(), scheduler.take()] == [
        FrameReady("a", 1, 2), FrameReady("b", 0, 1), None,
    ]  # fmt: skip
    scheduler.offer(FrameReady("c", 0, 5))
    assert scheduler.discard("c") == FrameReady("c", 0, 5) and len(scheduler) == 0


def _detections(boxes: list[list[float]], scores: list[float]) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4), np.asarray(scores, np.float32),
        np.zeros((n, 5, 2), np.float32), ("a", "b", "c", "d", "e"),
    )  # fmt: skip


def test_face_filter_threshold_region_and_masks() -> None:
    # Faces centred at x = 10%, 50% and 90% of a 1000x500 frame.
    faces = _detections([[80, 240, 120, 260], [480, 240, 520, 260], [880, 240, 920, 260]], [0.9, 0.8, 0.4])
    assert len(FaceFilter(0.5).apply(faces, 1000, 500)) == 2
    right_half = [(0.3, 0.0), (1.0, 0.0), (1.0, 1.0), (0.3, 1.0)]
    kept = FaceFilter(0.0, region=right_half).apply(faces, 1000, 500)
    assert kept.boxes[:, 0].tolist() == [480, 880]
    mask = [(0.8, 0.4), (1.0, 0.4), (1.0, 0.6), (0.8, 0.6)]
    kept = FaceFilter(0.0, region=right_half, masks=[mask]).apply(faces, 1000, 500)
    assert kept.boxes[:, 0].tolist() == [480]


def test_points_in_a_concave_polygon() -> None:
    u_shape = [(0, 0), (0.3, 0), (0.3, 0.7), (0.7, 0.7), (0.7, 0), (1, 0), (1, 1), (0, 1)]
    points = np.asarray([[0.1, 0.1], [0.5, 0.3], [0.5, 0.9], [0.9, 0.1]], np.float32)
    assert points_in_polygon(points, u_shape).tolist() == [True, False, True, True]


def _camera(name: str, **fields: object) -> CameraConfig:
    return CameraConfig.model_validate({"name": name, "url": f"rtsp://{name}/s", **fields})


def test_reload_plan_touches_only_what_changed() -> None:
    capture = CaptureConfig()
    running: dict[str, tuple[CameraConfig, CameraSpec]] = {
        c.name: (c, camera_spec(c, capture))
        for c in [_camera("keep"), _camera("gone"), _camera("refps"), _camera("refilter"), _camera("off")]
    }
    new = [
        _camera("keep"), _camera("refps", detect_fps=2), _camera("refilter", threshold=0.8),
        _camera("off", enabled=False), _camera("added"),
    ]  # fmt: skip
    plan = plan_changes(running, new, capture)
    assert plan.add == ("added",)
    assert set(plan.remove) == {"gone", "off"}
    assert plan.restart == ("refps",)
    assert plan.refilter == ("refilter",)
    assert plan_changes(running, [c for c, _ in running.values()], capture).empty


def test_file_watcher_reports_a_settled_change_once(tmp_path: Path) -> None:
    path = tmp_path / "nvr.yml"
    path.write_text("a: 1\n")
    watcher = FileWatcher(path, settle=0.05)
    assert not watcher.changed()
    replacement = tmp_path / "new.yml"
    replacement.write_text("a: 2\n")
    os.replace(replacement, path)  # how editors save
    assert not watcher.changed()  # first sight: wait for it to settle
    time.sleep(0.1)
    assert watcher.changed()
    assert not watcher.changed()
    path.unlink()
    assert not watcher.changed()  # a missing file is waited out


def test_sd_notify_sends_datagrams_to_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(2)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = SystemdNotifier(address)
    assert notifier.watchdog_interval == 2.0
    notifier.ready("1/1 cameras streaming")
    notifier.watchdog()
    notifier.stopping()
    received = [server.recv(4096).decode() for _ in range(3)]
    assert received[0].split("\n")[:2] == ["READY=1", "STATUS=1/1 cameras streaming"]
    assert received[1:] == ["WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]
    server.close()
    notifier.watchdog()  # the socket went away: logged once, never raised
    notifier.close()
    assert not SystemdNotifier("").enabled


def test_metrics_text_format_and_http_endpoints() -> None:
    family = MetricFamily("camera_input_fps", "gauge", "frames per second").add(12.5, camera='a"b')
    assert render([family]) == (
        "# HELP nvr_camera_input_fps frames per second\n"
        "# TYPE nvr_camera_input_fps gauge\n"
        'nvr_camera_input_fps{camera="a\\"b"} 12.5\n'
    )
    healthy = [True]
    server = MetricsServer(
        "127.0.0.1", 0, lambda: [family], lambda: (healthy[0], {"cameras_down": []})
    )
    server.start()
    try:
        base = f"http://127.0.0.1:{server.address[1]}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert 'nvr_camera_input_fps{camera="a\\"b"} 12.5' in response.read().decode()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok", "cameras_down": []}
        healthy[0] = False
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert info.value.code == 503
    finally:
        server.stop()


def test_logs_are_json_off_a_terminal_and_never_show_credentials() -> None:
    stream = io.StringIO()
    configure_logging("info", "auto", stream)
    log = structlog.get_logger("test")
    log.info("camera started", url="rtsp://admin:hunter2@cam/s", password="hunter3")
    log.debug("per-frame noise")
    import logging

    logging.getLogger("paho").warning("connect failed for mqtt://nvr:hunter4@broker:1883")
    try:
        raise ValueError("cannot open rtsp://admin:hunter5@cam/s")
    except ValueError:
        log.exception("capture failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines][:2] == ["camera started", "connect failed for mqtt://***@broker:1883"]
    assert lines[0]["url"] == "rtsp://***@cam/s" and lines[0]["password"] == "***"
    assert len(lines) == 3 and lines[0]["level"] == "info" and "timestamp" in lines[0]
    text = stream.getvalue()
    assert "hunter" not in text
    assert "Traceback" in lines[2]["exception"]
