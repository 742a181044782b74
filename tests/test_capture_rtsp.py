"""Capture against a real GStreamer RTSP server: frames, timing of samples, reconnects, stalls, garbage."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import av
import numpy as np
import pytest

from nvr.capture import Backoff, CameraSpec, CaptureState
from nvr.capture.spec import Transport
from nvr.contracts.frameslots import RingLayout
from nvr.contracts.geometry import Letterbox
from nvr.contracts.imaging import letterbox_into

if TYPE_CHECKING:  # the fixture modules are registered as plugins below, not imported
    from capture_util import Camera
    from rtsp import RtspServer

CLIP = "video/hamilton_clip.mp4"  # 640x360 H.264, 29.97 fps, 275 frames
CLIP_FRAMES = 275
pytest_plugins = ("capture_util", "rtsp")  # fixtures: instance, start_camera, rtsp_server

StartCamera = Callable[..., "Camera"]


@pytest.fixture
def clip(asset: Callable[[str], Path]) -> Path:
    return asset(CLIP)


def decoded_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    """The clip's frames at `indices`, letterboxed by the same resizer the decoder uses."""
    out: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in indices:
                model_input = np.empty((640, 640, 3), np.uint8)
                letterbox_into(frame, model_input)
                out[i] = model_input
    return out


def test_sampled_frames_match_the_stream(
    rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path
) -> None:
    server = rtsp_server(clip, loop=False)
    server.start()
    spec = CameraSpec("hamilton", server.url, detect_fps=5, read_timeout=3, backoff=Backoff(0.2, 1.0))
    layout = RingLayout(n_slots=12, snapshot_width=320, snapshot_height=320)
    cam = start_camera(spec, layout, keep_pixels=True)
    # The server plays the clip once, then the decoder reconnects and it plays again.
    cam.wait_for(lambda: cam.last_index >= CLIP_FRAMES, 40, "the second pass of the clip")
    stats = cam.process.stats()
    assert stats.frames_skipped == 0 and stats.decode_errors == 0 and stats.reconnects >= 1
    assert (stats.width, stats.height) == (640, 360)

    first_pass = [r for r in cam.received if r.frame_index < CLIP_FRAMES]
    # 5 fps out of 29.97 fps: every 6th frame (6 frames = 0.2002 s), all 275 frames decoded, none lost.
    assert [r.frame_index for r in first_pass] == list(range(0, CLIP_FRAMES, 6))
    pts = np.array([r.pts for r in cam.received])
    assert np.all(np.diff(pts) > 0), "pts must increase, across the reconnect too"
    np.testing.assert_allclose(np.diff(pts[: len(first_pass)]), 6 / 29.97, atol=2e-3)
    assert all(np.diff([r.wall_time for r in cam.received]) >= 0)
    assert all(r.intact for r in cam.received)

    for r in cam.received:
        assert r.model_letterbox == Letterbox(640, 360, 640, 640, 640, 360)
        assert r.snapshot_letterbox == Letterbox(640, 360, 320, 320, 320, 180)
    expected = decoded_frames(clip, {r.frame_index for r in first_pass})
    for r in first_pass:
        assert r.model_input is not None
        assert not r.model_input[360:].any(), "padding below the image must be zero"
        diff = np.abs(r.model_input.astype(np.int16) - expected[r.frame_index].astype(np.int16))
        assert diff.mean() < 0.5 and diff.max() <= 8, f"frame {r.frame_index} differs from the file"


def test_udp_transport(rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path) -> None:
    server = rtsp_server(clip)
    server.start()
    cam = start_camera(CameraSpec("udp", server.url, detect_fps=10, transport="udp", read_timeout=3))
    cam.wait_for(lambda: len(cam.received) >= 10, 20, "10 frames over RTP/UDP")
    assert cam.process.stats().state == CaptureState.STREAMING


def test_frames_flow_again_within_the_backoff_cap_after_a_server_restart(
    rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path
) -> None:
    backoff = Backoff(initial=0.2, cap=1.5, jitter=0.25)
    server = rtsp_server(clip)
    server.start()
    cam = start_camera(CameraSpec("restart", server.url, detect_fps=5, read_timeout=3, backoff=backoff))
    cam.wait_for(lambda: len(cam.received) >= 3, 20, "first frames")

    server.stop()
    cam.wait_for(lambda: cam.process.stats().state == CaptureState.RECONNECTING, 10, "the loss to be noticed")
    cam.poll(4.0)  # down long enough for the backoff to reach its cap
    assert cam.process.stats().reconnects >= 3
    before = cam.last_index  # everything decoded before the loss has been consumed by now

    server.start()  # same port
    back_up = time.time()  # wall clock, like the decoder's frame times
    cam.wait_for(lambda: cam.last_index > before, 20, "frames after the restart")
    # When the decoder wrote the frame, not when this (possibly descheduled) process got round to it.
    first = next(r for r in cam.received if r.frame_index > before)
    took = first.wall_time - back_up
    assert took <= backoff.cap + 2.0, f"frames flowed again {took:.2f} s after the server came back"
    assert cam.process.is_alive()


def test_a_stalled_stream_is_noticed_and_recovers(
    rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path
) -> None:
    server = rtsp_server(clip)
    server.start()
    spec = CameraSpec(
        "stall", server.url, detect_fps=5, open_timeout=2, read_timeout=1.5, backoff=Backoff(0.2, 1.0)
    )
    cam = start_camera(spec)
    cam.wait_for(lambda: len(cam.received) >= 3, 20, "first frames")
    stalled_at = time.monotonic()  # before the command: the server stalls once it reads it, never earlier
    server.command("stall")  # the connection stays open, media stops
    noticed = cam.wait_for(
        lambda: cam.process.stats().state == CaptureState.RECONNECTING, 15, "the read timeout to fire"
    )
    assert noticed - stalled_at >= spec.read_timeout - 0.5  # it was the read timeout, not a disconnect
    before = cam.last_index
    server.command("resume")
    cam.wait_for(lambda: cam.last_index > before, 20, "frames after the stall")
    assert cam.process.stats().state == CaptureState.STREAMING


def test_corrupt_stream_data_is_survived(
    rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path
) -> None:
    server = rtsp_server(clip)
    server.start()
    spec = CameraSpec("corrupt", server.url, detect_fps=10, read_timeout=3, backoff=Backoff(0.2, 1.0))
    cam = start_camera(spec)
    cam.wait_for(lambda: len(cam.received) >= 3, 20, "first frames")
    server.command("corrupt 90")  # three seconds of garbled frames
    cam.poll(3.5)
    after_garbage = cam.last_index
    cam.wait_for(lambda: cam.last_index > after_garbage + 30, 20, "clean frames after the garbage")
    stats = cam.process.stats()
    assert stats.decode_errors > 0, "the garbage reached the decoder and was counted"
    assert cam.process.is_alive() and stats.state == CaptureState.STREAMING


def test_h265_stream(
    rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path, tmp_path: Path
) -> None:
    hevc = tmp_path / "hevc.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(clip), "-frames:v", "60", "-c:v", "libx265",
         "-preset", "ultrafast", "-x265-params", "log-level=error", "-tag:v", "hvc1", "-an", str(hevc)],
        check=True, timeout=120,
    )  # fmt: skip
    server = rtsp_server(hevc, codec="h265")
    server.start()
    cam = start_camera(CameraSpec("hevc", server.url, detect_fps=10, read_timeout=3), keep_pixels=True)
    cam.wait_for(lambda: len(cam.received) >= 8, 30, "8 frames of H.265")
    first_pass = [r for r in cam.received if r.frame_index < 60]
    assert [r.frame_index for r in first_pass][:8] == list(range(0, 24, 3))  # 10 of 29.97 fps
    expected = decoded_frames(hevc, {r.frame_index for r in first_pass})
    for r in first_pass:
        assert r.model_input is not None and r.model_letterbox == Letterbox(640, 360, 640, 640, 640, 360)
        # The default 1280x720 snapshot keeps a 640x360 source at its own size: never blown up.
        assert r.snapshot_letterbox == Letterbox(640, 360, 1280, 720, 640, 360)
        diff = np.abs(r.model_input.astype(np.int16) - expected[r.frame_index].astype(np.int16))
        assert diff.mean() < 0.5 and diff.max() <= 8, f"frame {r.frame_index} differs from the file"


def test_stop_is_clean_while_ffmpeg_blocks_on_a_silent_stream(
    rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path
) -> None:
    server = rtsp_server(clip)
    server.start()
    cam = start_camera(CameraSpec("blocked", server.url, open_timeout=30, read_timeout=30))
    cam.wait_for(lambda: len(cam.received) >= 2, 20, "first frames")
    server.command("stall")
    cam.poll(1.0)  # the decoder now waits inside FFmpeg's read, for up to 30 s
    assert cam.process.stats().state == CaptureState.STREAMING
    # SIGTERM, then SIGKILL after 5 s: exit code 0 means it left on its own, well before its read timeout.
    assert cam.process.stop(timeout=5.0) == 0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_silent_camera_is_noticed_within_the_read_timeout(
    transport: Transport, rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path
) -> None:
    """Connected but sending nothing for 12 s with read_timeout 5: noticed within read_timeout + 2 s."""
    server = rtsp_server(clip)
    server.start()
    spec = CameraSpec(
        "silent", server.url, detect_fps=5, read_timeout=5, backoff=Backoff(0.5, 1.0), transport=transport
    )
    cam = start_camera(spec)
    cam.wait_for(lambda: len(cam.received) >= 3, 20, "first frames")
    last_frame = cam.process.stats().last_frame_time
    server.command("stall")  # the connection stays open, media stops (for 12 s)
    stalled_at = time.time()
    cam.wait_for(
        lambda: cam.process.stats().state == CaptureState.RECONNECTING, 12, "the read timeout to fire"
    )
    noticed = time.time()
    # Measured from the last frame the decoder got (the server may send a few after reading the command).
    silent_for = noticed - max(last_frame, cam.process.stats().last_frame_time)
    print(f"silent camera noticed after {silent_for:.2f} s (read_timeout {spec.read_timeout:g} s)")
    assert silent_for <= spec.read_timeout + 2.0
    assert noticed - stalled_at >= spec.read_timeout - 1.0  # the read timeout, not a disconnect
    server.command("resume")


def test_a_camera_silent_from_its_connection_is_noticed_within_the_read_timeout(
    rtsp_server: type[RtspServer], start_camera: StartCamera, clip: Path
) -> None:
    """The server answers the RTSP handshake but sends no media (a reconnect to a camera gone silent):
    noticed within read_timeout + 2 s of connecting, not after the (longer) open_timeout."""
    server = rtsp_server(clip)
    server.start()
    server.command("stall")
    spec = CameraSpec("mute", server.url, open_timeout=10, read_timeout=5, backoff=Backoff(30, 30))
    cam = start_camera(spec)
    connecting = cam.wait_for(lambda: cam.process.stats().state == CaptureState.CONNECTING, 20, "connecting")
    noticed = cam.wait_for(
        lambda: cam.process.stats().state == CaptureState.RECONNECTING, 15, "the read timeout to fire"
    )
    print(f"camera silent from its connection noticed after {noticed - connecting:.2f} s")
    assert noticed - connecting <= spec.read_timeout + 2.0
    assert cam.process.stats().frames_decoded == 0
