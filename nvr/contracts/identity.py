"""Who a face is: the public identity object of face recognition (`nvr faces identify`, the daemon's events).

`Identity.to_dict()` is the JSON object users see: `{"name": str | null, "score": float, "model": str}`,
`name` null when the face is nobody in the library; `score` is the match score (cosine similarity), not the
detection score; `model` the id of the embedding model that produced it (scores of different models are not
comparable). `Candidate` is one of the best-scoring people, whether or not they passed the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    name: str | None
    score: float
    model: str
    person_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(self.score, 4), "model": self.model}


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(self.score, 4)}
