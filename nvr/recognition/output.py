"""What recognition publishes besides the face events: per-person presence, stranger events, event crops.

The recognition stage knows tracks and people; only the event stage knows event ids. Both run on the frame
results thread and share one `RecognitionOutput`: the event stage reports sightings of named faces, stranger
decisions and each event's best aligned crop (with the event id), the recognition stage reports the people of
the library and ticks presence timeouts. The sink (MQTT, or the no-broker file sink) delivers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from nvr.contracts.identity import Identity
from nvr.recognition.crops import CropStore
from nvr.recognition.library import Person
from nvr.recognition.presence import PeopleChange, Presence, PresenceState
from nvr.recognition.strangers import StrangerEvent


class RecognitionSink(Protocol):
    def enable_strangers(self, camera: str) -> None:
        """`camera` runs recognition: announce its stranger event entity."""
        ...

    def publish_stranger(self, event: StrangerEvent) -> None: ...

    def publish_presence(self, states: Sequence[PresenceState]) -> None: ...

    def publish_people(self, change: PeopleChange) -> None: ...


class RecognitionOutput:
    def __init__(
        self, sink: RecognitionSink, presence_timeout: float, crops: CropStore | None = None
    ) -> None:
        self.sink = sink
        self.presence = Presence(presence_timeout)
        self.crops = crops
        self._synced = False
        self.strangers_out = 0

    # -- from the event stage -------------------------------------------------------------------------

    def sighting(self, identity: Identity, camera: str, event_id: str, time: float) -> None:
        if identity.person_id is None:
            return
        state = self.presence.seen(identity.person_id, camera, event_id, identity.score, time)
        if state is not None:
            self.sink.publish_presence([state])

    def stranger(self, event: StrangerEvent) -> None:
        self.strangers_out += 1
        self.sink.publish_stranger(event)

    def event_crop(self, event_id: str, jpeg: bytes) -> None:
        if self.crops is not None:
            self.crops.put(event_id, jpeg)

    # -- from the recognition stage -------------------------------------------------------------------

    def people(self, people: Iterable[Person]) -> None:
        """The library's people (at start, and after every library change)."""
        change = self.presence.sync(people, first=not self._synced)
        self._synced = True
        if change.removed or change.renamed or change.states or change.current:
            self.sink.publish_people(change)

    def expire(self, now: float | None = None) -> None:
        gone = self.presence.expire(time.time() if now is None else now)
        if gone:
            self.sink.publish_presence(gone)

    def close(self) -> None:
        if self.crops is not None:
            self.crops.close()
