"""The shared-memory frame ring: layout, seqlock reads, back-pressure, ownership and stale cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from nvr.contracts.frameslots import (
    SHM_DIR,
    FrameRing,
    RingLayout,
    remove_stale_segments,
    segment_name,
    segments,
)
from nvr.contracts.geometry import Letterbox

LAYOUT = RingLayout(n_slots=3, model_width=64, model_height=48, snapshot_width=32, snapshot_height=24)


pytest_plugins = ("capture_util",)  # fixture: instance (fails the test on leftover segments)


def write_frame(ring: FrameRing, frame_index: int, value: int) -> int | None:
    slot = ring.begin_write()
    if slot is None:
        return None
    lb = Letterbox.fit(640, 360, 64, 48)
    ring.model_input(slot)[:] = value
    ring.snapshot(slot)[:] = value
    ring.commit(
        slot, frame_index, pts=frame_index / 30, wall_time=1000.0 + frame_index,
        model_letterbox=lb, snapshot_letterbox=Letterbox.fit(640, 360, 32, 24),
    )  # fmt: skip
    return slot


def test_round_trip_between_owner_and_attached_reader(instance: str) -> None:
    with FrameRing.create(instance, "front door", LAYOUT) as owner:
        assert owner.path.parent == SHM_DIR and owner.path.name == segment_name(instance, "front door")
        assert " " not in owner.path.name and owner.path.stat().st_size == LAYOUT.total_bytes
        reader = FrameRing.attach(instance, "front door")
        assert reader.layout == LAYOUT
        assert reader.read(0) is None  # never written
        slot = write_frame(owner, 7, 200)
        assert slot == 0
        frame = reader.read(0)
        assert frame is not None
        assert (frame.frame_index, frame.pts, frame.wall_time) == (7, 7 / 30, 1007.0)
        assert frame.model_letterbox == Letterbox.fit(640, 360, 64, 48)
        assert frame.snapshot_letterbox == Letterbox.fit(640, 360, 32, 24)
        assert frame.model_input.shape == (48, 64, 3) and frame.snapshot.shape == (24, 32, 3)
        assert (frame.model_input == 200).all() and (frame.snapshot == 200).all()
        # Zero-copy: the reader's view sees the producer's next write to that memory.
        owner.model_input(0)[0, 0, 0] = 1
        assert frame.model_input[0, 0, 0] == 1
        assert reader.latest_frame_index == 7
        reader.close()
        assert owner.path.exists()  # an attached reader never unlinks
    assert not owner.path.exists()


def test_reader_sees_a_slot_being_written_as_unreadable(instance: str) -> None:
    with FrameRing.create(instance, "cam", LAYOUT) as ring:
        write_frame(ring, 0, 10)
        first = ring.read(0)
        assert first is not None and ring.is_intact(first)
        ring.release(0)
        for i in range(1, 3):
            write_frame(ring, i, 10)
            ring.release(i)
        slot = ring.begin_write()  # wraps around to slot 0
        assert slot == 0
        assert ring.read(0) is None  # odd sequence: mid-write
        assert not ring.is_intact(first)  # what `first` viewed is being overwritten
        ring.commit(
            0, 3, pts=0.1, wall_time=1.0,
            model_letterbox=Letterbox.fit(64, 48, 64, 48), snapshot_letterbox=None
        )
        again = ring.read(0)
        assert again is not None and again.frame_index == 3 and again.seq == first.seq + 2
        assert not ring.is_intact(first)


def test_producer_skips_while_the_consumer_holds_every_slot(instance: str) -> None:
    with FrameRing.create(instance, "cam", LAYOUT) as ring:
        assert [write_frame(ring, i, i) for i in range(3)] == [0, 1, 2]
        assert write_frame(ring, 3, 3) is None  # nothing released: skip, never overwrite or wait
        ring.release(0)
        assert write_frame(ring, 4, 4) == 0
        assert write_frame(ring, 5, 5) is None
        ring.release(4)  # releasing a newer frame frees every older one
        assert write_frame(ring, 6, 6) == 1
        assert write_frame(ring, 7, 7) == 2
        ring.release(2)  # an older release never takes back a newer one
        assert ring.released_frame_index == 4
        frames = [ring.read(s) for s in range(3)]
        assert [f.frame_index for f in frames if f is not None] == [4, 6, 7]


def test_aborted_write_leaves_no_frame(instance: str) -> None:
    with FrameRing.create(instance, "cam", LAYOUT) as ring:
        slot = ring.begin_write()
        assert slot is not None
        ring.abort_write(slot)
        assert ring.read(slot) is None
        assert ring.begin_write() == slot  # still free


def test_restarted_producer_continues_after_the_newest_frame(instance: str) -> None:
    with FrameRing.create(instance, "cam", LAYOUT) as ring:
        write_frame(ring, 0, 0)
        write_frame(ring, 1, 1)
        ring.release(1)
        killed_mid_write = ring.begin_write()  # a producer SIGKILLed here leaves slot 2 odd
        assert killed_mid_write == 2
        producer = FrameRing.attach(instance, "cam")
        assert producer.begin_write() == 2
        assert ring.read(2) is None  # still marked as being written, not "stable"
        producer.commit(
            2, 2, pts=0.0, wall_time=0.0,
            model_letterbox=Letterbox.fit(64, 48, 64, 48), snapshot_letterbox=None
        )
        frame = ring.read(2)
        assert frame is not None and frame.frame_index == 2
        producer.close()


def test_create_refuses_a_live_ring_and_attach_refuses_foreign_files(instance: str) -> None:
    with FrameRing.create(instance, "cam", LAYOUT):
        with pytest.raises(FileExistsError):
            FrameRing.create(instance, "cam", LAYOUT)
        assert remove_stale_segments(instance) == []  # its owner is alive
    with pytest.raises(FileNotFoundError):
        FrameRing.attach(instance, "cam")
    foreign = SHM_DIR / segment_name(instance, "junk")
    foreign.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match="not a frame ring"):
        FrameRing.attach(instance, "junk")
    assert remove_stale_segments(instance) == [foreign.name]


def test_segments_of_a_killed_owner_are_removed_at_start(instance: str) -> None:
    code = (
        "import os, sys, time\n"
        "from nvr.contracts.frameslots import FrameRing, RingLayout\n"
        f"FrameRing.create({instance!r}, 'cam', RingLayout(n_slots=2, model_width=8, model_height=8))\n"
        "print('created', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"created"
    assert remove_stale_segments(instance) == []  # owner alive
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    assert [p.name for p in segments(instance)] == [segment_name(instance, "cam")]
    assert remove_stale_segments(instance) == [segment_name(instance, "cam")]
    assert segments(instance) == []


def test_names_stay_apart_and_inside_the_prefix() -> None:
    assert segment_name("a", "b.c") != segment_name("a.b", "c")
    assert segment_name("x", "b") != segment_name("x-a", "b")
    assert segment_name("nvr", "cam/../etc") == "nvr-nvr.cam%2F%2E%2E%2Fetc.ring"
    assert segment_name("nvr", "Café") == "nvr-nvr.Caf%C3%A9.ring"
    with pytest.raises(ValueError):
        segment_name("nvr", "")


def test_layout_validation() -> None:
    with pytest.raises(ValueError):
        RingLayout(n_slots=1)
    with pytest.raises(ValueError):
        RingLayout(snapshot_width=10, snapshot_height=0)
    no_snapshot = RingLayout(snapshot_width=0, snapshot_height=0)
    assert no_snapshot.snapshot_bytes == 0
    assert RingLayout().slot_bytes % 4096 == 0
