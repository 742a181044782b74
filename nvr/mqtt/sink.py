"""The event stage's sink when a broker is configured: event messages into the outbox, counts as state."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import structlog

from nvr.errors import ConfigError
from nvr.events.payload import FaceEvent
from nvr.mqtt.client import MqttPublisher
from nvr.mqtt.config import MqttConfig
from nvr.mqtt.discovery import person_discovery, person_discovery_topic, stranger_discovery
from nvr.mqtt.outbox import NewMessage
from nvr.recognition.presence import PeopleChange, PresenceState
from nvr.recognition.strangers import StrangerEvent

log = structlog.get_logger(__name__)

JSON = "application/json"
JPEG = "image/jpeg"


class MqttSink:
    """Checks each message before it becomes durable: nothing malformed or too large reaches the wire.

    Creating it opens the outbox (in `state_dir` unless `config.outbox.path` says otherwise) and starts
    connecting in the background; it never waits for the broker.
    """

    def __init__(
        self,
        config: MqttConfig,
        state_dir: Path | None = None,
        *,
        cameras: Sequence[str] = (),
        retain_snapshots: bool = True,
        publisher: MqttPublisher | None = None,
    ) -> None:
        if publisher is None:
            publisher = MqttPublisher(config, cameras, state_dir=state_dir)
        self.publisher = publisher
        self._topics = publisher.topics
        self._config = config
        self._max_bytes = config.max_message_bytes
        self._retain_snapshots = retain_snapshots
        self.events_rejected = 0  # events that could not be encoded or were too large
        self.snapshots_rejected = 0  # snapshots too large (their event still goes out, without one)
        publisher.start()

    def _known_camera(self, camera: str) -> bool:
        try:
            self.publisher.add_camera(camera)
        except ConfigError as exc:  # the config validates names; this guards the topics regardless
            log.error("camera name unusable in topics: events not sent", camera=camera, error=str(exc))
            return False
        return True

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        """One frame's events in one outbox transaction: one disk sync per frame, not per event."""
        messages: list[NewMessage] = []
        for event in events:
            messages += self._messages(event)
        if messages:
            self.publisher.send(messages)

    def publish_event(self, event: FaceEvent) -> None:
        self.publish_events([event])

    def _messages(self, event: FaceEvent) -> list[NewMessage]:
        """The event's messages (snapshots first), or none when it cannot be sent."""
        camera = event.camera
        if not self._known_camera(camera):
            self.events_rejected += 1
            return []
        images: list[NewMessage] = []
        for data, topic in ((event.snapshot, self._topics.snapshot), (event.aligned, self._topics.aligned)):
            if data is None:
                continue
            limit, what = self._limit(topic(camera))
            if len(data) > limit:
                self.snapshots_rejected += 1
                log.warning(
                    "face snapshot over the size limit: not sent",
                    camera=camera, event_id=event.id, size=len(data), limit=limit, limit_from=what,
                )  # fmt: skip
                continue
            images.append(NewMessage(camera, topic(camera), data, 1, self._retain_snapshots, JPEG, event.id))
        if event.snapshot is not None and not any(m.topic == self._topics.snapshot(camera) for m in images):
            event = dataclasses.replace(event, snapshot=None)  # the payload must not promise a snapshot
        try:
            payload = event.to_json()
        except ValueError as exc:
            self.events_rejected += 1
            log.error("face event not sent", camera=camera, event_id=event.id, error=str(exc))
            return []
        limit, what = self._limit(self._topics.face(camera))
        if len(payload) > limit:
            self.events_rejected += 1
            log.error(
                "face event over the size limit: not sent",
                camera=camera, event_id=event.id, size=len(payload), limit=limit, limit_from=what,
            )  # fmt: skip
            return []
        # Snapshot first: a consumer that receives the event finds the retained snapshot it announces.
        return [*images, NewMessage(camera, self._topics.face(camera), payload, 1, False, JSON, event.id)]

    def _limit(self, topic: str) -> tuple[int, str]:
        """Our own size limit, or the broker's when it is smaller (known once connected; the sender checks
        again before sending, for messages queued before that)."""
        broker = self.publisher.payload_limit(topic)
        if broker is not None and broker < self._max_bytes:
            return broker, "the broker's maximum packet size"
        return self._max_bytes, "max_message_bytes"

    def publish_face_count(self, camera: str, count: int) -> None:
        if self._known_camera(camera):
            self.publisher.set_state(self._topics.count(camera), str(count).encode())

    # -- recognition ---------------------------------------------------------------------------------------

    def enable_strangers(self, camera: str) -> None:
        """Announce `camera`'s stranger event entity to Home Assistant (cameras with recognition on)."""
        if self._known_camera(camera) and self._config.discovery.enabled:
            self.publisher.set_state(*stranger_discovery(self._config, camera))

    def publish_stranger(self, event: StrangerEvent) -> None:
        if not self._known_camera(event.camera):
            return
        payload = json.dumps(event.to_dict(), separators=(",", ":")).encode()
        topic = self._topics.stranger(event.camera)
        self.publisher.send([NewMessage(event.camera, topic, payload, 1, False, JSON, event.event_id)])

    def publish_presence(self, states: Sequence[PresenceState]) -> None:
        """Retained person states, through the outbox (in order with the events that caused them)."""
        messages = [
            NewMessage(
                state.camera or "",
                self._topics.person(state.slug),
                json.dumps(state.to_dict(), separators=(",", ":")).encode(),
                1,
                True,
                JSON,
                state.event_id,
            )
            for state in states
        ]
        if messages:
            self.publisher.send(messages)

    def publish_people(self, change: PeopleChange) -> None:
        """Home Assistant entities follow the library: created on enrolment, kept (with a new state topic)
        on a rename, removed on removal; a topic no longer used has its retained state cleared."""
        cleared = [before.slug for before, _ in change.renamed] + [p.slug for p in change.removed]
        if self._config.discovery.enabled:
            for person in change.current:
                self.publisher.set_state(*person_discovery(self._config, person.id, person.name, person.slug))
            for person in change.removed:
                self.publisher.set_state(person_discovery_topic(self._config, person.id), b"")
        messages = [NewMessage("", self._topics.person(slug), b"", 1, True) for slug in cleared]
        if messages:
            self.publisher.send(messages)
        self.publish_presence(change.states)

    def close(self, timeout: float = 5.0) -> None:
        self.publisher.stop(timeout)
