"""The recent face events the web UI shows, kept in memory by an event-sink wrapper the daemon installs.

`RecentEvents` sits between the event stage and the real sink (MQTT or the JSON-lines file): it forwards
every call unchanged, then records the event's latest message in a bounded ring. The web server reads the
ring; it never reaches upstream into the pipeline. Recording is a dict update under a lock, so the frame
path pays almost nothing.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nvr.events.payload import FaceEvent
from nvr.events.sink import EventSink
from nvr.recognition.output import RecognitionSink
from nvr.recognition.presence import PeopleChange, PresenceState
from nvr.recognition.strangers import StrangerEvent

EVENT_ID = re.compile(r"[0-9]{1,12}\.[0-9]{6}-[a-z0-9]{6}")
SNAPSHOTS_IN_MEMORY = 200  # the newest events keep their snapshot bytes; older ones are read from disk


@dataclass(slots=True)
class RecentEvent:
    seq: int  # global change counter: higher = changed later
    message: FaceEvent  # the event's latest message, without its image bytes
    snapshot: bytes | None  # the newest snapshot JPEG seen for it, while in memory
    snapshot_seq: int  # seq at which the snapshot last changed (cache key for thumbnails)
    _payload: dict[str, Any] | None = None
    stranger_group: str | None = None  # unknown_<n>, once recognition decided the face is a stranger

    @property
    def payload(self) -> dict[str, Any]:
        """The public payload (`to_dict()` carries whatever fields the stages added), made when first read:
        the frame path only stores the message."""
        if self._payload is None:
            self._payload = self.message.to_dict()
        return self._payload

    @property
    def camera(self) -> str:
        return self.message.camera


class DaemonSink(EventSink, RecognitionSink, Protocol):
    """What the daemon's sinks take (as `nvr.daemon.events.DaemonSink`): events and recognition's output."""


class RecentEvents:
    """A sink that forwards everything to `inner` and remembers the latest `capacity` events."""

    def __init__(self, inner: DaemonSink | None = None, capacity: int = 2000) -> None:
        self._inner = inner
        self._capacity = capacity
        self._events: OrderedDict[str, RecentEvent] = OrderedDict()  # in seq order (oldest change first)
        self._snapshots: OrderedDict[str, None] = OrderedDict()  # ids holding snapshot bytes, oldest first
        self._counts: dict[str, int] = {}
        self._per_camera: dict[str, int] = {}  # events in the ring per camera
        self._seq = 0
        self._changed = threading.Condition()

    def wrap(self, inner: DaemonSink) -> DaemonSink:
        """Put this ring in front of `inner` (what the daemon's event output calls)."""
        self._inner = inner
        return self

    # -- EventSink --------------------------------------------------------------------------------------

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        if self._inner is not None:
            self._inner.publish_events(events)
        self.record(events)

    def publish_face_count(self, camera: str, count: int) -> None:
        if self._inner is not None:
            self._inner.publish_face_count(camera, count)
        with self._changed:
            self._counts[camera] = count

    def close(self, timeout: float = 5.0) -> None:
        if self._inner is not None:
            self._inner.close(timeout)
        with self._changed:
            self._changed.notify_all()

    # -- recognition's output: forwarded; a stranger's group is remembered for its event -----------------

    def enable_strangers(self, camera: str) -> None:
        if self._inner is not None:
            self._inner.enable_strangers(camera)

    def publish_stranger(self, event: StrangerEvent) -> None:
        if self._inner is not None:
            self._inner.publish_stranger(event)
        with self._changed:
            entry = self._events.get(event.event_id)
            if entry is not None and event.group is not None:
                entry.stranger_group = event.group

    def publish_presence(self, states: Sequence[PresenceState]) -> None:
        if self._inner is not None:
            self._inner.publish_presence(states)

    def publish_people(self, change: PeopleChange) -> None:
        if self._inner is not None:
            self._inner.publish_people(change)

    def __getattr__(self, name: str) -> Any:
        # Sink methods added later by other stages (presence, strangers) reach the real sink unchanged.
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    # -- recording --------------------------------------------------------------------------------------

    def record(self, events: Sequence[FaceEvent]) -> None:
        """Remember each event's latest message."""
        if not events:
            return
        messages = [
            (event, event.snapshot) if event.snapshot is None and event.aligned is None
            else (dataclasses.replace(event, snapshot=None, aligned=None), event.snapshot)
            for event in events
        ]  # fmt: skip
        with self._changed:
            for message, snapshot in messages:
                event_id = message.id
                self._seq += 1
                entry = self._events.pop(event_id, None)
                if entry is None:
                    entry = RecentEvent(self._seq, message, snapshot, self._seq)
                    self._per_camera[message.camera] = self._per_camera.get(message.camera, 0) + 1
                else:
                    entry.seq, entry.message, entry._payload = self._seq, message, None
                    if snapshot is not None:
                        entry.snapshot, entry.snapshot_seq = snapshot, self._seq
                self._events[event_id] = entry
                if snapshot is not None:
                    self._snapshots[event_id] = None
                    self._snapshots.move_to_end(event_id)
            while len(self._events) > self._capacity:
                gone, evicted = self._events.popitem(last=False)
                self._snapshots.pop(gone, None)
                left = self._per_camera.pop(evicted.camera, 1) - 1
                if left:
                    self._per_camera[evicted.camera] = left
            while len(self._snapshots) > SNAPSHOTS_IN_MEMORY:  # older snapshots are read from disk
                oldest, _ = self._snapshots.popitem(last=False)
                held = self._events.get(oldest)
                if held is not None:
                    held.snapshot = None
            self._changed.notify_all()

    # -- reading (web server threads) -------------------------------------------------------------------

    @property
    def seq(self) -> int:
        with self._changed:
            return self._seq

    def face_counts(self) -> dict[str, int]:
        with self._changed:
            return dict(self._counts)

    def get(self, event_id: str) -> RecentEvent | None:
        with self._changed:
            return self._events.get(event_id)

    def page(
        self, *, camera: str | None = None, before: int | None = None, limit: int = 50
    ) -> tuple[list[RecentEvent], int | None]:
        """Events changed most recently first, older than seq `before`; and the cursor of the next page."""
        with self._changed:
            entries = list(self._events.values())
        seqs = [entry.seq for entry in entries]
        end = len(entries) if before is None else bisect.bisect_left(seqs, before)
        found: list[RecentEvent] = []
        index = end - 1
        while index >= 0 and len(found) < limit:
            entry = entries[index]
            if camera is None or entry.camera == camera:
                found.append(entry)
            index -= 1
        more = index >= 0 and any(camera is None or e.camera == camera for e in entries[: index + 1])
        return found, (found[-1].seq if found and more else None)

    def changed_since(self, after: int, limit: int = 200) -> list[RecentEvent]:
        """Events that changed after seq `after`, oldest change first (for live updates)."""
        with self._changed:
            entries = list(self._events.values())
        seqs = [entry.seq for entry in entries]
        return entries[bisect.bisect_right(seqs, after) :][-limit:]

    def wait_for_change(self, after: int, timeout: float) -> int:
        """Block until the seq passes `after` (or `timeout`); returns the current seq."""
        with self._changed:
            self._changed.wait_for(lambda: self._seq > after, timeout)
            return self._seq

    def cameras(self) -> list[str]:
        with self._changed:
            return sorted(set(self._counts) | set(self._per_camera))
