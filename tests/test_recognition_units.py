"""Recognition's pieces that need no daemon: face quality, per-track identity, the embedding budget."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter
from recognition_helpers import RecordingSink

from nvr.contracts.faces import SCRFD_LANDMARKS
from nvr.contracts.identity import Identity
from nvr.recognition.crops import CropStore
from nvr.recognition.library import FaceLibrary, Person, PersonError
from nvr.recognition.output import RecognitionOutput
from nvr.recognition.quality import QualityLimits, assess, pose, sharpness
from nvr.recognition.strangers import StrangerEvent, StrangerStore
from nvr.recognition.track_identity import IdentityRules, PersonScore, TokenBucket, TrackIdentities

# The ArcFace template's landmarks: a perfectly frontal face, 112 px.
FRONTAL = np.array(
    [[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], np.float32
)
BOX = np.array([0.0, 0.0, 112.0, 112.0], np.float32)
LIMITS = QualityLimits(min_face_px=32, min_sharpness=25)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_frontal_face_passes_and_a_profile_fails() -> None:
    assert assess(BOX, FRONTAL, SCRFD_LANDMARKS, LIMITS).ok
    turned = FRONTAL.copy()
    turned[2, 0] += 25.0  # nose far towards one eye: a profile
    verdict = assess(BOX, turned, SCRFD_LANDMARKS, LIMITS)
    assert not verdict.ok and verdict.reason == "pose"
    found = pose(turned, SCRFD_LANDMARKS)
    assert found is not None and found.yaw > 0.5


def test_pose_ignores_roll_and_scale() -> None:
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    rolled = (FRONTAL - 56) @ rotation.T * 3 + 200
    found = pose(rolled, SCRFD_LANDMARKS)
    assert found is not None and abs(found.yaw) < 0.02 and 0.9 < found.pitch < 1.1 and found.frontal


def test_small_faces_and_missing_landmarks_are_refused() -> None:
    small = np.array([0, 0, 20, 20], np.float32)
    assert assess(small, FRONTAL / np.float32(5), SCRFD_LANDMARKS, LIMITS).reason == "small"
    names = ("a", "b", "c", "d", "e")
    assert assess(BOX, FRONTAL, names, LIMITS).reason == "landmarks"


def test_sharpness_drops_with_blur_and_is_vectorised() -> None:
    rng = np.random.default_rng(0)
    sharp = (rng.random((112, 112, 3)) * 255).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(sharp).filter(ImageFilter.GaussianBlur(3)))
    flat = np.full((112, 112, 3), 128, np.uint8)
    values = sharpness(np.stack([sharp, blurred, flat]))
    assert values.shape == (3,)
    assert values[0] > 10 * values[1] > 0 and values[2] == 0
    assert sharpness(sharp)[0] == pytest.approx(values[0])


def test_token_bucket_limits_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(4.0, clock=clock)
    assert sum(bucket.take() for _ in range(10)) == 4  # the burst
    clock.now += 0.5
    assert sum(bucket.take() for _ in range(10)) == 2


def unit(vector: list[float]) -> np.ndarray:
    v = np.asarray(vector, np.float32)
    return v / np.linalg.norm(v)


ALICE, BOB = unit([1, 0, 0, 0]), unit([0, 1, 0, 0])


def scorer(embedding: np.ndarray) -> list[PersonScore]:
    people = [
        PersonScore("p1", "Alice", float(embedding @ ALICE)),
        PersonScore("p2", "Bob", float(embedding @ BOB)),
    ]
    return sorted(people, key=lambda p: -p.score)


def identities(clock: Clock, **rules: float) -> TrackIdentities:
    defaults = dict(threshold=0.5, margin=0.05, stranger_after_embeddings=4, stranger_after_s=3.0)
    return TrackIdentities(IdentityRules(**{**defaults, **rules}), "m1", scorer, 100.0, clock)  # type: ignore[arg-type]


def feed(ids: TrackIdentities, clock: Clock, key: str, vector: np.ndarray, quality: float = 0.5):  # type: ignore[no-untyped-def]
    clock.now += 0.3
    if not ids.want(key, 1000.0):
        clock.now += 1.0  # a decided track is embedded at most once a second
        assert ids.want(key, 1000.0)
    return ids.add(key, vector, quality, capture_time=clock.now)  # capture time runs with the clock here


def test_one_frame_never_names_and_two_agreeing_do() -> None:
    clock = Clock()
    ids = identities(clock)
    just_over = unit([0.55, 0.0, 0.835, 0.0])  # Alice 0.55: over the threshold 0.5, not by 0.15
    assert feed(ids, clock, "t", just_over) is None, "one frame just over the threshold does not name"
    decision = feed(ids, clock, "t", unit([0.9, 0.1, 0.1, 0]))
    assert decision is not None and decision.identity.name == "Alice" and decision.identity.person_id == "p1"
    assert decision.identity.model == "m1" and not decision.stranger
    # One clear, close face (far over the threshold) names at once: no need to wait a detection cycle.
    assert feed(ids, clock, "u", ALICE) is not None


def test_one_bad_frame_does_not_unname() -> None:
    clock = Clock()
    ids = identities(clock)
    for _ in range(3):
        feed(ids, clock, "t", ALICE)
    assert ids.identity("t").name == "Alice"  # type: ignore[union-attr]
    assert feed(ids, clock, "t", BOB, quality=0.9) is None  # best quality, but one frame against three
    assert ids.identity("t").name == "Alice"  # type: ignore[union-attr]


def test_a_stranger_is_decided_once_after_enough_embeddings() -> None:
    clock = Clock()
    ids = identities(clock)
    nobody = unit([0, 0, 1, 0.2])
    decisions = [feed(ids, clock, "t", nobody) for _ in range(8)]
    fired = [d for d in decisions if d is not None]
    assert len(fired) == 1 and fired[0].stranger and fired[0].identity.name is None
    assert decisions.index(fired[0]) == 3  # the 4th embedding: stranger_after_embeddings
    assert len(fired[0].embedding) == 4


def test_a_stranger_is_decided_after_time_with_few_embeddings() -> None:
    clock = Clock()
    ids = identities(clock, stranger_after_embeddings=100)
    nobody = unit([0, 0, 1, 0.2])
    assert feed(ids, clock, "t", nobody) is None
    clock.now = 1003.5  # first_seen was 1000.0
    decision = ids.add("t", nobody, 0.5, capture_time=1002.5)
    assert decision is None, "2.5 s in view (stranger_after_s is 3): not yet"
    decision = ids.add("t", nobody, 0.5, capture_time=1004.1)
    assert decision is not None and decision.stranger


def test_a_named_track_is_never_a_stranger_and_library_changes_rescore() -> None:
    clock = Clock()
    ids = identities(clock)
    nobody = unit([0, 0, 1, 0.2])
    for _ in range(4):
        feed(ids, clock, "t", nobody)
    assert ids.evidence("t").stranger  # type: ignore[union-attr]
    # The user enrols this face as Carol: the next rescore names the open track.
    ids.scorer = lambda e: [PersonScore("p3", "Carol", float(e @ nobody))]
    (decision,) = ids.rescore()
    assert decision.identity.name == "Carol" and not decision.stranger
    ids.scorer = scorer  # Carol removed again: un-named, and no second stranger event
    (decision,) = ids.rescore()
    assert decision.identity.name is None and not decision.stranger


def test_per_track_interval_and_global_budget() -> None:
    clock = Clock()
    ids = TrackIdentities(IdentityRules(threshold=0.5, margin=0.0), "m", scorer, 2.0, clock)
    assert ids.want("a", 0.0)
    assert not ids.want("a", 0.0)  # same track, too soon
    assert ids.want("b", 0.0)
    assert not ids.want("c", 0.0)  # the budget of 2/s is spent
    assert ids.skipped_budget == 1
    clock.now += 0.5
    assert ids.want("c", 0.0)
    assert ids.add("gone", ALICE, 1.0) is None
    # Once decided, a track is embedded at most once a second (enough to notice a change).
    ids.add("a", ALICE, 1.0)
    assert ids.identity("a") is not None
    clock.now += 2.0
    assert ids.want("a", 0.0)
    clock.now += 0.5
    assert not ids.want("a", 0.0)
    clock.now += 0.6
    assert ids.want("a", 0.0)


# --- stranger groups ---------------------------------------------------------------------------------------


def test_the_same_unknown_face_joins_its_group_and_a_new_one_starts_another(tmp_path: Path) -> None:
    library = FaceLibrary(tmp_path / "faces.db")
    store = StrangerStore(library.path)
    before = library.version()
    a, b = unit([1, 0, 0, 0]), unit([0, 1, 0, 0])
    first = store.record(a, "m1", b"jpeg1", camera="door", event_id="e1", time=10.0, join_threshold=0.5)
    again = store.record(unit([0.9, 0.2, 0, 0]), "m1", b"jpeg2", camera="yard", event_id="e2", time=20.0,
                         join_threshold=0.5)  # fmt: skip
    other = store.record(b, "m1", b"jpeg3", camera="door", event_id="e3", time=30.0, join_threshold=0.5)
    assert first.name == "unknown_1" and again.id == first.id and other.name == "unknown_2"
    assert again.sightings == 2 and again.cameras == ("door", "yard") and again.faces == 2
    assert (again.first_seen, again.last_seen) == (10.0, 20.0)
    assert library.version() > before, "stranger changes bump the library's change counter"
    assert [g.name for g in store.groups()] == ["unknown_1", "unknown_2"]
    assert store.face_crop(store.faces(first)[1].id) == b"jpeg2"
    # Another model's embeddings are never compared: a new group.
    assert store.record(a, "m2", b"x", camera="door", event_id="e4", time=40.0, join_threshold=0.5).id == 3


def test_naming_a_group_enrols_its_crops_with_their_embeddings(tmp_path: Path) -> None:
    library = FaceLibrary(tmp_path / "faces.db")
    store = StrangerStore(library.path)
    a = unit([1, 0, 0, 0])
    for i in range(3):
        store.record(
            a, "m1", f"jpeg{i}".encode(), camera="door", event_id=f"e{i}", time=i, join_threshold=0.5
        )
    person, added = store.name(library, "unknown_1", "Alice")
    assert added == 3 and person.name == "Alice" and person.slug == "alice"
    matrix, owners = library.embedding_matrix("m1")
    assert matrix.shape == (3, 4) and owners == [person.id] * 3
    assert library.sample_crop(library.samples(person)[0].id) == b"jpeg0"
    assert store.groups() == []
    # An existing person gets more samples; an unknown group is a one-line error.
    store.record(a, "m1", b"more", camera="door", event_id="e9", time=9, join_threshold=0.5)
    (group,) = store.groups()
    person2, _ = store.name(library, group.name, "alice")
    assert person2.id == person.id and len(library.samples(person)) == 4
    with pytest.raises(PersonError, match="unknown_7"):
        store.name(library, "unknown_7", "Bob")


def test_merge_and_remove_groups(tmp_path: Path) -> None:
    library = FaceLibrary(tmp_path / "faces.db")
    store = StrangerStore(library.path)
    store.record(unit([1, 0, 0, 0]), "m1", b"a", camera="door", event_id="e1", time=1, join_threshold=0.9)
    store.record(unit([0, 1, 0, 0]), "m1", b"b", camera="yard", event_id="e2", time=2, join_threshold=0.9)
    merged = store.merge("unknown_2", "unknown_1")
    assert merged.sightings == 2 and merged.faces == 2 and merged.cameras == ("door", "yard")
    assert [g.name for g in store.groups()] == ["unknown_1"]
    store.remove("unknown_1")
    assert store.groups() == []
    # Group numbers are never reused: a later stranger is not mistaken for a forgotten one.
    group = store.record(
        unit([1, 0, 0, 0]), "m1", b"c", camera="door", event_id="e3", time=3, join_threshold=0.9
    )
    assert group.name == "unknown_3"
    # The library still opens (the extra tables do not make it "not a library").
    library.close()
    store.close()
    with FaceLibrary(tmp_path / "faces.db", create=False) as reopened:
        assert reopened.people() == []


def test_idle_tracks_are_forgotten() -> None:
    clock = Clock()
    ids = identities(clock)
    assert ids.want("a", clock.now)
    clock.now += 10
    assert ids.want("b", clock.now)
    clock.now += 25
    assert ids.prune(30.0) == 1 and ids.evidence("a") is None and ids.evidence("b") is not None


# --- presence ---------------------------------------------------------------------------------------------


def person(pid: str, name: str) -> Person:
    return Person(pid, name, name.lower(), 0.0)


def test_presence_present_on_news_and_absent_after_the_timeout() -> None:
    sink = RecordingSink()
    output = RecognitionOutput(sink, presence_timeout=60)
    output.people([person("p1", "Alice")])
    assert [(s.slug, s.state) for s in sink.presence] == [("alice", "absent")], "nobody present from before"
    alice = Identity("Alice", 0.7, "m", "p1")
    output.sighting(alice, "door", "ev1", 100.0)
    output.sighting(alice, "door", "ev1", 101.0)  # the same event: no news
    output.sighting(Identity(None, 0.1, "m"), "door", "ev2", 101.0)  # nobody: no presence
    assert [(s.state, s.event_id) for s in sink.presence[1:]] == [("present", "ev1")]  # no news
    output.sighting(alice, "door", "ev1", 125.0)  # the same event, 25 s on: a fresh last_seen (refresh 30)
    assert len(sink.presence) == 2
    output.sighting(alice, "door", "ev1", 131.0)
    assert len(sink.presence) == 3 and sink.presence[-1].last_seen == 131.0
    output.sighting(alice, "yard", "ev3", 130.0)  # another camera: news
    assert sink.presence[-1].camera == "yard" and sink.presence[-1].to_dict()["score"] == 0.7
    output.expire(now=190.0)
    assert sink.presence[-1].state == "present"
    output.expire(now=191.0)
    assert sink.presence[-1].to_dict() == {
        "state": "absent", "camera": "yard", "last_seen": 131.0, "event_id": "ev3", "score": 0.7,
    }  # fmt: skip


def test_people_changes_and_restart_reconciliation(tmp_path: Path) -> None:
    published = tmp_path / "published.json"
    sink = RecordingSink()
    output = RecognitionOutput(sink, 60, published=published)
    output.people([person("p1", "Alice"), person("p2", "Bob")])
    output.people([person("p1", "Alicia"), person("p2", "Bob")])
    change = sink.people[-1]
    assert [(a.slug, b.slug) for a, b in change.renamed] == [("alice", "alicia")]
    assert [s.slug for s in change.states] == ["alicia"]
    # The daemon stops; Bob is removed and Alicia renamed meanwhile; at the next start both are cleaned up.
    sink2 = RecordingSink()
    RecognitionOutput(sink2, 60, published=published).people([person("p1", "Ali")])
    (first,) = sink2.people
    assert [p.slug for p in first.removed] == ["bob"]
    assert [(a.slug, b.slug) for a, b in first.renamed] == [("alicia", "ali")]
    assert [(s.slug, s.state) for s in first.states] == [("ali", "absent")]


# --- the event stage with identities --------------------------------------------------------------------


def test_events_carry_identity_updates_at_once_and_strangers_after_their_event(tmp_path: Path) -> None:
    from nvr.contracts.faces import Detections
    from nvr.contracts.frameresult import FrameResult
    from nvr.contracts.tracks import StrangerEvidence, TrackedFace, TrackedFrame
    from nvr.events.config import EventsConfig
    from nvr.events.stage import EventStage

    class Sink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.order: list[str] = []
            self.events: list[Any] = []

        def publish_events(self, events: Sequence[Any]) -> None:
            self.events += events
            self.order += [f"{e.type}:{e.identity.name if e.identity else None}" for e in events]

        def publish_face_count(self, camera: str, count: int) -> None:
            pass

        def close(self, timeout: float = 5.0) -> None:
            pass

        def publish_stranger(self, event: StrangerEvent) -> None:
            super().publish_stranger(event)
            self.order.append("stranger")

    sink = Sink()
    crops = CropStore(tmp_path, keep_days=1, keep_max=10)
    output = RecognitionOutput(sink, 60, crops)
    library = FaceLibrary(tmp_path / "faces.db")
    output.keep_strangers(StrangerStore(library.path), join_threshold=0.5)
    output.people([person("p1", "Alice")])
    stage = EventStage(EventsConfig(update_interval=100), sink, ["door"], recognition=output)
    box = np.array([[100, 100, 212, 212]], np.float32)
    detections = Detections(box, np.array([0.9], np.float32), FRONTAL[None] + 100, SCRFD_LANDMARKS)
    image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)

    def tracked(i: int, **extra: Any) -> TrackedFrame:
        result = FrameResult("door", i, 1000.0 + i, (640, 480), detections, image)
        return TrackedFrame("door", result, (TrackedFace(7, 0, 1000.0, i + 1, True),), **extra)

    stage.handle(tracked(0))
    stage.handle(tracked(1))  # within update_interval: nothing
    alice = Identity("Alice", 0.7, "m", "p1")
    evidence = StrangerEvidence(ALICE, image[:112, :112].copy(), "m")
    stage.handle(TrackedFrame("door", None, identities={7: alice}))  # decided between frames: update now
    stage.handle(tracked(2, identities={7: Identity("Alice", 0.71, "m", "p1")}))  # same person: no update
    stage.handle(
        TrackedFrame("door", None, identities={7: Identity(None, 0.2, "m")}, strangers={7: evidence})
    )
    assert sink.order == ["new:None", "update:Alice", "update:None", "stranger"]
    assert sink.strangers[0].event_id == sink.events[0].id and sink.strangers[0].snapshot is True
    assert sink.strangers[0].group == "unknown_1", "recorded in the stranger groups with its event id"
    assert StrangerStore(library.path).faces(1)[0].event_id == sink.events[0].id
    assert [s.state for s in sink.presence] == ["absent", "present"]
    assert sink.events[1].to_dict()["identity"] == {"name": "Alice", "score": 0.7, "model": "m"}
    stage.close()
    crops.close()
    kept = list((tmp_path / "crops").glob("*.jpg"))
    assert [p.stem for p in kept] == [sink.events[0].id], "the event's best aligned crop is kept"


def test_crops_are_bounded_by_age_and_count(tmp_path: Path) -> None:
    import os

    store = CropStore(tmp_path, keep_days=1, keep_max=3)
    folder = tmp_path / "crops"
    folder.mkdir()
    for i in range(6):
        path = folder / f"1765100000.00000{i}-abc123.jpg"
        path.write_bytes(b"x")
        os.utime(path, (1000.0 + i, 1000.0 + i))
    assert store.prune(now=1000.0 + 86400 + 0.5) == 3  # the oldest is too old; then 3 of 5 left
    assert sorted(p.name[16] for p in folder.glob("*.jpg")) == ["3", "4", "5"]
    store.close()


def test_stranger_and_presence_payloads_match_their_schemas() -> None:
    import json

    import jsonschema

    from nvr.events.payload import SCHEMA_PATH

    folder = SCHEMA_PATH.parent
    stranger = jsonschema.Draft202012Validator(
        json.loads((folder / "stranger_event.schema.json").read_text())
    )
    presence = jsonschema.Draft202012Validator(json.loads((folder / "person_state.schema.json").read_text()))
    event = StrangerEvent("1765100000.123456-abc123", "door", 1765100001.5, "unknown_3", True)
    stranger.validate(event.to_dict())
    stranger.validate({**event.to_dict(), "group": None})
    assert not stranger.is_valid({**event.to_dict(), "group": "someone"})
    sink = RecordingSink()
    output = RecognitionOutput(sink, 60)
    output.people([person("p1", "Alice")])
    output.sighting(Identity("Alice", 0.7, "m", "p1"), "door", "1765100000.123456-abc123", 1765100001.0)
    output.expire(now=1765100100.0)
    for state in sink.presence:
        presence.validate(state.to_dict())
    assert [s.state for s in sink.presence] == ["absent", "present", "absent"]


# --- the recognition stage, with a stand-in embedder ------------------------------------------------------


class PixelEmbedder:
    """Embeds a face as its mean colour (3 values): faces of one colour are one person. Deterministic."""

    model_id = "pixels-1"
    dim = 3

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        self.calls += 1
        centre = aligned[:, 40:72, 40:72].reshape(len(aligned), -1, 3).mean(axis=1).astype(np.float32)
        return np.asarray(centre / np.linalg.norm(centre, axis=1, keepdims=True), np.float32)

    def close(self) -> None:
        pass


def test_the_stage_names_tracks_off_its_thread_and_skips_cameras_without_recognition(tmp_path: Path) -> None:
    import time as time_

    from nvr.contracts.faces import Detections
    from nvr.contracts.frameresult import FrameResult
    from nvr.contracts.tracks import TrackedFace, TrackedFrame
    from nvr.recognition.config import RecognitionConfig
    from nvr.recognition.stage import RecognitionStage

    library = FaceLibrary(tmp_path / "faces.db")
    red = np.array([1.0, 0.05, 0.05], np.float32)
    library.enrol("Red", [(b"jpeg", {"pixels-1": red / np.linalg.norm(red)}, "test")])
    seen: list[TrackedFrame] = []

    class Downstream:
        def handle(self, tracked: TrackedFrame) -> None:
            seen.append(tracked)

    embedder = PixelEmbedder()
    config = RecognitionConfig(enabled=True, min_sharpness=0.0)
    stage = RecognitionStage(
        config, embedder, library, Downstream(), RecognitionOutput(RecordingSink(), 60),
        threshold=0.9, cameras=lambda camera: camera == "door",
    )  # fmt: skip
    rng = np.random.default_rng(3)
    image = rng.integers(0, 40, (240, 320, 3), np.uint8)
    image[:, :, 0] = 230  # a red scene: every face in it is "Red"
    box = np.array([[100, 60, 212, 172]], np.float32)
    landmarks = FRONTAL[None] + np.array([100, 60], np.float32)
    detections = Detections(box, np.array([0.9], np.float32), landmarks, SCRFD_LANDMARKS)
    for camera in ("door", "yard"):
        for i in range(3):
            frame = FrameResult(camera, i, 1000.0 + i, (320, 240), detections, image)
            stage.handle(TrackedFrame(camera, frame, (TrackedFace(5, 0, 1000.0, i + 1, i > 0),)))
            time_.sleep(0.3)  # the embedder thread's turn (and past the per-track interval)
            stage.flush()
    named = [f for f in seen if f.camera == "door" and f.identities.get(5)]
    assert named and named[-1].identities[5].name == "Red" and named[-1].identities[5].model == "pixels-1"
    assert not any(f.identities for f in seen if f.camera == "yard"), "recognition is off on yard"
    assert embedder.calls >= 1 and stage.counters["embedded"] >= 1
    stage.close()
    library.close()


def _red_scene(tmp_path: Path, **config: Any) -> tuple[Any, ...]:
    """A recognition stage over a library with "Red" enrolled, a red scene and two frontal faces in it."""
    from nvr.contracts.faces import Detections
    from nvr.recognition.config import RecognitionConfig
    from nvr.recognition.stage import RecognitionStage

    library = FaceLibrary(tmp_path / "faces.db")
    red = np.array([1.0, 0.05, 0.05], np.float32)
    library.enrol("Red", [(b"jpeg", {"pixels-1": red / np.linalg.norm(red)}, "test")])
    seen: list[Any] = []

    class Downstream:
        def handle(self, tracked: Any) -> None:
            seen.append(tracked)

    clock = Clock()
    stage = RecognitionStage(
        RecognitionConfig(enabled=True, min_sharpness=0.0, **config), PixelEmbedder(), library, Downstream(),
        RecognitionOutput(RecordingSink(), 60), threshold=0.9, clock=clock,
    )  # fmt: skip
    image = np.random.default_rng(3).integers(0, 40, (240, 440, 3), np.uint8)
    image[:, :, 0] = 230
    boxes = np.array([[100, 60, 212, 172], [300, 60, 412, 172]], np.float32)
    landmarks = np.stack(
        [FRONTAL + np.array([100, 60], np.float32), FRONTAL + np.array([300, 60], np.float32)]
    )
    detections = Detections(boxes, np.array([0.9, 0.9], np.float32), landmarks, SCRFD_LANDMARKS)
    return stage, library, image, detections, seen, clock


def _wait_for(condition: Any, stage: Any) -> None:
    import time as time_

    deadline = time_.monotonic() + 30.0  # generous: the embedder thread on a loaded machine
    while not condition() and time_.monotonic() < deadline:
        time_.sleep(0.01)
        stage.flush()


def test_an_undecided_track_is_embedded_on_consecutive_frames_and_a_named_one_rarely(tmp_path: Path) -> None:
    from nvr.contracts.frameresult import FrameResult
    from nvr.contracts.tracks import TrackedFace, TrackedFrame

    stage, library, image, detections, seen, _ = _red_scene(tmp_path)
    key = ("door", 5)

    def frame(i: int) -> TrackedFrame:  # 4 detection frames a second, handled back to back
        result = FrameResult("door", i, 1000.0 + 0.25 * i, (440, 240), detections, image)
        return TrackedFrame("door", result, (TrackedFace(5, 0, 1000.0, i + 1, i > 0),))

    stage.handle(frame(0))
    stage.handle(frame(1))  # the next frame: its face goes to the embedder too (the name needs two)
    assert stage.identities.evidence(key).last_request == 1000.25  # type: ignore[union-attr]
    assert stage.counters["skipped_busy"] == 0
    _wait_for(lambda: stage.counters["embedded"] == 2, stage)
    assert stage.identities.identity(key).name == "Red"  # type: ignore[union-attr]
    assert seen[-1].frame is None and seen[-1].identities[5].name == "Red", "passed on when decided"
    for i in range(2, 5):  # named: embedded again only after decided_interval (1 s of capture time)
        stage.handle(frame(i))
    assert stage.identities.evidence(key).last_request == 1000.25  # type: ignore[union-attr]
    stage.handle(frame(5))
    assert stage.identities.evidence(key).last_request == 1001.25  # type: ignore[union-attr]
    stage.close()
    library.close()


def test_the_budget_goes_to_the_face_embedded_longest_ago(tmp_path: Path) -> None:
    from nvr.contracts.frameresult import FrameResult
    from nvr.contracts.tracks import TrackedFace, TrackedFrame

    stage, library, image, detections, _, clock = _red_scene(tmp_path, max_embeddings_per_s=1.0)
    faces = (TrackedFace(5, 0, 1000.0, 1, False), TrackedFace(6, 1, 1000.0, 1, False))
    for i in range(3):  # one embedding a second for two new faces: they take turns
        stage.handle(
            TrackedFrame("door", FrameResult("door", i, 1000.0 + i, (440, 240), detections, image), faces)
        )
        clock.now += 1.0
    requests = [stage.identities.last_request(("door", track)) for track in (5, 6)]
    assert requests == [1002.0, 1001.0], "track 6, listed second, went before track 5 embedded a moment ago"
    stage.close()
    library.close()


def test_a_face_named_before_its_track_is_confirmed_starts_its_event_at_once() -> None:
    from nvr.contracts.faces import Detections
    from nvr.contracts.frameresult import FrameResult
    from nvr.contracts.tracks import EndedTrack, TrackedFace, TrackedFrame
    from nvr.events.config import EventsConfig
    from nvr.events.stage import EventStage

    class Sink(RecordingSink):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[Any] = []

        def publish_events(self, events: Sequence[Any]) -> None:
            self.events += events

        def publish_face_count(self, camera: str, count: int) -> None:
            pass

    sink = Sink()
    output = RecognitionOutput(sink, 60)
    output.people([person("p1", "Alice")])
    stage = EventStage(EventsConfig(update_interval=100), sink, ["door"], recognition=output)
    boxes = np.array([[100, 100, 212, 212], [300, 100, 412, 212]], np.float32)
    landmarks = np.stack([FRONTAL + 100, FRONTAL + np.array([300, 100], np.float32)])
    detections = Detections(boxes, np.array([0.9, 0.9], np.float32), landmarks, SCRFD_LANDMARKS)
    image = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)
    alice = Identity("Alice", 0.7, "m", "p1")

    def frame(i: int, *faces: TrackedFace, **extra: Any) -> TrackedFrame:
        return TrackedFrame(
            "door", FrameResult("door", i, 1000.0 + i, (640, 480), detections, image), faces, **extra
        )

    def kinds() -> list[tuple[str, str | None]]:
        return [(e.type, e.identity.name if e.identity else None) for e in sink.events]

    # Track 1 (tentative) is named between frames: its event starts then, with the frame's face and crop.
    stage.handle(frame(0, TrackedFace(1, 0, 1000.0, 1, False), TrackedFace(2, 1, 1000.0, 1, False)))
    assert sink.events == [], "tentative tracks are not events"
    stage.handle(TrackedFrame("door", None, identities={1: alice}))
    assert kinds() == [("new", "Alice")]
    assert sink.events[0].start_time == 1000.0 and sink.events[0].snapshot is not None
    # Confirmed at the next frame: the same event goes on; the unnamed track 2 starts only now.
    stage.handle(frame(1, TrackedFace(1, 0, 1000.0, 2, True), TrackedFace(2, 1, 1000.0, 2, True)))
    assert kinds() == [("new", "Alice"), ("new", None)]
    assert len({e.id for e in sink.events}) == 2
    # Named in the frame itself while tentative (identity with the face): new at once, as well.
    stage.handle(
        frame(
            2, TrackedFace(1, 0, 1000.0, 3, True), TrackedFace(3, 1, 1002.0, 1, False), identities={3: alice}
        )
    )
    assert kinds()[-1] == ("new", "Alice") and sink.events[-1].start_time == 1002.0
    # The tracker drops track 3 unconfirmed (missing from the next frame): its event ends there.
    stage.handle(frame(3, TrackedFace(1, 0, 1000.0, 4, True)))
    assert kinds()[-1] == ("end", "Alice") and sink.events[-1].end_time == 1002.0
    # A camera gone quiet ends an event started on a name whose track was never confirmed, too.
    stage.handle(frame(4, TrackedFace(1, 0, 1000.0, 5, True), TrackedFace(4, 1, 1004.0, 1, False)))
    stage.handle(TrackedFrame("door", None, identities={4: alice}))
    stage.handle(TrackedFrame("door", None, ended=(EndedTrack(1, 1000.0, 1004.0, 5),)))
    assert kinds()[-3:] == [("new", "Alice"), ("end", "Alice"), ("end", "Alice")]
    assert {e.id for e in sink.events[-2:]} == {sink.events[0].id, sink.events[-3].id}
    stage.close()
