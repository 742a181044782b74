"""References to frames waiting for inference: a zero-copy view of the model input plus a tag.

The inference stage copies the pixels once (into the device's input buffer), then releases the reference;
`SlotFrameRef` then frees the slot for the capture side to reuse (the daemon's own reference,
`nvr.detection.inflight.PendingFrame`, keeps it held until the event stage has cut its snapshots). The tag
travels with the result so the postprocessor and the event stage know which frame (camera, index,
letterbox) it belongs to.
"""

from __future__ import annotations

from typing import Protocol

from nvr.contracts.arrays import RgbImage
from nvr.contracts.frameslots import FrameRing, SlotFrame


class FrameRef(Protocol):
    @property
    def pixels(self) -> RgbImage:
        """The model input, H x W x 3 uint8 RGB, letterboxed; valid until `release`."""
        ...

    @property
    def tag(self) -> object:
        """Whatever identifies the frame downstream; handed back with the result, untouched."""
        ...

    def release(self) -> bool:
        """Done reading `pixels`. False when they changed while being read: the copy is torn, discard it."""
        ...


class ArrayFrame:
    """A frame held in an ordinary array (still images, tests)."""

    __slots__ = ("pixels", "tag")

    def __init__(self, pixels: RgbImage, tag: object = None) -> None:
        self.pixels = pixels
        self.tag = tag

    def release(self) -> bool:
        return True


class SlotFrameRef:
    """A frame in a shared-memory ring slot (`nvr.contracts.frameslots`); releasing it frees the slot."""

    __slots__ = ("_frame", "_ring", "tag")

    def __init__(self, ring: FrameRing, frame: SlotFrame, tag: object = None) -> None:
        self._ring = ring
        self._frame = frame
        self.tag = tag if tag is not None else frame

    @property
    def pixels(self) -> RgbImage:
        return self._frame.model_input

    def release(self) -> bool:
        intact = self._ring.is_intact(self._frame)
        self._ring.release(self._frame.frame_index)
        return intact
