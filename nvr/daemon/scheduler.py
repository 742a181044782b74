"""Fairness between cameras in front of the one shared inference engine.

Each camera has a mailbox holding only its newest ready frame; the engine takes them round-robin. A busy
camera therefore replaces its own waiting frame (the older one is released, counted as skipped) instead of
queueing ahead of a quiet camera, and every camera with a frame waiting is served once per round.
"""

from __future__ import annotations

from collections import OrderedDict

from nvr.frameslots import FrameReady


class FairScheduler:
    def __init__(self) -> None:
        # Insertion order is the round-robin order: a served camera goes to the back when it offers again.
        self._mailboxes: OrderedDict[str, FrameReady] = OrderedDict()

    def offer(self, frame: FrameReady) -> FrameReady | None:
        """Put `frame` in its camera's mailbox; returns the older frame it displaced (to release), if any."""
        displaced = self._mailboxes.get(frame.camera)
        if displaced is not None:
            if displaced.frame_index > frame.frame_index:
                return frame  # a late duplicate: keep the newer one already waiting
            self._mailboxes[frame.camera] = frame  # keeps the camera's place in the round
        else:
            self._mailboxes[frame.camera] = frame
        return displaced

    def take(self) -> FrameReady | None:
        """The next frame round-robin (the camera that has waited longest), or None if all are empty."""
        if not self._mailboxes:
            return None
        _, frame = self._mailboxes.popitem(last=False)
        return frame

    def discard(self, camera: str) -> FrameReady | None:
        """Forget `camera` (removed or restarting); returns its waiting frame, if any."""
        return self._mailboxes.pop(camera, None)

    def __len__(self) -> int:
        return len(self._mailboxes)

    def waiting(self, camera: str) -> bool:
        return camera in self._mailboxes
