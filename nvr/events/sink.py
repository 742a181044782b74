"""Where the event stage's output goes: the `EventSink` protocol, and the no-broker sink (log + JSON lines).

With MQTT configured the daemon uses `nvr.mqtt.sink.MqttSink` (durable outbox, then the broker). Without a
broker, events go to the log and to a local, size-rotated JSON-lines file, written by a thread of its own
(`nvr.events.linefile`): the detection thread never waits for the disk.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from nvr.events.config import EventFileConfig
from nvr.events.linefile import LineFile
from nvr.events.payload import FaceEvent
from nvr.recognition.presence import PeopleChange, PresenceState
from nvr.recognition.strangers import StrangerEvent

if TYPE_CHECKING:
    from nvr.events.snapshot_store import SnapshotStore

log = structlog.get_logger(__name__)


class EventSink(Protocol):
    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        """Take one frame's event messages, in order; a durable sink commits them together. Called on the
        frame path, so it must not block for long."""
        ...

    def publish_face_count(self, camera: str, count: int) -> None:
        """The number of faces in view on `camera` changed (also called once per camera at start)."""
        ...

    def close(self, timeout: float = 5.0) -> None:
        """Flush and release; an MQTT sink delivers what it can within `timeout` seconds."""
        ...


class JsonLinesSink:
    """Events to the log and to a rotated JSON-lines file: `path`, `path.1` (newest rotated) ... `path.N`.

    With a snapshot store, each event's snapshot is kept as a file and every line of that event names it
    (`snapshot_path`, a field of the file's lines only); `snapshot` is true when this line's snapshot was
    (re)written. Without a store no snapshot is kept anywhere, so `snapshot` is false.
    """

    def __init__(self, config: EventFileConfig, snapshots: SnapshotStore | None = None) -> None:
        self._snapshots = snapshots
        self.events_written = 0
        self.events_rejected = 0
        self._file = LineFile(config)  # written on its own thread: the detection thread never waits for it

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def lines_dropped(self) -> int:
        """Lines (events, stranger events) lost because the disk stalled for long or a write failed."""
        return self._file.lines_dropped

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        for event in events:
            self.publish_event(event)

    def publish_event(self, event: FaceEvent) -> None:
        store = self._snapshots
        if event.snapshot is not None and (store is None or not store.save(event.id, event.snapshot)):
            event = dataclasses.replace(event, snapshot=None, aligned=None)  # no file: promise none
        snapshot_path = None if store is None else store.path_of(event.id)
        try:
            record = event.to_dict()
            if snapshot_path is not None:
                record["snapshot_path"] = str(snapshot_path)
            line = json.dumps(record, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        except ValueError as exc:
            self.events_rejected += 1
            log.error("face event not written", camera=event.camera, event_id=event.id, error=str(exc))
            return
        self._file.write(line, functools.partial(self._written, event))

    def _written(self, event: FaceEvent) -> None:
        """On the file's writer thread, once the line is in the file: whoever reacts to the log line finds
        the event in the file."""
        self.events_written += 1
        log.info(
            f"face {event.type}",
            camera=event.camera,
            event_id=event.id,
            score=round(event.face.score, 2),
            box=[round(v) for v in event.face.box],
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every line handed over so far is in the file."""
        return self._file.flush(timeout)

    def publish_face_count(self, camera: str, count: int) -> None:
        log.debug("faces in view", camera=camera, count=count)

    # -- recognition: stranger events go to the file too (they carry `event_type`), presence to the log --

    def enable_strangers(self, camera: str) -> None:
        pass

    def publish_stranger(self, event: StrangerEvent) -> None:
        line = json.dumps(event.to_dict(), separators=(",", ":")).encode() + b"\n"
        self._file.write(line, functools.partial(_log_stranger, event))

    def publish_presence(self, states: Sequence[PresenceState]) -> None:
        for state in states:
            log.info("person " + state.state, person=state.name, camera=state.camera, event_id=state.event_id)

    def publish_people(self, change: PeopleChange) -> None:
        self.publish_presence(change.states)

    def close(self, timeout: float = 5.0) -> None:
        self._file.close(timeout)
        if self._snapshots is not None:
            self._snapshots.close(timeout)


def _log_stranger(event: StrangerEvent) -> None:
    log.info("stranger", camera=event.camera, event_id=event.event_id, group=event.group)


def read_event_lines(path: Path) -> list[dict[str, Any]]:
    """The events in one JSON-lines file (a helper for tools and tests)."""
    with open(path, "rb") as f:
        return [json.loads(line) for line in f if line.strip()]
