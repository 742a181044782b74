"""Shared-memory frame slots: the one thing the capture processes and the inference stage share.

Each camera has a ring of N slots in one shared-memory segment, `/dev/shm/nvr-<instance>.<camera>.ring`.
A slot holds a small header (sequence counter, frame index, pts, wall time, source size, letterbox
geometry), the model input (H x W x 3 uint8 RGB, letterboxed: what a Hailo HEF takes as is) and a
snapshot of the same frame at a configurable size, letterboxed too, for the event stage's face crops.

Ownership. The daemon creates the ring (`FrameRing.create`) and unlinks it (`close(unlink=True)`); the
decoder process and consumers `attach`. The creator holds an exclusive `flock` on the segment for its
lifetime, so `remove_stale_segments` can tell a leftover of a killed run (lock free) from a live one.

Producer (one per ring, the decoder process)::

    slot = ring.begin_write()            # None: every slot still held by the consumer -> skip, count it
    letterbox_into(frame, ring.model_input(slot)); ...
    ring.commit(slot, frame_index, pts=..., wall_time=..., model_letterbox=..., snapshot_letterbox=...)
    notify(slot, frame_index)            # the decoder's own pipe (nvr/capture/feed.py)

Consumer (one per ring; the inference stage reads every camera's ring from one feed)::

    msg = feed.get()                     # FrameReady(camera, slot, frame_index), in arrival order
    ring = rings[msg.camera]
    frame = ring.read(msg.slot)          # zero-copy views + header; None if the slot was rewritten
    if frame is not None and frame.frame_index == msg.frame_index:
        run_model(frame.model_input)     # copy out or use in place
        ok = ring.is_intact(frame)       # False: the slot changed while we read it, discard the result
    ring.release(msg.frame_index)        # frees this slot and every older one

Back-pressure: the producer only rewrites a slot whose frame the consumer has released, so a slow
consumer makes the producer skip (it never blocks), and a camera never has more than N frames waiting.
Fairness between cameras is the consumer's business (the daemon keeps the newest frame per camera and
serves cameras round-robin: nvr/detection/pipeline.py). The sequence counter (odd while a slot is written)
is a second line of defence: a reader can always check that what it read was not being rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nvr.contracts.arrays import RgbImage
from nvr.contracts.geometry import Letterbox

SHM_DIR = Path("/dev/shm")
SEGMENT_PREFIX = "nvr-"
_MAGIC = 0x31474E4952525641  # arbitrary tag checked on attach
_LAYOUT_VERSION = 1
_PAGE = mmap.PAGESIZE

_RING_HEADER = np.dtype(
    [
        ("magic", "<u8"),
        ("version", "<u4"),
        ("n_slots", "<u4"),
        ("model_height", "<u4"),
        ("model_width", "<u4"),
        ("snapshot_height", "<u4"),
        ("snapshot_width", "<u4"),
        ("released", "<i8"),  # written by the consumer only: frames up to this index are done
        ("latest", "<i8"),  # written by the producer only: newest committed frame index
    ],
    align=True,
)
_SLOT_HEADER = np.dtype(
    [
        ("seq", "<i8"),  # even: stable; odd: being written; 0: never written
        ("frame_index", "<i8"),
        ("pts", "<f8"),
        ("wall_time", "<f8"),
        ("src_width", "<i4"),
        ("src_height", "<i4"),
        ("model_resized_width", "<i4"),
        ("model_resized_height", "<i4"),
        ("snapshot_resized_width", "<i4"),
        ("snapshot_resized_height", "<i4"),
    ],
    align=True,
)


class FrameReady(NamedTuple):
    """Notification from a producer: `slot` of `camera`'s ring now holds frame `frame_index`."""

    camera: str
    slot: int
    frame_index: int


@dataclass(frozen=True, slots=True)
class RingLayout:
    """Shape of a ring: slot count, model input size and snapshot size (0 x 0: no snapshot)."""

    n_slots: int = 4
    model_width: int = 640
    model_height: int = 640
    snapshot_width: int = 1280
    snapshot_height: int = 720

    def __post_init__(self) -> None:
        if self.n_slots < 2:
            raise ValueError(f"a frame ring needs at least 2 slots, got {self.n_slots}")
        if self.model_width <= 0 or self.model_height <= 0:
            raise ValueError(f"model input size must be positive, got {self.model_width}x{self.model_height}")
        if (
            self.snapshot_width < 0
            or self.snapshot_height < 0
            or (self.snapshot_width == 0) != (self.snapshot_height == 0)
        ):
            raise ValueError(f"bad snapshot size {self.snapshot_width}x{self.snapshot_height}")

    @property
    def model_bytes(self) -> int:
        return self.model_height * self.model_width * 3

    @property
    def snapshot_bytes(self) -> int:
        return self.snapshot_height * self.snapshot_width * 3

    @property
    def headers_bytes(self) -> int:
        return _round_up(_RING_HEADER.itemsize + self.n_slots * _SLOT_HEADER.itemsize, _PAGE)

    @property
    def slot_bytes(self) -> int:
        return _round_up(self.model_bytes, _PAGE) + _round_up(self.snapshot_bytes, _PAGE)

    @property
    def total_bytes(self) -> int:
        return self.headers_bytes + self.n_slots * self.slot_bytes


@dataclass(frozen=True, slots=True)
class SlotFrame:
    """A consistent read of one slot: header values plus zero-copy views of its arrays."""

    slot: int
    seq: int
    frame_index: int
    pts: float  # seconds, stream time (monotonic within a connection)
    wall_time: float  # time.time() when the frame was captured
    model_letterbox: Letterbox
    snapshot_letterbox: Letterbox | None
    model_input: RgbImage  # view into shared memory: valid while `FrameRing.is_intact` holds
    snapshot: RgbImage


def segment_name(instance: str, camera: str) -> str:
    return f"{SEGMENT_PREFIX}{_escape(instance)}.{_escape(camera)}.ring"


def segments(instance: str | None = None) -> list[Path]:
    """Our segments in /dev/shm: those of `instance`, or of every instance."""
    prefix = SEGMENT_PREFIX + (f"{_escape(instance)}." if instance is not None else "")
    try:
        return sorted(p for p in SHM_DIR.iterdir() if p.name.startswith(prefix) and p.name.endswith(".ring"))
    except FileNotFoundError:
        return []


def remove_stale_segments(instance: str) -> list[str]:
    """Unlink `instance`'s segments left by a killed run (no live owner holds their lock); names removed."""
    removed = []
    for path in segments(instance):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live process owns it
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path.name)
    return removed


class FrameRing:
    """One camera's ring of frame slots in shared memory. Use `create` (owner) or `attach`."""

    def __init__(self, path: Path, fd: int, mm: mmap.mmap, layout: RingLayout, owner: bool) -> None:
        self.path = path
        self.layout = layout
        self._fd = fd
        self._mm: mmap.mmap | None = mm
        self._owner = owner
        header = np.ndarray((1,), _RING_HEADER, buffer=mm, offset=0)
        self._released = header["released"]
        self._latest = header["latest"]
        slots = np.ndarray((layout.n_slots,), _SLOT_HEADER, buffer=mm, offset=_RING_HEADER.itemsize)
        self._slots = slots
        self._seq = slots["seq"]
        self._frame_index = slots["frame_index"]
        self._model_inputs: list[RgbImage] = []
        self._snapshots: list[RgbImage] = []
        for i in range(layout.n_slots):
            base = layout.headers_bytes + i * layout.slot_bytes
            model_shape = (layout.model_height, layout.model_width, 3)
            self._model_inputs.append(np.ndarray(model_shape, np.uint8, buffer=mm, offset=base))
            snap_shape = (layout.snapshot_height, layout.snapshot_width, 3)
            snap_offset = base + _round_up(layout.model_bytes, _PAGE)
            self._snapshots.append(np.ndarray(snap_shape, np.uint8, buffer=mm, offset=snap_offset))
        self._next_slot = 0

    @classmethod
    def create(cls, instance: str, camera: str, layout: RingLayout) -> FrameRing:
        """Create and own a zeroed ring; FileExistsError if a live process already owns one by that name."""
        path = SHM_DIR / segment_name(instance, camera)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise FileExistsError(
                f"{path}: camera {camera!r} of instance {instance!r} already has a frame ring "
                "(another nvr running with the same instance name?)"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, layout.total_bytes)  # tmpfs pages read as zero until written
            mm = mmap.mmap(fd, layout.total_bytes)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        header = np.ndarray((1,), _RING_HEADER, buffer=mm, offset=0)
        header[0] = (
            _MAGIC, _LAYOUT_VERSION, layout.n_slots, layout.model_height, layout.model_width,
            layout.snapshot_height, layout.snapshot_width, -1, -1,
        )  # fmt: skip
        del header
        ring = cls(path, fd, mm, layout, owner=True)
        ring._frame_index[:] = -1
        return ring

    @classmethod
    def attach(cls, instance: str, camera: str) -> FrameRing:
        """Map an existing ring; FileNotFoundError if there is none, ValueError if it is not ours."""
        path = SHM_DIR / segment_name(instance, camera)
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size < _RING_HEADER.itemsize:
                raise ValueError(f"{path}: not a frame ring (too small)")
            mm = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        head = np.ndarray((1,), _RING_HEADER, buffer=mm, offset=0)[0]
        if int(head["magic"]) != _MAGIC or int(head["version"]) != _LAYOUT_VERSION:
            del head
            mm.close()
            os.close(fd)
            raise ValueError(f"{path}: not a frame ring of this nvr version")
        layout = RingLayout(
            int(head["n_slots"]), int(head["model_width"]), int(head["model_height"]),
            int(head["snapshot_width"]), int(head["snapshot_height"]),
        )  # fmt: skip
        del head
        if layout.total_bytes > size:
            mm.close()
            os.close(fd)
            raise ValueError(f"{path}: truncated frame ring")
        ring = cls(path, fd, mm, layout, owner=False)
        # A restarted producer continues after the newest frame instead of rewriting from slot 0.
        latest = int(ring._latest[0])
        if latest >= 0:
            newest = int(np.argmax(ring._frame_index))
            ring._next_slot = (newest + 1) % layout.n_slots
        return ring

    # -- producer side -----------------------------------------------------------------------------

    def begin_write(self) -> int | None:
        """Claim the next slot for writing (marks it odd), or None when the consumer still holds it."""
        slot = self._next_slot
        if self._frame_index[slot] > self._released[0]:
            return None
        # Odd means "being written"; a writer killed mid-write left it odd already, so keep it odd.
        self._seq[slot] += 2 if self._seq[slot] % 2 else 1
        return slot

    def model_input(self, slot: int) -> RgbImage:
        return self._model_inputs[slot]

    def snapshot(self, slot: int) -> RgbImage:
        return self._snapshots[slot]

    def commit(
        self,
        slot: int,
        frame_index: int,
        *,
        pts: float,
        wall_time: float,
        model_letterbox: Letterbox,
        snapshot_letterbox: Letterbox | None,
    ) -> None:
        """Publish the slot claimed by `begin_write`: header fields, then an even sequence number."""
        header = self._slots[slot : slot + 1]
        header["frame_index"] = frame_index
        header["pts"] = pts
        header["wall_time"] = wall_time
        header["src_width"] = model_letterbox.src_width
        header["src_height"] = model_letterbox.src_height
        header["model_resized_width"] = model_letterbox.resized_width
        header["model_resized_height"] = model_letterbox.resized_height
        header["snapshot_resized_width"] = snapshot_letterbox.resized_width if snapshot_letterbox else 0
        header["snapshot_resized_height"] = snapshot_letterbox.resized_height if snapshot_letterbox else 0
        self._seq[slot] += 1
        self._latest[0] = frame_index
        self._next_slot = (slot + 1) % self.layout.n_slots

    def abort_write(self, slot: int) -> None:
        """Give back a slot claimed by `begin_write` without publishing it (its old frame is gone)."""
        self._frame_index[slot] = -1
        self._seq[slot] += 1

    # -- consumer side -----------------------------------------------------------------------------

    def read(self, slot: int) -> SlotFrame | None:
        """The frame in `slot` with zero-copy views, or None if it is empty or being written."""
        seq = int(self._seq[slot])
        if seq == 0 or seq % 2:
            return None
        h = self._slots[slot]
        frame_index, pts, wall_time = int(h["frame_index"]), float(h["pts"]), float(h["wall_time"])
        src_w, src_h = int(h["src_width"]), int(h["src_height"])
        model_lb = Letterbox(
            src_w, src_h, self.layout.model_width, self.layout.model_height,
            int(h["model_resized_width"]), int(h["model_resized_height"]),
        )  # fmt: skip
        snap_lb = None
        if self.layout.snapshot_width:
            snap_lb = Letterbox(
                src_w, src_h, self.layout.snapshot_width, self.layout.snapshot_height,
                int(h["snapshot_resized_width"]), int(h["snapshot_resized_height"]),
            )  # fmt: skip
        if int(self._seq[slot]) != seq or frame_index < 0:
            return None  # rewritten while we copied the header
        return SlotFrame(
            slot, seq, frame_index, pts, wall_time, model_lb, snap_lb,
            self._model_inputs[slot], self._snapshots[slot],
        )  # fmt: skip

    def is_intact(self, frame: SlotFrame) -> bool:
        """True if the slot has not been touched since `frame` was read: what was read is that frame."""
        return int(self._seq[frame.slot]) == frame.seq

    def release(self, frame_index: int) -> None:
        """Hand frame `frame_index` and every older frame back to the producer (single consumer per ring)."""
        self._released[0] = max(int(self._released[0]), frame_index)

    @property
    def latest_frame_index(self) -> int:
        return int(self._latest[0])

    @property
    def released_frame_index(self) -> int:
        return int(self._released[0])

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self, unlink: bool | None = None) -> None:
        """Unmap; the owner also unlinks the segment (unless `unlink=False`). Safe to call twice."""
        if self._mm is None:
            return
        if unlink if unlink is not None else self._owner:
            self.path.unlink(missing_ok=True)
        mm, self._mm = self._mm, None
        del self._released, self._latest, self._slots, self._seq, self._frame_index
        self._model_inputs.clear()
        self._snapshots.clear()
        # Views a consumer still holds keep the mapping alive; it is unmapped when they go.
        with contextlib.suppress(BufferError):
            mm.close()
        os.close(self._fd)

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def _escape(name: str) -> str:
    """A name as a file-name component: ASCII letters, digits, '_' and '-' kept, other bytes as %XX."""
    if not name:
        raise ValueError("empty instance or camera name")
    keep = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
    return "".join(chr(b) if b in keep else f"%{b:02X}" for b in name.encode("utf-8"))
