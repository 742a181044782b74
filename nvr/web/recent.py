"""The recent face events the web UI shows, kept in memory by an event-sink wrapper the daemon installs.

`RecentEvents` sits between the event stage and the real sink (MQTT or the JSON-lines file): it forwards
every call unchanged, then records the event's latest message in a bounded ring. The web server reads the
ring; it never reaches upstream into the pipeline. Recording is a dict update under a lock, so the frame
path pays almost nothing.
"""

from __future__ import annotations

import bisect
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nvr.events.payload import FaceEvent
from nvr.events.sink import EventSink

EVENT_ID = re.compile(r"[0-9]{1,12}\.[0-9]{6}-[a-z0-9]{6}")
SNAPSHOTS_IN_MEMORY = 200  # the newest events keep their snapshot bytes; older ones are read from disk


@dataclass(slots=True)
class RecentEvent:
    seq: int  # global change counter: higher = changed later
    payload: dict[str, Any]  # the event's latest message (the public payload)
    snapshot: bytes | None  # the newest snapshot JPEG seen for it, while in memory
    snapshot_seq: int  # seq at which the snapshot last changed (cache key for thumbnails)


class RecentEvents:
    """An `EventSink` that forwards to `inner` and remembers the latest `capacity` events."""

    def __init__(self, inner: EventSink | None = None, capacity: int = 2000) -> None:
        self._inner = inner
        self._capacity = capacity
        self._events: OrderedDict[str, RecentEvent] = OrderedDict()  # in seq order (oldest change first)
        self._counts: dict[str, int] = {}
        self._seq = 0
        self._changed = threading.Condition()

    def wrap(self, inner: EventSink) -> EventSink:
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

    def __getattr__(self, name: str) -> Any:
        # Sink methods added later by other stages (presence, strangers) reach the real sink unchanged.
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(name)
        return getattr(inner, name)

    # -- recording --------------------------------------------------------------------------------------

    def record(self, events: Sequence[FaceEvent]) -> None:
        """Remember each event's latest message (`to_dict()` carries whatever fields the stages added)."""
        if not events:
            return
        payloads = [(event.id, event.to_dict(), event.snapshot) for event in events]
        with self._changed:
            for event_id, payload, snapshot in payloads:
                self._seq += 1
                entry = self._events.pop(event_id, None)
                if entry is None:
                    entry = RecentEvent(self._seq, payload, snapshot, self._seq)
                else:
                    entry.seq, entry.payload = self._seq, payload
                    if snapshot is not None:
                        entry.snapshot, entry.snapshot_seq = snapshot, self._seq
                self._events[event_id] = entry
            while len(self._events) > self._capacity:
                self._events.popitem(last=False)
            self._forget_old_snapshots()
            self._changed.notify_all()

    def _forget_old_snapshots(self) -> None:
        kept = 0
        for entry in reversed(self._events.values()):
            if entry.snapshot is None:
                continue
            kept += 1
            if kept > SNAPSHOTS_IN_MEMORY:
                entry.snapshot = None

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
            if camera is None or entry.payload.get("camera") == camera:
                found.append(entry)
            index -= 1
        more = index >= 0 and any(
            camera is None or e.payload.get("camera") == camera for e in entries[: index + 1]
        )
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
            names = set(self._counts)
            names.update(str(e.payload.get("camera")) for e in self._events.values())
        return sorted(names)
