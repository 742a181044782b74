"""The pure parts of capture: backoff, frame sampling, the stream clock, URL redaction, the spec."""

from __future__ import annotations

import itertools
import random

import pytest

from nvr.capture import Backoff, CameraSpec
from nvr.capture.decoder import FrameSampler, StreamClock
from nvr.capture.source import describe_error, local_path
from nvr.redact import redact_text, redact_url


def test_backoff_grows_to_its_cap_with_jitter_that_never_exceeds_it() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, factor=2.0, jitter=0.25)
    rng = random.Random(3)
    for attempt, base in enumerate([0.5, 1, 2, 4, 8, 16, 30, 30]):
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0.75 * base <= d <= base for d in delays)
        assert max(delays) - min(delays) > 0.1 * base  # jitter really spreads cameras apart
    assert backoff.delay(10_000, rng) <= 30.0  # no overflow for a camera down for months
    assert Backoff(jitter=0).delay(0, rng) == 0.5
    for bad in ({"initial": 0}, {"initial": 5, "cap": 1}, {"jitter": 1.0}, {"factor": 0.5}):
        with pytest.raises(ValueError):
            Backoff(**bad)


def test_sampler_picks_frames_at_the_detection_rate() -> None:
    sampler = FrameSampler(5)
    times = [i / 29.97 for i in range(300)]
    picked = [i for i, t in enumerate(times) if sampler.take(t)]
    assert picked == list(range(0, 300, 6))
    sampler = FrameSampler(8)  # not a divisor of the input rate: 8 a second on average, never more
    picked = [i for i, t in enumerate(times) if sampler.take(t)]
    assert len(picked) == pytest.approx(8 * times[-1], abs=1.5)
    assert all(b - a >= 3 for a, b in itertools.pairwise(picked))
    sampler = FrameSampler(60)  # faster than the input: every frame
    assert all(sampler.take(t) for t in times)


def test_sampler_restarts_after_a_gap_or_a_jump_back() -> None:
    sampler = FrameSampler(5)
    assert sampler.take(0.0) and not sampler.take(0.1) and sampler.take(0.2)
    assert sampler.take(10.0)  # a gap: take at once, then every 0.2 s from there
    assert not sampler.take(10.1) and sampler.take(10.2)
    assert sampler.take(3.0)  # time went back (a new stream): start over


def test_stream_clock_bridges_timestamp_jumps() -> None:
    clock = StreamClock()
    nominal = 1 / 30
    # RTSP: the first frame's pts predates the RTCP sync; the next restart near zero.
    times = [clock.advance(t, nominal) for t in (472.99, 0.033, 0.066)]
    assert times == pytest.approx([0, nominal, nominal + 0.033])
    clock.restart()  # reconnect: the new stream starts over at 0
    assert clock.advance(0.0, nominal) == pytest.approx(times[-1] + nominal)
    # A 5 s jump is no frame interval: bridged by the nominal one.
    assert clock.advance(5.0, nominal) == pytest.approx(times[-1] + 2 * nominal)


def test_redaction_masks_credentials_everywhere() -> None:
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/Streaming/101") == "rtsp://***@10.0.0.5:554/Streaming/101"
    assert redact_url("rtsp://cam.local/live") == "rtsp://cam.local/live"
    masked = redact_url("rtsp://10.0.0.9/cam/realmonitor?channel=1&user=admin&password=s3cret")
    assert "admin" not in masked and "s3cret" not in masked and "channel=1" in masked
    message = "HTTPUnauthorizedError: Server returned 401: 'rtsp://root:pa:ss@host/x?pwd=zz&id=1'"
    assert redact_text(message) == "HTTPUnauthorizedError: Server returned 401: 'rtsp://***@host/x?pwd=***&id=1'"
    assert "pa:ss" not in describe_error(OSError("failed: rtsp://u:pa:ss@h/"))
    assert redact_url("/videos/demo.mp4") == "/videos/demo.mp4"


def test_local_paths_and_spec_validation() -> None:
    assert str(local_path("file:///tmp/a%20b.mp4")) == "/tmp/a b.mp4"
    assert str(local_path("clips/demo.mp4")) == "clips/demo.mp4"
    assert local_path("rtsp://host/x") is None
    with pytest.raises(ValueError, match="detect_fps"):
        CameraSpec("cam", "rtsp://h/", detect_fps=0)
    with pytest.raises(ValueError, match="transport"):
        CameraSpec("cam", "rtsp://h/", transport="http")  # type: ignore[arg-type]
