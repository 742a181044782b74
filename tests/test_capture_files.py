"""Capture from local files (looped demos, garbage input), back-pressure, and cleanup after kills."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from nvr.capture import Backoff, CameraSpec, CaptureState
from nvr.contracts.frameslots import RingLayout, remove_stale_segments, segment_name, segments

if TYPE_CHECKING:  # the fixture module is registered as a plugin below, not imported
    from capture_util import Camera

pytest_plugins = ("capture_util",)  # fixtures: instance, start_camera

StartCamera = Callable[..., "Camera"]
SMALL = RingLayout(n_slots=4, model_width=320, model_height=320, snapshot_width=0, snapshot_height=0)


def running(pid: int) -> bool:
    """True unless the process is gone or a zombie (nobody may reap an orphan in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from conftest import asset_path

    source = asset_path("video/hamilton_clip.mp4")
    tmp = tmp_path_factory.mktemp("clips")
    short = tmp / "short.mp4"  # one second, so looping shows within a test
    ffmpeg("-i", str(source), "-frames:v", "30", "-c:v", "libx264", "-preset", "ultrafast", "-an", str(short))
    faststart = tmp / "faststart.mp4"
    ffmpeg("-i", str(source), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data = faststart.read_bytes()
    truncated = tmp / "truncated_faststart.mp4"  # index complete, media cut at 20 %: plays, then breaks
    truncated.write_bytes(data[: len(data) // 5])
    no_index = tmp / "truncated_no_moov.mp4"  # the asset keeps its index at the end: unopenable
    no_index.write_bytes(source.read_bytes()[: len(data) // 2])
    garbage = tmp / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes())
    return {"short": short, "truncated": truncated, "no_index": no_index, "garbage": garbage}


def test_a_looped_file_plays_on_with_increasing_pts(
    start_camera: StartCamera, clips: dict[str, Path]
) -> None:
    cam = start_camera(CameraSpec("demo", f"file://{clips['short']}", detect_fps=10), SMALL)
    cam.wait_for(lambda: cam.process.stats().frames_decoded >= 75, 20, "two and a half passes over the file")
    cam.poll(0.2)
    stats = cam.process.stats()
    assert stats.state == CaptureState.STREAMING and stats.reconnects == 0
    pts = np.array([r.pts for r in cam.received])
    assert len(pts) >= 20 and np.all(np.diff(pts) > 0)
    np.testing.assert_allclose(np.diff(pts), 0.1, atol=0.04)  # 10 fps sampling, also across the loop point
    # A file plays at its own rate, like a camera, not as fast as it decodes.
    assert cam.received[-1].wall_time - cam.received[0].wall_time >= 0.7 * (pts[-1] - pts[0])


def test_garbage_and_truncated_files_are_survived(start_camera: StartCamera, clips: dict[str, Path]) -> None:
    backoff = Backoff(initial=0.1, cap=0.4)
    garbage = start_camera(CameraSpec("garbage", str(clips["garbage"]), backoff=backoff), SMALL)
    no_index = start_camera(CameraSpec("noindex", str(clips["no_index"]), backoff=backoff), SMALL)
    truncated = start_camera(CameraSpec("truncated", str(clips["truncated"]), detect_fps=10), SMALL)
    # The truncated file plays its first ~55 frames, breaks, and starts over: more frames than it holds.
    truncated.wait_for(lambda: truncated.process.stats().frames_decoded > 80, 30, "a second pass")
    truncated.poll(0.2)
    assert len(truncated.received) > 8
    for cam in (garbage, no_index):
        cam.poll(0.1)
        stats = cam.process.stats()
        assert cam.process.is_alive() and stats.state == CaptureState.RECONNECTING
        assert stats.reconnects >= 3 and stats.frames_decoded == 0 and not cam.received
    for cam in (garbage, no_index, truncated):
        assert cam.process.stop() == 0  # a clean exit on SIGTERM, whatever the input did


def test_a_slow_consumer_makes_the_producer_skip_not_wait(
    start_camera: StartCamera, clips: dict[str, Path]
) -> None:
    layout = RingLayout(n_slots=2, model_width=320, model_height=320, snapshot_width=0, snapshot_height=0)
    cam = start_camera(CameraSpec("slow", str(clips["short"]), detect_fps=30), layout, hold=0.4)
    cam.wait_for(lambda: cam.process.stats().frames_decoded >= 90, 30, "three seconds of video")
    stats = cam.process.stats()
    consumed = len(cam.received)
    assert stats.frames_skipped > 0
    assert stats.frames_sampled <= stats.frames_decoded
    # Had the producer waited for the consumer, it could not have decoded more than it handed over.
    assert stats.frames_decoded > 3 * (consumed + layout.n_slots)
    assert stats.frames_written <= consumed + layout.n_slots + 1
    assert all(r.intact for r in cam.received), "a held slot was rewritten under the consumer"


def test_a_killed_decoder_is_restarted_on_the_same_ring(
    start_camera: StartCamera, clips: dict[str, Path], instance: str
) -> None:
    cam = start_camera(CameraSpec("killed", str(clips["short"]), detect_fps=10), SMALL)
    cam.wait_for(lambda: len(cam.received) >= 3, 20, "first frames")
    ring = cam.process.ring
    pid = cam.process.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while cam.process.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not cam.process.is_alive()
    cam.poll(0.3)
    before = cam.last_index
    cam.process.start()  # same ring, same consumer mapping; frame indices carry on
    assert cam.process.ring is ring
    cam.wait_for(lambda: cam.last_index > before + 5, 20, "frames from the new decoder")
    assert [p.name for p in segments(instance)] == [segment_name(instance, "killed")]
    assert cam.process.stop() == 0
    assert segments(instance) == []


def test_a_killed_daemon_leaves_nothing_after_the_next_start(clips: dict[str, Path], instance: str) -> None:
    daemon = (
        "import sys, time\n"
        "from nvr.capture import CameraSpec, CaptureProcess, FrameFeed\n"
        "from nvr.contracts.frameslots import RingLayout\n"
        "if __name__ == '__main__':\n"
        f"    spec = CameraSpec('cam', {str(clips['short'])!r})\n"
        "    frames = FrameFeed()\n"
        f"    cam = CaptureProcess(spec, RingLayout(n_slots=2), frames, instance={instance!r})\n"
        "    cam.start()\n"
        "    while cam.stats().frames_decoded < 3: time.sleep(0.05)\n"
        "    print('decoder', cam.pid, flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", daemon], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = b""
    while not line.startswith(b"decoder "):  # the decoder's log lines share this stdout
        line = proc.stdout.readline()
        assert line, "the daemon process ended early"
    decoder_pid = int(line.split()[1])
    proc.kill()  # SIGKILL: no cleanup runs in the daemon
    proc.wait(10)
    proc.stdout.close()
    # The kernel tells the orphaned decoder (parent-death signal); it exits on its own.
    deadline = time.monotonic() + 10
    while running(decoder_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(decoder_pid), "the decoder outlived its daemon"
    assert [p.name for p in segments(instance)] == [segment_name(instance, "cam")]
    assert remove_stale_segments(instance) == [segment_name(instance, "cam")]
    assert segments(instance) == []


def test_logs_one_line_per_state_change_and_never_the_password(
    start_camera: StartCamera, capfd: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port nobody listens on: every attempt is refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"rtsp://admin:hunter2@127.0.0.1:{port}/live?channel=1&password=hunter2"
    cam = start_camera(CameraSpec("secret", url, backoff=Backoff(initial=0.1, cap=0.2)), SMALL)
    cam.wait_for(lambda: cam.process.stats().reconnects >= 5, 20, "five refused attempts")
    assert cam.process.stop() == 0
    out = capfd.readouterr().out  # the decoder process writes to the same stdout
    lines = [line for line in out.splitlines() if "camera=secret" in line]
    assert "hunter2" not in out
    assert any("rtsp://***@127.0.0.1" in line for line in lines)
    # connecting, lost (once, although every attempt fails the same way), stopped.
    assert [line.split("capture ")[1].split()[0] for line in lines] == ["connecting", "lost", "stopped"]
