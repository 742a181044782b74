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

from nvr.recognition.library import Person, Sample

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
