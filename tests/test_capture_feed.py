"""Decoders announce frames on pipes of their own (nvr/capture/feed.py). A decoder killed at any instant
must never stop another camera's frames or those of the decoder started after it: with one
multiprocessing.Queue shared by every decoder, a kill while the victim held the queue's cross-process
write lock stopped every camera for good (one kill in about seven, in a loop like the one below)."""

from __future__ import annotations

import multiprocessing.context
import os
import queue
import random
import signal
import time

import pytest
from feed_writer import announce_forever

from nvr.capture import FrameFeed, capture_context
from nvr.capture.feed import FrameNotifier
from nvr.contracts.frameslots import FrameReady


def start_writer(feed: FrameFeed, camera: str) -> multiprocessing.context.SpawnProcess:
    end = feed.connect(camera)
    process = capture_context().Process(target=announce_forever, args=(end, 4), daemon=True)
    process.start()
    end.close()
    return process


def next_from(feed: FrameFeed, camera: str, timeout: float = 10.0) -> FrameReady:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ready = feed.get(timeout=0.1)
        except queue.Empty:
            continue
        if ready.camera == camera:
            return ready
    pytest.fail(f"no frame from {camera!r} within {timeout} s")


def drain(feed: FrameFeed) -> None:
    while True:
        try:
            feed.get(block=False)
        except queue.Empty:
            return


def test_a_decoder_killed_at_any_instant_stops_nobody() -> None:
    feed = FrameFeed()
    steady = start_writer(feed, "steady")
    rng = random.Random(7)
    try:
        next_from(feed, "steady")
        for _ in range(25):
            victim = start_writer(feed, "victim")
            next_from(feed, "victim")
            time.sleep(rng.uniform(0, 0.03))  # anywhere in its announcing loop
            assert victim.pid is not None
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(10)
            drain(feed)  # what it announced before dying
            next_from(feed, "steady")  # the other camera carries on
        successor = start_writer(feed, "victim")
        ready = next_from(feed, "victim")  # and so does the camera's next decoder
        assert 0 <= ready.slot < 4
        successor.kill()
        successor.join(10)
        drain(feed)
        assert feed.decoders == 1, "the pipes of killed decoders are closed once read to the end"
    finally:
        steady.kill()
        steady.join(10)
        feed.close()


def test_notices_arrive_in_order_with_their_camera_and_get_times_out() -> None:
    feed = FrameFeed()
    with pytest.raises(queue.Empty):
        feed.get(block=False)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        feed.get(timeout=0.3)
    assert time.monotonic() - started >= 0.29
    end = feed.connect("door")
    notify = FrameNotifier(end)
    for index in range(1000):  # more than one read's worth
        notify(index % 3, index)
    got = [feed.get(timeout=5) for _ in range(1000)]
    assert got == [FrameReady("door", index % 3, index) for index in range(1000)]
    end.close()  # the writer is gone: its pipe is dropped
    with pytest.raises(queue.Empty):
        feed.get(timeout=0.1)
    assert feed.decoders == 0
    feed.close()
    with pytest.raises(ValueError, match="closed"):
        feed.get(timeout=0.1)
    with pytest.raises(ValueError, match="closed"):
        feed.connect("door")
