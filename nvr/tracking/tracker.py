"""Per-camera IoU tracker: per-frame face boxes become face tracks, so one person in view is one event.

Greedy matching on box overlap is enough for faces at camera frame rates: faces rarely cross, and a face that
moves too far between two processed frames simply starts a new track. A track is tentative until it has been
seen in `min_hits` consecutive frames (a one-frame false positive never becomes an event), and a confirmed
track ends once it has been absent for `end_after` seconds (a face turned away for a moment keeps its event).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nvr.contracts.arrays import FloatArray
from nvr.tracking.config import TrackerConfig


@dataclass(slots=True, eq=False)  # tracks compare by identity
class Track:
    track_id: int
    box: FloatArray  # (4,) x1, y1, x2, y2 in frame pixels, where the face was last seen
    first_seen: float  # capture time (epoch s) of the first frame with this face
    last_seen: float  # capture time of the latest frame with this face
    hits: int = 1  # frames the face was seen in
    confirmed: bool = False


@dataclass(slots=True)
class TrackerStep:
    """The outcome of one frame."""

    matched: list[tuple[Track, int]] = field(default_factory=list)  # (track, detection index) seen this frame
    ended: list[Track] = field(default_factory=list)  # confirmed tracks that have been absent long enough


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Intersection over union of every box in `a` (T, 4) with every box in `b` (M, 4): (T, M)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.asarray(inter / np.maximum(union, np.float32(1e-6)), dtype=np.float32)


class IouTracker:
    """Tracks the faces of one camera. Not thread-safe: one camera's frames arrive in order on one thread."""

    def __init__(self, config: TrackerConfig) -> None:
        self._config = config
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def tracks(self) -> list[Track]:
        return list(self._tracks)

    def __len__(self) -> int:
        return len(self._tracks)

    def update(self, boxes: FloatArray, time: float) -> TrackerStep:
        """Match this frame's boxes (M, 4) to the tracks; start, confirm and end tracks accordingly."""
        step = TrackerStep()
        if not self._tracks and not len(boxes):
            return step  # the common case: nobody in view
        track_taken = np.zeros(len(self._tracks), dtype=bool)
        box_taken = np.zeros(len(boxes), dtype=bool)
        if self._tracks and len(boxes):
            iou = iou_matrix(np.stack([t.box for t in self._tracks]), boxes)
            rows, cols = np.nonzero(iou >= self._config.iou_threshold)
            # Greedy, best overlap first; the candidate lists are a handful of faces long.
            for k in np.argsort(-iou[rows, cols], kind="stable").tolist():
                t, m = int(rows[k]), int(cols[k])
                if track_taken[t] or box_taken[m]:
                    continue
                track_taken[t] = box_taken[m] = True
                track = self._tracks[t]
                track.box = boxes[m].copy()
                track.last_seen = time
                track.hits += 1
                track.confirmed = track.confirmed or track.hits >= self._config.min_hits
                step.matched.append((track, m))

        survivors: list[Track] = []
        for track, taken in zip(self._tracks, track_taken.tolist(), strict=True):
            if taken:
                survivors.append(track)
            elif not track.confirmed:
                continue  # a tentative face must be seen in consecutive frames
            elif time - track.last_seen >= self._config.end_after:
                step.ended.append(track)
            else:
                survivors.append(track)
        for m in np.flatnonzero(~box_taken).tolist():
            track = Track(self._next_id, boxes[m].copy(), time, time)
            track.confirmed = self._config.min_hits <= 1
            self._next_id += 1
            survivors.append(track)
            step.matched.append((track, m))
        self._tracks = survivors
        return step

    def close(self) -> list[Track]:
        """End every confirmed track (the camera stalled or the daemon is stopping); drop tentative ones."""
        ended = [t for t in self._tracks if t.confirmed]
        self._tracks = []
        return ended
