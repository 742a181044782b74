"""Who is this face? Cosine similarity of a face's embedding against everyone in the library, vectorised.

Per person the score is the better of (a) the similarity to the mean of their normalised embeddings, which
is robust when they have many samples, and (b) the similarity to their nearest sample, which keeps a rare
pose or lighting matchable. A face is that person when the score reaches the threshold AND beats the
runner-up person by the margin (two people scoring alike is not a confident answer); otherwise unknown.
All faces against all samples and means is one matrix product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nvr.contracts.identity import Candidate, Identity

FloatMatrix = npt.NDArray[np.float32]

DEFAULT_MARGIN = 0.05  # cosine: the winner must lead the runner-up person by this much
CANDIDATES = 3


@dataclass(frozen=True, slots=True)
class Match:
    identity: Identity  # the accepted person, or name None
    candidates: tuple[Candidate, ...]  # the best people, best first, whether or not they passed


class Matcher:
    """Matches embeddings of one model against a snapshot of the library's embeddings of that model."""

    def __init__(
        self,
        embeddings: FloatMatrix,
        owners: Sequence[str],
        names: Mapping[str, str],
        model_id: str,
        *,
        threshold: float,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        """`embeddings` [N, D] (one row per sample, L2-normalised), `owners[i]` the person id of row i,
        `names` person id -> display name."""
        if len(owners) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(owners)} owners")
        self.model_id = model_id
        self.threshold = float(threshold)
        self.margin = float(margin)
        self.person_ids: list[str] = sorted(set(owners))
        self.names = [names.get(person_id, person_id) for person_id in self.person_ids]
        people = len(self.person_ids)
        self.dim = int(embeddings.shape[1]) if embeddings.ndim == 2 else 0
        # Samples grouped by person, so per-person maxima are one `maximum.reduceat`.
        index = {person_id: i for i, person_id in enumerate(self.person_ids)}
        owner_index = np.array([index[o] for o in owners], np.intp)
        order = np.argsort(owner_index, kind="stable")
        samples = _normalised(np.asarray(embeddings, np.float32)[order])
        grouped = owner_index[order]
        self._starts = np.searchsorted(grouped, np.arange(people)).astype(np.intp)
        means = np.zeros((people, self.dim), np.float32)
        np.add.at(means, grouped, samples)
        # One matrix: samples first, then each person's mean direction.
        self._reference = np.ascontiguousarray(np.concatenate([samples, _normalised(means)]).T)
        self._samples = len(samples)

    @property
    def empty(self) -> bool:
        return not self.person_ids

    def scores(self, queries: FloatMatrix) -> FloatMatrix:
        """Every query's score for every person, [M, P] (columns in `person_ids` order)."""
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2:
            raise ValueError(f"queries must be [M, D], got shape {queries.shape}")
        if self.empty:
            return np.zeros((len(queries), 0), np.float32)
        if queries.shape[1] != self.dim:
            raise ValueError(f"{queries.shape[1]}-value embeddings against a {self.dim}-value library")
        similarity = queries @ self._reference  # [M, N samples + P means]
        nearest = np.maximum.reduceat(similarity[:, : self._samples], self._starts, axis=1)
        best: FloatMatrix = np.maximum(nearest, similarity[:, self._samples :])
        return best

    def match(self, queries: FloatMatrix) -> list[Match]:
        """One `Match` per row of `queries` [M, D] (L2-normalised embeddings of this matcher's model)."""
        scores = self.scores(queries)
        if self.empty:
            unknown = Identity(None, 0.0, self.model_id)
            return [Match(unknown, ()) for _ in range(len(scores))]
        count = min(CANDIDATES, scores.shape[1])
        best = np.argsort(-scores, axis=1, kind="stable")[:, :count]
        results = []
        for row, ranked in zip(scores, best, strict=True):
            candidates = tuple(Candidate(self.names[p], float(row[p])) for p in ranked)
            top = candidates[0].score
            runner_up = candidates[1].score if len(candidates) > 1 else -1.0
            if top >= self.threshold and top - runner_up >= self.margin:
                person = int(ranked[0])
                identity = Identity(self.names[person], top, self.model_id, self.person_ids[person])
            else:
                identity = Identity(None, top, self.model_id)
            results.append(Match(identity, candidates))
        return results


def _normalised(matrix: FloatMatrix) -> FloatMatrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    normalised: FloatMatrix = (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalised
