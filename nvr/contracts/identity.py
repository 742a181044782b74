"""Who a face is: the recognition stage's answer per face track, carried by events and the public JSON."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None  # None: a face the library does not know
    score: float
    model: str
    person_id: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "score": round(self.score, 4), "model": self.model}


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    score: float
