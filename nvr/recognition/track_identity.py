"""Who a track is, from the evidence so far: per-track embeddings in, an identity (or a stranger) out.

A track's identity comes from the mean of its best embeddings (by face quality), so one bad frame neither
names nor un-names a person: a name needs two embeddings agreeing (or one that clears the threshold by a
wide `single_margin`: a bad frame scores low, not high, and waiting for a second frame costs a detection
cycle of latency), and a named track keeps its name while the mean still scores within `hysteresis` of the
threshold and nobody else wins. Embedding costs compute, so an undecided track is embedded at most every
`per_track_interval` seconds of capture time (0.1 s: every detection frame up to 10 fps, so the second
embedding a name needs comes from the very next frame), a decided one every `decided_interval`, and a token
bucket caps the embeddings per second over all cameras (detection keeps its rate however many faces are in
view; the faces embedded longest ago go first, so no track waits behind the others). A track that, after
`stranger_after_embeddings` good embeddings (or `stranger_after_s` seconds with at least one), matches nobody
is decided unknown: that decision fires a stranger event once per track.

Not thread-safe: the recognition stage uses it from the one thread that handles frame results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from nvr.contracts.arrays import FloatArray
from nvr.contracts.identity import Identity


@dataclass(frozen=True, slots=True)
class PersonScore:
    """One enrolled person's match score for an embedding (the scorer ranks them, best first)."""

    person_id: str
    name: str
    score: float


# Embedding (D,) L2-normalised -> every enrolled person's score, best first (empty: nobody enrolled).
Scorer = Callable[[FloatArray], Sequence[PersonScore]]


@dataclass(frozen=True, slots=True)
class IdentityRules:
    threshold: float  # a person's score must reach this ...
    margin: float  # ... and beat the runner-up person by this much
    stranger_after_embeddings: int = 5
    stranger_after_s: float = 4.0
    per_track_interval: float = 0.1  # capture seconds between two embeddings of an undecided track ...
    decided_interval: float = 1.0  # ... once it is decided (named or a stranger): only to notice a change
    best_k: int = 5  # the track's evidence: the mean of its best `best_k` embeddings
    min_embeddings: int = 2  # a name needs at least this many embeddings agreeing ...
    single_margin: float = 0.15  # ... unless one clears the threshold by this much (a clear, close face)
    hysteresis: float = 0.05  # a named track keeps its name down to threshold - hysteresis


class TokenBucket:
    """At most `rate` takes per second on average, with bursts up to `burst`."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(slots=True, eq=False)
class TrackEvidence:
    first_seen: float  # capture time (epoch s) of the track's first frame
    qualities: list[float] = field(default_factory=list)  # of the kept embeddings, best first
    vectors: list[FloatArray] = field(default_factory=list)
    embedded: int = 0  # good embeddings received
    last_request: float = -1e18  # capture time of the latest face sent to the embedder
    last_seen: float = 0.0  # clock time the track's face was last offered (`want`)
    last_capture: float | None = None  # capture time of the newest embedded face (None: none yet)
    identity: Identity | None = None  # None until decided
    stranger: bool = False  # the stranger decision fired (once per track)
    was_named: bool = False  # a track once named is never a stranger

    def mean(self) -> FloatArray:
        mean = np.mean(np.stack(self.vectors), axis=0).astype(np.float32)
        norm = float(np.linalg.norm(mean))
        return np.asarray(mean / norm if norm > 0 else mean, np.float32)


@dataclass(frozen=True, slots=True)
class Decision:
    """The identity of a track was decided or changed (`stranger`: this is the track's stranger decision)."""

    key: Hashable
    identity: Identity
    previous: Identity | None
    stranger: bool
    embedding: FloatArray  # the evidence: the mean of the track's best embeddings


class TrackIdentities:
    """Evidence and identity of every open track, keyed by any hashable (the stage uses (camera, track))."""

    def __init__(
        self,
        rules: IdentityRules,
        model: str,
        scorer: Scorer,
        max_embeddings_per_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.model = model
        self.scorer = scorer
        self._clock = clock
        self.budget = TokenBucket(max_embeddings_per_s, clock=clock)
        self._tracks: dict[Hashable, TrackEvidence] = {}
        self.skipped_budget = 0  # embeddings wanted but refused by the global budget

    def __len__(self) -> int:
        return len(self._tracks)

    def evidence(self, key: Hashable) -> TrackEvidence | None:
        return self._tracks.get(key)

    def identity(self, key: Hashable) -> Identity | None:
        track = self._tracks.get(key)
        return None if track is None else track.identity

    def want(self, key: Hashable, first_seen: float, at: float | None = None) -> bool:
        """Whether to embed this track's face of capture time `at` (default: now) now: its per-track
        interval passed and the budget allows; a True answer counts against both, so call it only for a
        face that passed the quality checks."""
        now = self._clock()
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = TrackEvidence(first_seen)
        track.last_seen = now
        when = now if at is None else at
        interval = self.rules.per_track_interval if track.identity is None else self.rules.decided_interval
        if when - track.last_request < interval:
            return False
        if not self.budget.take():
            self.skipped_budget += 1
            return False
        track.last_request = when
        return True

    def last_request(self, key: Hashable) -> float:
        """When the track's face last went to the embedder (capture time; -inf-like when never)."""
        track = self._tracks.get(key)
        return -1e18 if track is None else track.last_request

    def add(
        self, key: Hashable, embedding: FloatArray, quality: float, capture_time: float | None = None
    ) -> Decision | None:
        """One good embedding of the track's face; a decision when its identity is decided or changed."""
        track = self._tracks.get(key)
        if track is None:
            return None  # the track ended while its face was being embedded
        track.embedded += 1
        # The time in view is measured in capture time, the track's own clock (first_seen is one too).
        seen = capture_time if capture_time is not None else track.first_seen
        track.last_capture = max(seen, track.last_capture or seen)
        # Keep the best `best_k` by quality (ties: the newest first).
        at = next((i for i, q in enumerate(track.qualities) if quality >= q), len(track.qualities))
        track.qualities.insert(at, quality)
        track.vectors.insert(at, np.asarray(embedding, np.float32))
        del track.qualities[self.rules.best_k :], track.vectors[self.rules.best_k :]
        return self._decide(key, track)

    def rescore(self) -> list[Decision]:
        """The library changed: decide every track with evidence again."""
        decisions = [self._decide(key, track) for key, track in self._tracks.items() if track.vectors]
        return [d for d in decisions if d is not None]

    def end(self, key: Hashable) -> TrackEvidence | None:
        return self._tracks.pop(key, None)

    def prune(self, idle: float) -> int:
        """Forget tracks not offered for `idle` seconds (a tentative track vanishes without an end)."""
        cutoff = self._clock() - idle
        stale = [key for key, track in self._tracks.items() if track.last_seen < cutoff]
        for key in stale:
            del self._tracks[key]
        return len(stale)

    def _decide(self, key: Hashable, track: TrackEvidence) -> Decision | None:
        rules = self.rules
        mean = track.mean()
        ranked = self.scorer(mean)
        best = ranked[0] if ranked else None
        runner_up = ranked[1].score if len(ranked) > 1 else -1.0
        current = track.identity
        named: PersonScore | None = None
        enough = track.embedded >= rules.min_embeddings or (
            best is not None and best.score >= rules.threshold + rules.single_margin
        )
        if best is not None and enough:
            # A named track keeps its name down to threshold - hysteresis (one bad frame does not un-name).
            keeps = current is not None and current.person_id == best.person_id
            floor = rules.threshold - (rules.hysteresis if keeps else 0.0)
            if best.score >= floor and best.score - runner_up >= rules.margin:
                named = best
        if named is not None:
            identity = Identity(named.name, named.score, self.model, named.person_id)
        else:
            was_named = current is not None and current.name is not None
            decided = track.embedded >= rules.stranger_after_embeddings or (
                track.last_capture is not None
                and track.last_capture - track.first_seen >= rules.stranger_after_s
            )
            if not decided and not was_named and current is None:
                return None  # not enough evidence either way yet
            identity = Identity(None, best.score if best is not None else 0.0, self.model, None)
        if identity.name is not None:
            track.was_named = True
        # A stranger is a track that was never anyone: decided unknown before any name.
        stranger = identity.name is None and not track.stranger and not track.was_named
        if stranger:
            track.stranger = True
        changed = current is None or current.name != identity.name or current.person_id != identity.person_id
        track.identity = identity
        if not changed and not stranger:
            return None
        return Decision(key, identity, current, stranger, mean)
