"""Fairness between cameras in front of the one shared inference engine.

Each camera has a mailbox holding only its newest ready frame; frames leave the mailboxes round-robin. A
busy camera therefore replaces its own waiting frame (the older one is released, counted as superseded)
instead of queueing ahead of a quiet camera, and every camera with a frame waiting is served once per
round. `take` can skip cameras that may not send now (the pipeline caps the frames each camera has in
flight, so one camera cannot fill the device's queue); a skipped camera keeps its place in the round.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Waiting(Protocol):
    @property
    def camera(self) -> str: ...

    @property
    def frame_index(self) -> int: ...


W = TypeVar("W", bound=Waiting)


class FairScheduler(Generic[W]):
    def __init__(self) -> None:
        # Insertion order is the round-robin order: a served camera goes to the back when it offers again.
        self._mailboxes: OrderedDict[str, W] = OrderedDict()

    def offer(self, frame: W) -> W | None:
        """Put `frame` in its camera's mailbox; returns the older frame it displaced (to release), if any."""
        displaced = self._mailboxes.get(frame.camera)
        if displaced is not None and displaced.frame_index > frame.frame_index:
            return frame  # a late duplicate: keep the newer one already waiting
        self._mailboxes[frame.camera] = frame  # an existing camera keeps its place in the round
        return displaced

    def take(self, eligible: Callable[[str], bool] | None = None) -> W | None:
        """The next frame round-robin (the camera that has waited longest) among the cameras `eligible`
        accepts, or None."""
        for camera in self._mailboxes:
            if eligible is None or eligible(camera):
                return self._mailboxes.pop(camera)
        return None

    def discard(self, camera: str) -> W | None:
        """Forget `camera` (removed or restarting); returns its waiting frame, if any."""
        return self._mailboxes.pop(camera, None)

    def drain(self) -> list[W]:
        """Every waiting frame (at shutdown), leaving the mailboxes empty."""
        frames = list(self._mailboxes.values())
        self._mailboxes.clear()
        return frames

    def __len__(self) -> int:
        return len(self._mailboxes)

    def waiting(self, camera: str) -> bool:
        return camera in self._mailboxes
