"""A stand-in decoder for tests/test_capture_feed.py: announces frames on its pipe as fast as it can."""

from __future__ import annotations

import multiprocessing.connection

from nvr.capture.feed import FrameNotifier


def announce_forever(end: multiprocessing.connection.Connection, slots: int) -> None:
    notify = FrameNotifier(end)
    index = 0
    while True:
        notify(index % slots, index)
        index += 1
