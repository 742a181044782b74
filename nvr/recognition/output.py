"""What recognition publishes besides the face events: per-person presence, stranger events, event crops.

The recognition stage knows tracks and people; only the event stage knows event ids. Both run on the frame
results thread and share one `RecognitionOutput`: the event stage reports sightings of named faces, stranger
decisions and each event's best aligned crop (with the event id), the recognition stage reports the people of
the library and ticks presence timeouts. The sink (MQTT, or the no-broker file sink) delivers.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import structlog

from nvr.contracts.identity import Identity
from nvr.contracts.tracks import StrangerEvidence
from nvr.recognition.crops import CropStore
from nvr.recognition.enrolment import encode_crop
from nvr.recognition.library import LibraryError, Person
from nvr.recognition.presence import PeopleChange, Presence, PresenceState
from nvr.recognition.strangers import StrangerEvent, StrangerStore

log = structlog.get_logger(__name__)


class RecognitionSink(Protocol):
    def enable_strangers(self, camera: str) -> None:
        """`camera` runs recognition: announce its stranger event entity."""
        ...

    def publish_stranger(self, event: StrangerEvent) -> None: ...

    def publish_presence(self, states: Sequence[PresenceState]) -> None: ...

    def publish_people(self, change: PeopleChange) -> None: ...


class RecognitionOutput:
    def __init__(
        self,
        sink: RecognitionSink,
        presence_timeout: float,
        crops: CropStore | None = None,
        published: Path | None = None,
    ) -> None:
        """`published`: a small file remembering whose topics and entities exist on the broker, so people
        removed or renamed while the daemon was not running are cleaned up at the next start."""
        self.sink = sink
        self.presence = Presence(presence_timeout)
        self.crops = crops
        self._published = published
        self._strangers: StrangerStore | None = None
        self._join_threshold = 1.0
        self._synced = False
        self.strangers_out = 0

    # -- from the event stage -------------------------------------------------------------------------

    def sighting(self, identity: Identity, camera: str, event_id: str, time: float) -> None:
        if identity.person_id is None:
            return
        state = self.presence.seen(identity.person_id, camera, event_id, identity.score, time)
        if state is not None:
            self.sink.publish_presence([state])

    def keep_strangers(self, store: StrangerStore, join_threshold: float) -> None:
        """Record strangers in `store`'s groups (joining one at `join_threshold`, the match threshold)."""
        self._strangers = store
        self._join_threshold = join_threshold

    def stranger(self, event: StrangerEvent, evidence: StrangerEvidence | None = None) -> None:
        """A track decided a stranger: its group (the same unknown face seen again gets the same one), then
        the stranger event. `group` stays None when the library cannot be written (the event still goes)."""
        if evidence is not None and self._strangers is not None:
            try:
                group = self._strangers.record(
                    evidence.embedding, evidence.model, encode_crop(evidence.crop),
                    camera=event.camera, event_id=event.event_id, time=event.time,
                    join_threshold=self._join_threshold,
                )  # fmt: skip
                event = dataclasses.replace(event, group=group.name)
            except (LibraryError, OSError) as exc:
                log.error("stranger not recorded in the library", camera=event.camera, error=str(exc))
        self.strangers_out += 1
        self.sink.publish_stranger(event)

    def event_crop(self, event_id: str, jpeg: bytes) -> None:
        if self.crops is not None:
            self.crops.put(event_id, jpeg)

    # -- from the recognition stage -------------------------------------------------------------------

    def enable_strangers(self, camera: str) -> None:
        """`camera` runs recognition: its stranger event entity is announced."""
        self.sink.enable_strangers(camera)

    def people(self, people: Iterable[Person]) -> None:
        """The library's people (at start, and after every library change)."""
        people = list(people)
        if not self._synced:
            # Whoever was published last time: the first sync sees removals and renames since then.
            self.presence.sync(self._load_published())
        change = self.presence.sync(people, first=not self._synced)
        self._synced = True
        if change.removed or change.renamed or change.states or change.current:
            self.sink.publish_people(change)
        self._save_published(people)

    def _load_published(self) -> list[Person]:
        if self._published is None:
            return []
        try:
            entries = json.loads(self._published.read_text())
            return [Person(str(e["id"]), str(e["name"]), str(e["slug"]), 0.0) for e in entries]
        except (OSError, ValueError, KeyError, TypeError):
            return []  # first start, or an unreadable file: nothing to clean up

    def _save_published(self, people: list[Person]) -> None:
        if self._published is None:
            return
        entries = [{"id": p.id, "name": p.name, "slug": p.slug} for p in people]
        try:
            self._published.parent.mkdir(parents=True, exist_ok=True)
            temporary = self._published.with_suffix(".tmp")
            temporary.write_text(json.dumps(entries))
            os.replace(temporary, self._published)
        except OSError as exc:
            log.warning("could not remember the published people", path=str(self._published), error=str(exc))

    def expire(self, now: float | None = None) -> None:
        gone = self.presence.expire(time.time() if now is None else now)
        if gone:
            self.sink.publish_presence(gone)

    def close(self) -> None:
        if self.crops is not None:
            self.crops.close()
