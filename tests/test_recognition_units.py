"""Recognition's pieces that need no daemon: face quality, per-track identity, the embedding budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from nvr.contracts.faces import SCRFD_LANDMARKS
from nvr.recognition.library import FaceLibrary, PersonError
from nvr.recognition.quality import QualityLimits, assess, pose, sharpness
from nvr.recognition.strangers import StrangerStore
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
    assert assess(small, FRONTAL / 5, SCRFD_LANDMARKS, LIMITS).reason == "small"
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
    assert ids.want(key, 1000.0)
    return ids.add(key, vector, quality)


def test_one_frame_never_names_and_two_agreeing_do() -> None:
    clock = Clock()
    ids = identities(clock)
    assert feed(ids, clock, "t", ALICE) is None
    decision = feed(ids, clock, "t", unit([0.9, 0.1, 0.1, 0]))
    assert decision is not None and decision.identity.name == "Alice" and decision.identity.person_id == "p1"
    assert decision.identity.model == "m1" and not decision.stranger


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
    decision = ids.add("t", nobody, 0.5)
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
