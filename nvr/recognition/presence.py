"""Who is here: per enrolled person, `present` while their face is seen, `absent` after a quiet timeout.

Fed by the event stage with every sighting of a named track (person, camera, event, score, capture time).
A person becomes `present` on their first sighting (or when they appear in another event or on another
camera), and `absent` once `timeout` seconds pass without one; while they stay in view the state goes out
again every `refresh` seconds with a fresh `last_seen`. Each is one `PresenceState` for the sink to publish
(retained, through the durable outbox). The people themselves (added, renamed, removed with
`nvr faces`) come from the library watcher: `sync` says which Home Assistant entities to create, move to a new
topic (a rename keeps the entity, the old slug's retained state is cleared) or remove. On start every
enrolled person is published `absent`, so nobody stays "present" from before a crash.

Not thread-safe: used from the thread that handles frame results.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from nvr.recognition.library import Person

State = Literal["present", "absent"]


@dataclass(frozen=True, slots=True)
class PresenceState:
    """The retained state of one person (`<prefix>/person/<slug>`)."""

    person_id: str
    name: str
    slug: str
    state: State
    camera: str | None
    last_seen: float | None  # capture time of the latest sighting (epoch s)
    event_id: str | None
    score: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "camera": self.camera,
            "last_seen": None if self.last_seen is None else round(self.last_seen, 3),
            "event_id": self.event_id,
            "score": None if self.score is None else round(self.score, 4),
        }


@dataclass(frozen=True, slots=True)
class PeopleChange:
    """What the library watcher found: entities to create or update, and slugs whose topics must go."""

    current: tuple[Person, ...]  # every enrolled person (publish their entity config)
    removed: tuple[Person, ...]  # removed from the library: remove the entity, clear the topic
    renamed: tuple[tuple[Person, Person], ...]  # (before, after): the entity stays, the old topic is cleared
    states: tuple[PresenceState, ...]  # states to publish (new people, renamed people)


@dataclass(slots=True)
class _Person:
    person: Person
    state: State = "absent"
    camera: str | None = None
    last_seen: float | None = None
    event_id: str | None = None
    score: float | None = None
    published: float = float("-inf")  # capture time of the sighting last published

    def snapshot(self) -> PresenceState:
        p = self.person
        return PresenceState(
            p.id, p.name, p.slug, self.state, self.camera, self.last_seen, self.event_id, self.score
        )


class Presence:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # While someone stays in view, their state is published again this often (a fresh last_seen).
        self.refresh = min(30.0, timeout / 2)
        self._people: dict[str, _Person] = {}

    def sync(self, people: Iterable[Person], *, first: bool = False) -> PeopleChange:
        """The library's people now. `first`: the daemon just started; every state is published (absent)."""
        now = {p.id: p for p in people}
        removed = [entry.person for pid, entry in self._people.items() if pid not in now]
        renamed: list[tuple[Person, Person]] = []
        states: list[PresenceState] = []
        for pid in [pid for pid in self._people if pid not in now]:
            del self._people[pid]
        for pid, person in now.items():
            entry = self._people.get(pid)
            if entry is None:
                entry = self._people[pid] = _Person(person)
                states.append(entry.snapshot())
            elif entry.person != person:
                before = entry.person
                entry.person = person
                if before.slug != person.slug:
                    renamed.append((before, person))
                states.append(entry.snapshot())
            elif first:
                states.append(entry.snapshot())
        return PeopleChange(tuple(now.values()), tuple(removed), tuple(renamed), tuple(states))

    def seen(
        self, person_id: str, camera: str, event_id: str, score: float, time: float
    ) -> PresenceState | None:
        """A named face was seen; the new state when it is news (present, or another camera or event)."""
        entry = self._people.get(person_id)
        if entry is None:
            return None  # removed from the library meanwhile
        news = (
            entry.state != "present"
            or entry.camera != camera
            or entry.event_id != event_id
            or time - entry.published >= self.refresh
        )
        entry.state, entry.camera, entry.event_id = "present", camera, event_id
        entry.last_seen = time if entry.last_seen is None else max(entry.last_seen, time)
        entry.score = score
        if not news:
            return None
        entry.published = time
        return entry.snapshot()

    def expire(self, now: float) -> list[PresenceState]:
        """People not seen for `timeout` seconds (capture-time clock) become absent."""
        gone = []
        for entry in self._people.values():
            if (
                entry.state == "present"
                and entry.last_seen is not None
                and now - entry.last_seen >= self.timeout
            ):
                entry.state = "absent"
                gone.append(entry.snapshot())
        return gone

    def state(self, person_id: str) -> PresenceState | None:
        entry = self._people.get(person_id)
        return None if entry is None else entry.snapshot()
