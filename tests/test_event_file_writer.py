"""The no-broker event file is written on a thread of its own: the detection thread never waits for the
disk, a clean shutdown loses nothing, and a disk that stalls for long costs counted, logged drops instead
of memory."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from mqtt_child import synthetic_event
from structlog.testing import capture_logs

import nvr.events.linefile as linefile
from nvr.events.config import EventFileConfig
from nvr.events.sink import JsonLinesSink, read_event_lines

BOUND = 30.0  # seconds: a behavioural bound for "returned while the write stays stalled", not a speed


class StalledDisk:
    """Stands in for the writer's file writes: the first write blocks until `release()`."""

    def __init__(self, sink: JsonLinesSink) -> None:
        self._file = sink._file
        self._real = self._file._write_batch
        self.entered = threading.Event()
        self._release = threading.Event()
        self._file._write_batch = self._stalled  # type: ignore[method-assign]

    def _stalled(self, lines: Sequence[bytes]) -> None:
        self.entered.set()
        self._release.wait()
        self._real(lines)

    def release(self) -> None:
        self._release.set()


def frame_times(count: int) -> list[float]:
    return [synthetic_event("cam", k).face.frame_time for k in range(count)]


def publish_on_a_detection_thread(sink: JsonLinesSink, first: int, count: int) -> None:
    """Publish events from a thread of their own and require it to finish within BOUND: a publish that
    waited for the stalled write would never return."""

    def detect() -> None:
        for k in range(first, first + count):
            sink.publish_event(synthetic_event("cam", k))

    thread = threading.Thread(target=detect)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "publishing waited for the stalled disk"


def test_the_detection_thread_never_waits_for_a_stalled_write(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(EventFileConfig(path=path))
    disk = StalledDisk(sink)
    with capture_logs() as logs:
        sink.publish_event(synthetic_event("cam", 0))
        assert disk.entered.wait(BOUND)  # the writer thread is inside the write, which does not return
        publish_on_a_detection_thread(sink, 1, 200)
        assert disk.entered.is_set() and sink.events_written == 0
        assert not [e for e in logs if e["event"].startswith("face ")], "logged before it was in the file"
        disk.release()
        sink.close()  # a clean shutdown writes everything queued
    events = read_event_lines(path)
    assert [e["frame_time"] for e in events] == frame_times(201)
    assert sink.events_written == 201 and sink.lines_dropped == 0
    logged = [e["event_id"] for e in logs if e["event"].startswith("face ")]
    assert logged == [e["id"] for e in events]


def test_a_long_stall_drops_lines_counted_and_logged_memory_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line_size = len(synthetic_event("cam", 0).to_json()) + 1
    monkeypatch.setattr(linefile, "MAX_PENDING_BYTES", 10 * line_size + line_size // 2)  # ten lines
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(EventFileConfig(path=path))
    disk = StalledDisk(sink)
    with capture_logs() as logs:
        sink.publish_event(synthetic_event("cam", 0))
        assert disk.entered.wait(BOUND)
        publish_on_a_detection_thread(sink, 1, 50)
        assert sink.lines_dropped == 40 and sink._file._pending_bytes <= linefile.MAX_PENDING_BYTES
        disk.release()
        sink.close()
    events = read_event_lines(path)
    # The line being written, then the ten that fitted; the newest were dropped, the file keeps its order.
    assert [e["frame_time"] for e in events] == frame_times(11)
    (warning,) = [e for e in logs if e["event"] == "event file lines dropped"]  # once per 10 s, not per line
    assert warning["log_level"] == "warning" and warning["dropped_since_start"] == 1
    assert sink.events_written == 11
