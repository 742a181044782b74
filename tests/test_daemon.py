"""`nvr run` as a subprocess with local video files as cameras and no broker: events, sd_notify, metrics,
reload by SIGHUP and by file change (an invalid file keeps the old configuration), clean shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT_ROOT, asset_path
from nvr_daemon import NvrDaemon, child_commands, child_pids, is_resource_tracker, outliving

from nvr.contracts.frameslots import segments
from nvr.daemon.instance_lock import InstanceLock, lock_path
from nvr.errors import ConfigError, ExitCode
from nvr.events.sink import read_event_lines


def base_config(tmp_path: Path, instance: str, cameras: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "instance": instance,
        "state_dir": str(tmp_path / "state"),
        "cameras": cameras,
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {"backend": "onnx", "model": str(asset_path("models/scrfd/det_2.5g.onnx"))},
        "events": {"tracker": {"end_after": 1.0}},
        "metrics": {"port": 0},
    }


def video_camera(name: str, fps: float = 3) -> dict[str, Any]:
    return {"name": name, "url": f"file://{asset_path('video/hamilton_clip.mp4')}", "detect_fps": fps}


def metrics_text(daemon: NvrDaemon) -> str:
    line = daemon.wait_for_event("metrics endpoint listening")
    with urllib.request.urlopen(line["url"], timeout=5) as response:
        return str(response.read().decode())


def test_run_reload_and_shutdown(tmp_path: Path) -> None:
    instance = f"t{uuid.uuid4().hex[:8]}"
    config = base_config(tmp_path, instance, [video_camera("hall")])
    daemon = NvrDaemon(tmp_path, config, notify=True)
    try:
        daemon.wait_for_event("nvr running")
        assert daemon.notify is not None
        # Faces from the file camera become events in the log and in the JSON-lines file.
        daemon.wait_for_log(lambda line: str(line.get("event", "")).startswith("face new"), 60, "face new")
        events = read_event_lines(tmp_path / "state" / "events.jsonl")
        assert events and events[0]["type"] == "new" and events[0]["camera"] == "hall"
        # Its snapshot is a file in the state dir, named in the line (written off the detection thread).
        snapshot = Path(events[0]["snapshot_path"])
        assert events[0]["snapshot"]
        assert snapshot == tmp_path / "state" / "snapshots" / f"{events[0]['id']}.jpg"
        for _ in range(100):
            if snapshot.is_file():
                break
            time.sleep(0.05)
        assert snapshot.read_bytes()[:2] == b"\xff\xd8"  # a JPEG
        fields = daemon.notify.fields()
        assert "READY=1" in fields and any(f.startswith("STATUS=") for f in fields)
        notify = daemon.notify
        daemon.wait_for_log(lambda _line: "WATCHDOG=1" in notify.fields(), 10, "WATCHDOG=1")
        text = metrics_text(daemon)
        assert 'nvr_camera_up{camera="hall"} 1' in text
        assert re.search(r"^nvr_inference_frames_total [1-9]", text, re.MULTILINE)
        assert re.search(r"^nvr_event_file_lines_dropped_total 0", text, re.MULTILINE)  # no broker: the file
        assert segments(instance), "the camera's ring should be in /dev/shm while running"

        # SIGHUP with a second camera: only that camera starts.
        config["cameras"].append(video_camera("yard"))
        daemon.write_config(config)
        daemon.signal(signal.SIGHUP)
        reloaded = daemon.wait_for_event("configuration reloaded")
        assert reloaded["changes"] == "added yard"
        daemon.wait_for_log(
            lambda line: line.get("event") == "face new" and line.get("camera") == "yard",
            60, "a face on the new camera",
        )  # fmt: skip

        # An invalid file: logged with file, line and field; the daemon keeps running the old cameras.
        bad = dict(config, cameras=[*config["cameras"], {"name": "hall", "url": "rtsp://x/s"}])
        daemon.write_config(bad)
        daemon.signal(signal.SIGHUP)
        error = daemon.wait_for_event("configuration not reloaded")
        assert re.search(r"nvr\.yml:\d+: cameras\[2\]\.name: duplicate camera name 'hall'", error["problem"])
        assert daemon.proc.poll() is None
        assert 'nvr_camera_up{camera="yard"} 1' in metrics_text(daemon)

        # Saving the file (no signal) removes a camera; the other one keeps running.
        config["cameras"] = [video_camera("yard")]
        daemon.write_config(config)
        reloaded = daemon.wait_for_log(
            lambda line: line.get("event") == "configuration reloaded" and line["reason"] == "file changed",
            15, "reload on file change",
        )  # fmt: skip
        assert reloaded["changes"] == "removed hall"
        assert 'camera="hall"' not in metrics_text(daemon)

        # A burst of signals (a careless script, systemd's reload plus ours): each lands somewhere in the
        # control loop, some while it waits or clears its wake-up flag. A handler that took that flag's lock
        # (threading.Event) would block its own thread there, and SIGTERM would then never be acted on.
        for _ in range(400):
            daemon.signal(signal.SIGHUP)
            time.sleep(0.001)
        children = child_commands(daemon.proc.pid)
        assert children, "the decoder process should be a child of the daemon"
        code, seconds = daemon.stop()
        assert code == ExitCode.OK and seconds < 10
        assert "STOPPING=1" in daemon.notify.fields()
        assert not segments(instance), "shared memory left behind"
        assert not outliving(children), "orphaned child processes"
        assert daemon.wait_for_event("stopped")
        messages = [str(line.get("event")) for line in daemon.logs() if line.get("reason") != "SIGHUP"]
        # No per-frame lines at INFO: state changes and face events only (and the burst's reloads).
        assert len(messages) < 200, messages[-20:]
        assert all(line.get("level") in ("info", "warning", "error", "raw") for line in daemon.logs())
        assert not any(line.get("level") == "raw" for line in daemon.logs()), "non-JSON output"
    finally:
        daemon.close()


def test_sigint_and_missing_model(tmp_path: Path) -> None:
    config = base_config(tmp_path, f"t{uuid.uuid4().hex[:8]}", [video_camera("hall")])
    config["detector"]["model"] = str(tmp_path / "absent.onnx")
    daemon = NvrDaemon(tmp_path, config)
    try:
        assert daemon.proc.wait(60) == ExitCode.CONFIG
        daemon.wait_for_log(
            lambda line: (
                "detector.model: " in str(line.get("event"))
                and "no such model file" in str(line.get("event"))
            ),
            5,
            "model error",
        )
    finally:
        daemon.close()
    config["detector"]["model"] = str(asset_path("models/scrfd/det_2.5g.onnx"))
    daemon = NvrDaemon(tmp_path / "second", config)
    try:
        daemon.wait_for_event("nvr running")
        daemon.signal(signal.SIGINT)
        assert daemon.proc.wait(10) == ExitCode.OK
        assert json.dumps(daemon.wait_for_event("stopping", reason="SIGINT"))
    finally:
        daemon.close()


def test_a_second_daemon_with_the_same_instance_name_says_which_process_has_it(tmp_path: Path) -> None:
    instance = f"t{uuid.uuid4().hex[:8]}"
    first = NvrDaemon(tmp_path / "first", base_config(tmp_path / "first", instance, [video_camera("hall")]))
    try:
        first.wait_for_event("nvr running", 60)
        second_dir = tmp_path / "second"  # another state dir: the instance name alone decides
        second = NvrDaemon(second_dir, base_config(second_dir, instance, [video_camera("yard")]))
        try:
            assert second.proc.wait(60) == ExitCode.CONFIG
            second.stop_reading()
            assert second.raw == [
                f"nvr: error: another nvr with the instance name {instance!r} is running (pid "
                f"{first.proc.pid}); stop it, or give this one a different `instance:` in its configuration"
            ]
        finally:
            second.close()
        assert first.proc.poll() is None and segments(instance), "the first daemon is untouched"
        assert lock_path(instance).read_text() == f"{first.proc.pid}\n"
        code, _ = first.stop()
        assert code == ExitCode.OK and not lock_path(instance).exists()
    finally:
        first.close()


def test_the_instance_lock_is_released_with_its_process(tmp_path: Path) -> None:
    instance = f"t{uuid.uuid4().hex[:8]}"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom nvr.daemon.instance_lock import InstanceLock\n"
         f"InstanceLock({instance!r}).acquire()\nprint('held', flush=True)\ntime.sleep(60)"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigError, match=rf"\(pid {holder.pid}\)"):
            InstanceLock(instance).acquire()
    finally:
        holder.kill()  # no clean-up runs: the kernel drops the lock with the process
        holder.wait(10)
    with InstanceLock(instance) as lock:
        assert lock.path.read_text() == f"{os.getpid()}\n"
    assert not lock_path(instance).exists()


def test_a_decoder_that_dies_is_restarted(tmp_path: Path) -> None:
    config = base_config(tmp_path, f"t{uuid.uuid4().hex[:8]}", [video_camera("hall")])
    daemon = NvrDaemon(tmp_path, config)
    try:
        daemon.wait_for_event("capture streaming", 60)
        decoders = [pid for pid in child_pids(daemon.proc.pid) if not is_resource_tracker(pid)]
        assert len(decoders) == 1
        mark = daemon.mark()
        os.kill(decoders[0], signal.SIGKILL)
        daemon.wait_for_event("capture process died; restarting it", 10, since=mark, camera="hall")
        daemon.wait_for_event("capture streaming", 30, since=mark, camera="hall")
        code, _ = daemon.stop()
        assert code == ExitCode.OK
    finally:
        daemon.close()
