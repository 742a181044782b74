"""What the web UI does to the face library and the stranger groups, behind small interfaces.

The library file is the one `nvr faces` and the daemon use, so every change here is seen by the running
daemon's watcher at once (its `version()` moves). Enrolling an uploaded photo needs a face detector and the
embedder (`nvr.web.enrol.PhotoEnroller`); stranger groups come from the recognition stage's store
(`StrangerStore`). Either may be missing: the UI then says so instead of failing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nvr.recognition import strangers as stranger_groups
from nvr.recognition.library import FaceLibrary, Person, PersonError, Sample

GROUP_NAME = re.compile(r"unknown_[0-9]{1,9}")
PERSON_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class StrangerGroup:
    name: str  # unknown_<n>
    count: int  # times seen
    first_seen: float
    last_seen: float
    cameras: tuple[str, ...]
    crops: tuple[int, ...] = field(default=())  # crop ids, newest first

    def to_dict(self, crop_limit: int = 8) -> dict[str, Any]:
        return {
            "name": self.name, "count": self.count, "first_seen": self.first_seen,
            "last_seen": self.last_seen, "cameras": list(self.cameras),
            "crops": list(self.crops[:crop_limit]), "crop_count": len(self.crops),
        }  # fmt: skip


class StrangerStore(Protocol):
    def groups(self) -> Sequence[StrangerGroup]: ...

    def crop(self, group: str, crop_id: int) -> bytes | None: ...

    def name_group(self, group: str, person_name: str) -> Person:
        """The group's crops become samples of `person_name` (created when new); the group goes."""
        ...

    def merge(self, group: str, into: str) -> None: ...

    def remove(self, group: str) -> None: ...


def person_dict(person: Person, samples: Sequence[Sample]) -> dict[str, Any]:
    return {
        "id": person.id, "name": person.name, "slug": person.slug, "created": person.created,
        "samples": len(samples), "cover": samples[-1].id if samples else None,
    }  # fmt: skip


def sample_dict(sample: Sample) -> dict[str, Any]:
    return {
        "id": sample.id,
        "person_id": sample.person_id,
        "created": sample.created,
        "source": sample.source,
    }


class LibraryStrangers:
    """`StrangerStore` over the recognition stage's stranger tables in the face library file."""

    def __init__(self, store: stranger_groups.StrangerStore, library: FaceLibrary) -> None:
        self._store = store
        self._library = library

    def groups(self) -> list[StrangerGroup]:
        found = []
        for group in self._store.groups():
            newest_first = tuple(face.id for face in reversed(self._store.faces(group)))
            sighting = (group.sightings, group.first_seen, group.last_seen, group.cameras)
            found.append(StrangerGroup(group.name, *sighting, newest_first))
        return found

    def crop(self, group: str, crop_id: int) -> bytes | None:
        target = self._store.group(group)
        if target is None or crop_id not in {face.id for face in self._store.faces(target)}:
            return None  # only a crop of the group named in the request
        return self._store.face_crop(crop_id)

    def name_group(self, group: str, person_name: str) -> Person:
        person, _ = self._store.name(self._library, group, person_name)
        return person

    def merge(self, group: str, into: str) -> None:
        if stranger_groups.parse_group_name(into) is None:
            raise PersonError(f"{into!r} is not a stranger group (unknown_<n>)")
        self._store.merge(group, into)

    def remove(self, group: str) -> None:
        self._store.remove(group)
