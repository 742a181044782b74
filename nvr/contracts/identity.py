"""Who a face is: the public `identity` object of face events and `nvr faces identify` (owner: recog-core;
this is the agreed interface, written here so recognition can be built against it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None  # None: the face matches nobody enrolled
    score: float  # the match score (not the detection score)
    model: str  # the embedding model's id
    person_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(float(self.score), 4), "model": self.model}


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    score: float
