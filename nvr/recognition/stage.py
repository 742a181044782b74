"""The recognition stage: between tracking and events, it says who each face track is.

On the results thread (`handle`, `expire`, `close`; the frame's pixels are valid only during `handle`): each
confirmed track's face is checked for size and pose, aligned from the frame's highest-resolution pixels,
checked for sharpness, and, within the per-track and global embedding budgets, queued for the embedder. The
embedder runs on its own thread (`EmbedWorker`), so detection never waits for it; when a batch is done it
applies the embeddings at once (`flush`, under the stages' lock): the track's evidence decides its identity
(`track_identity`). Every tracked frame goes on to the event stage with the identities of its tracks; a
decision about a track not in the frame goes on in a frame-less `TrackedFrame`, so the event's `update`
leaves at once. A stranger decision goes down with its evidence (mean embedding, best aligned crop): the
event stage, which knows the event id, has it recorded in the stranger groups (the same unknown face gets
the same `unknown_<n>`) and the stranger event published.

The face library is watched (`version()`, polled every second): add, remove or rename with `nvr faces` while
the daemon runs takes effect at once; samples not embedded with the daemon's model are embedded in the
background (by the same worker, between faces).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import structlog

from nvr.contracts.alignment import align_faces
from nvr.contracts.arrays import FloatArray, RgbImage
from nvr.contracts.tracks import StrangerEvidence, TrackedFrame, TrackSink
from nvr.recognition.config import RecognitionConfig
from nvr.recognition.enrolment import decode_crop
from nvr.recognition.library import FaceLibrary, LibraryError
from nvr.recognition.matcher import Matcher
from nvr.recognition.output import RecognitionOutput
from nvr.recognition.quality import QualityLimits, assess, sharpness
from nvr.recognition.track_identity import Decision, IdentityRules, PersonScore, TrackIdentities

log = structlog.get_logger(__name__)


def _tracing() -> bool:
    """Whether the debug log is on: then each embedding's way is logged (the latency trace)."""
    return logging.getLogger(__name__).isEnabledFor(logging.DEBUG)


LIBRARY_POLL_S = 1.0
EMBEDDER_NICE = 10
TRACK_IDLE_S = 30.0  # evidence of a track not seen for this long is dropped (tentative tracks never end)
_MAX_QUEUED = (
    8  # faces waiting for the embedder; beyond this a face is skipped (the budget should prevent it)
)


class EmbedderLike(Protocol):
    """What the stage needs of an embedder (nvr.families.arcface.Embedder)."""

    model_id: str
    dim: int

    def embed(self, aligned: RgbImage) -> FloatArray: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Job:
    key: tuple[str, int]
    aligned: RgbImage  # 112x112x3
    quality: float
    capture_time: float
    submitted: float = 0.0  # time.time() when queued (for the latency trace in the debug log)


@dataclass(frozen=True, slots=True)
class _Done:
    key: tuple[str, int]
    embedding: FloatArray
    quality: float
    aligned: RgbImage
    capture_time: float


class EmbedWorker:
    """The embedder's own thread: faces in (batched as the model allows), embeddings out; between faces,
    library samples that lack the model's embedding."""

    def __init__(
        self, embedder: EmbedderLike, library: FaceLibrary | None, on_done: Callable[[], None] | None = None
    ) -> None:
        self.embedder = embedder
        self.on_done = on_done  # called on this thread after each batch: the stage applies it at once
        self.library = library
        # Faces per call: the model's batch (a CPU embedder says; the Hailo engine batches on its own).
        self._batch = max(1, int(getattr(embedder, "batch", 4)))
        self.jobs: queue.Queue[_Job | None] = queue.Queue(_MAX_QUEUED)
        self.done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self.reembed = threading.Event()
        self.failures = 0
        self.embedded = 0
        self.embed_seconds = 0.0
        self.reembedded = 0
        self._thread = threading.Thread(target=self._run, name="recognition-embedder", daemon=True)
        self._thread.start()

    def submit(self, job: _Job) -> bool:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def close(self, timeout: float = 2.0) -> None:
        while True:  # make room for the stop marker
            try:
                self.jobs.put_nowait(None)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.jobs.get_nowait()
        self._thread.join(timeout)

    def _run(self) -> None:
        _lower_priority()
        while True:
            try:
                job = self.jobs.get(timeout=0.5)
            except queue.Empty:
                if self.reembed.is_set():
                    self._reembed_one()
                continue
            if job is None:
                return
            batch = [job]
            while len(batch) < self._batch:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.jobs.put(None)  # seen again after this batch
                    break
                batch.append(more)
            started = time.monotonic()
            try:
                vectors = self.embedder.embed(np.stack([j.aligned for j in batch]))
            except Exception as exc:  # a failing embedder must not end detection
                self.failures += 1
                if self.failures in (1, 10, 100) or self.failures % 1000 == 0:
                    log.error("embedder failed", error=f"{type(exc).__name__}: {exc}", failures=self.failures)
                continue
            seconds = time.monotonic() - started
            self.embed_seconds += seconds
            self.embedded += len(batch)
            if _tracing():  # the latency trace (scripts/bench_recognition.py reads it)
                now = time.time()
                for j in batch:
                    log.debug(
                        "face embedded", camera=j.key[0], track=j.key[1], capture_time=j.capture_time,
                        waited_s=round(now - seconds - j.submitted, 4), compute_s=round(seconds, 4),
                        batch=len(batch),
                    )  # fmt: skip
            for j, vector in zip(batch, vectors, strict=True):
                self.done.put(_Done(j.key, vector, j.quality, j.aligned, j.capture_time))
            if self.on_done is not None:
                try:
                    self.on_done()
                except Exception as exc:  # the results thread applies them at its next frame instead
                    log.error("applying embeddings failed", error=f"{type(exc).__name__}: {exc}")

    def _reembed_one(self) -> None:
        """Embed one library sample that lacks this model's embedding (from its stored aligned crop)."""
        library = self.library
        if library is None:
            self.reembed.clear()
            return
        try:
            missing = library.samples_missing(self.embedder.model_id)
            if not missing:
                self.reembed.clear()
                return
            sample = missing[0]
            crop = decode_crop(library.sample_crop(sample.id))
            vector = self.embedder.embed(crop[None])[0]
            library.set_embedding(sample.id, self.embedder.model_id, vector)
            self.reembedded += 1
            if len(missing) == 1:
                log.info("library samples embedded with the daemon's model", model=self.embedder.model_id)
        except Exception as exc:  # a sample that cannot be embedded (gone meanwhile, bad crop) is skipped
            log.warning("could not embed a library sample", error=f"{type(exc).__name__}: {exc}")
            self.reembed.clear()


def _lower_priority() -> None:
    """This thread (where a CPU embedder computes: it runs single-threaded in the caller) yields to detection
    on a busy CPU: at nice +10 Linux gives it about a tenth of a contended core, so detection keeps ~90 % of
    its rate, while on an idle CPU it still runs at full speed. Threads inherit nothing from this: it is the
    only one."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EMBEDDER_NICE)


class RecognitionStage:
    """A `TrackSink`: tracked frames in (from tracking), tracked frames with identities out (to events)."""

    def __init__(
        self,
        config: RecognitionConfig,
        embedder: EmbedderLike,
        library: FaceLibrary,
        downstream: TrackSink,
        output: RecognitionOutput,
        *,
        threshold: float,
        cameras: Callable[[str], bool] = lambda _camera: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.library = library
        self.downstream = downstream
        self.output = output
        self.threshold = threshold
        self._enabled_for = cameras
        self._clock = clock
        self._limits = QualityLimits(config.min_face_px, config.min_sharpness)
        rules = IdentityRules(
            threshold=threshold,
            margin=config.margin,
            stranger_after_embeddings=config.stranger_after_embeddings,
            stranger_after_s=config.stranger_after_s,
        )
        self.identities = TrackIdentities(
            rules, embedder.model_id, self._score, config.max_embeddings_per_s, clock=clock
        )
        self._matcher: Matcher | None = None
        self._person_ids: dict[str, str] = {}
        self._version = -1
        self._library_error = ""
        self._next_poll = 0.0
        self.worker = EmbedWorker(embedder, library, self._on_result)
        self.on_result: Callable[[], None] | None = None  # set by the stages' owner: flush under its lock
        self._pending: dict[str, TrackedFrame] = {}  # decisions for tracks not in the next frame, by camera
        self._stranger_cameras: set[str] = set()
        self.counters = {"embedded": 0, "refused_quality": 0, "refused_sharpness": 0, "skipped_busy": 0}
        self.decided = 0  # tracks decided (named or unknown) ...
        self.decided_seconds = 0.0  # ... and the sum of their times from first frame to decision
        self._warned_no_image = False
        self._reload_library()

    # -- the library --------------------------------------------------------------------------------------

    def _reload_library(self) -> None:
        try:
            version = self.library.version()
            if version == self._version:
                return
            people = self.library.people()
            matrix, owners = self.library.embedding_matrix(self.embedder.model_id)
            missing = self.library.samples_missing(self.embedder.model_id)
        except LibraryError as exc:
            if exc.message != self._library_error:  # once per distinct problem, not every second
                self._library_error = exc.message
                log.error("face library unreadable; keeping the people read before", error=exc.message)
            return
        self._library_error = ""
        names = {p.id: p.name for p in people}
        self._matcher = Matcher(
            matrix, owners, names, self.embedder.model_id, threshold=self.threshold, margin=self.config.margin
        )
        self._person_ids = {p.name: p.id for p in people}
        first = self._version < 0
        self._version = version
        if missing:
            if first:
                log.info("embedding library samples with the daemon's model", samples=len(missing))
            self.worker.reembed.set()
        self.output.people(people)
        if not first:
            log.info("face library changed", people=len(people), samples=len(owners))
            for decision in self.identities.rescore():
                self._queue_decision(decision)

    def _score(self, embedding: FloatArray) -> list[PersonScore]:
        matcher = self._matcher
        if matcher is None or matcher.empty:
            return []
        match = matcher.match(embedding[None])[0]
        return [PersonScore(self._person_ids.get(c.name, c.name), c.name, c.score) for c in match.candidates]

    # -- frames ---------------------------------------------------------------------------------------------

    def handle(self, tracked: TrackedFrame) -> None:
        camera = tracked.camera
        self._apply_results()
        pending = self._pending.pop(camera, None)
        if pending is not None:
            tracked.identities.update(pending.identities)
            tracked.strangers.update(pending.strangers)
        if self._enabled_for(camera):
            if camera not in self._stranger_cameras:
                self._stranger_cameras.add(camera)
                self.output.enable_strangers(camera)
            if tracked.frame is not None:
                self._look(tracked)
            for face in tracked.faces:
                identity = self.identities.identity((camera, face.track_id))
                if identity is not None:
                    tracked.identities.setdefault(face.track_id, identity)
        for ended in tracked.ended:
            self.identities.end((camera, ended.track_id))
        self.downstream.handle(tracked)

    def expire(self) -> None:
        """Twice a second: apply the embedder's results, watch the library, time presence out."""
        now = self._clock()
        if now >= self._next_poll:
            self._next_poll = now + LIBRARY_POLL_S
            self._reload_library()
        self.flush()
        self.output.expire()
        self.identities.prune(TRACK_IDLE_S)

    def flush(self) -> None:
        """Apply the embedder's results now and pass the decisions on (in frame-less tracked frames). The
        embedder thread calls it through `on_result` (under the stages' lock) so a decision does not wait
        for the camera's next frame."""
        self._apply_results()
        for camera in list(self._pending):
            self.downstream.handle(self._pending.pop(camera))

    def close(self) -> None:
        self.worker.close()

    def _on_result(self) -> None:
        if self.on_result is not None:
            self.on_result()

    def _look(self, tracked: TrackedFrame) -> None:
        frame = tracked.frame
        assert frame is not None
        good = []
        detections = frame.detections
        # Tentative tracks too: a face's identity is often decided by the time its event starts.
        for face in tracked.faces:
            index = face.index
            verdict = assess(
                detections.boxes[index], detections.landmarks[index], detections.landmark_names, self._limits
            )
            if not verdict.ok:
                self.counters["refused_quality"] += 1
                continue
            good.append((face, verdict.score))
        # The budget goes to the faces embedded longest ago first (a new face before one seen a moment ago).
        good.sort(key=lambda item: self.identities.last_request((tracked.camera, item[0].track_id)))
        wanted = []
        for face, score in good:
            key = (tracked.camera, face.track_id)
            if self.identities.want(key, face.first_seen, frame.capture_time):
                wanted.append((key, face.index, score))
        if not wanted:
            return
        image = frame.snapshot
        if image is None:
            if not self._warned_no_image:
                self._warned_no_image = True
                log.error("recognition needs frame images: set capture.snapshot_width/height (not 0)")
            return
        indices = [index for _, index, _ in wanted]
        landmarks = detections.landmarks[indices] * np.float32(frame.snapshot_scale)
        aligned, placed = align_faces(image, landmarks, detections.landmark_names)
        sharp = sharpness(aligned)
        for (key, _, quality), crop, ok, value in zip(wanted, aligned, placed, sharp, strict=True):
            if not ok or value < self.config.min_sharpness:
                self.counters["refused_sharpness"] += 1
                continue
            if not self.worker.submit(_Job(key, crop, quality, frame.capture_time, time.time())):
                self.counters["skipped_busy"] += 1
            elif _tracing():  # the latency trace (scripts/bench_recognition.py reads it)
                track = self.identities.evidence(key)
                log.debug(
                    "face queued for embedding", camera=key[0], track=key[1], capture_time=frame.capture_time,
                    first_seen=None if track is None else track.first_seen,
                    embedded=None if track is None else track.embedded,
                )  # fmt: skip

    # -- results --------------------------------------------------------------------------------------------

    def _apply_results(self) -> None:
        while True:
            try:
                done = self.worker.done.get_nowait()
            except queue.Empty:
                return
            self.counters["embedded"] += 1
            decision = self.identities.add(done.key, done.embedding, done.quality, done.capture_time)
            if _tracing():  # the latency trace: what this one face scored
                best = next(iter(self._score(done.embedding)), None)
                log.debug(
                    "face embedding applied", camera=done.key[0], track=done.key[1],
                    capture_time=done.capture_time, decided=decision is not None,
                    best=best and best.name, score=best and round(best.score, 3),
                )  # fmt: skip
            if decision is not None:
                evidence = None
                if decision.stranger:
                    evidence = StrangerEvidence(decision.embedding, done.aligned, self.embedder.model_id)
                self._queue_decision(decision, evidence)

    def _queue_decision(self, decision: Decision, evidence: StrangerEvidence | None = None) -> None:
        key = decision.key
        assert isinstance(key, tuple)
        camera, track_id = key
        pending = self._pending.get(camera)
        if pending is None:
            pending = self._pending[camera] = TrackedFrame(camera, None)
        pending.identities[track_id] = decision.identity
        if evidence is not None:
            pending.strangers[track_id] = evidence
        track = self.identities.evidence(key)
        seconds = max(0.0, time.time() - track.first_seen) if track is not None else None
        if decision.previous is None and seconds is not None:
            # From the face's first frame to its first decision: what a user waits for a name.
            self.decided += 1
            self.decided_seconds += seconds
        log.info(
            "face identified" if decision.identity.name else "face unknown",
            camera=camera, track=track_id, name=decision.identity.name,
            score=round(decision.identity.score, 3), stranger=decision.stranger,
            embeddings=track.embedded if track else None,
            seconds=None if seconds is None else round(seconds, 2),  # since the face's first frame
        )  # fmt: skip
