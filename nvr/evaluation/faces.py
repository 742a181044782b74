"""`nvr eval faces`: how well an embedder (with a detector, a threshold and a margin) tells people apart.

A folder per person; the first K usable photos of each person are enrolled, every other photo is a probe
identified against everyone enrolled, exactly as `nvr faces identify` would (largest face, aligned from the
photo's pixels, the same matcher). Reported: rank-1 accuracy (the best candidate is the right person),
identification at the threshold (accepted and right / accepted and wrong), and the verification curve over
every (probe, enrolled person) pair: true-accept rate (TAR, genuine pairs scoring >= t) against
false-accept rate (FAR, impostor pairs scoring >= t), with the threshold that keeps FAR at 1 %.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nvr.contracts.arrays import FloatArray, RgbImage
from nvr.recognition.matcher import Matcher

TARGET_FAR = 0.01


@dataclass(frozen=True, slots=True)
class FaceEvaluation:
    people: int  # enrolled
    enrolled: int  # samples
    probes: int
    rank1: float
    accepted_right: float  # of probes: named, and named right
    accepted_wrong: float  # of probes: named, and named wrong
    threshold: float
    margin: float
    tar: float  # genuine pairs >= threshold
    far: float  # impostor pairs >= threshold
    threshold_at_target: float  # the lowest threshold with FAR <= TARGET_FAR
    tar_at_target: float
    far_at_target: float  # at most TARGET_FAR
    genuine: FloatArray = field(repr=False)
    impostor: FloatArray = field(repr=False)
    refused: tuple[str, ...] = ()  # photos without a usable face

    def roc(self) -> tuple[FloatArray, FloatArray]:
        """(FAR, TAR) at every threshold where either changes, from accepting nothing to everything."""
        thresholds = np.unique(np.concatenate([self.genuine, self.impostor]))[::-1]
        far = _rate_at_least(self.impostor, thresholds)
        tar = _rate_at_least(self.genuine, thresholds)
        return np.concatenate([[0.0], far]).astype(np.float32), np.concatenate([[0.0], tar]).astype(
            np.float32
        )


def _rate_at_least(scores: FloatArray, thresholds: FloatArray) -> FloatArray:
    if len(scores) == 0:
        return np.zeros(len(thresholds), np.float32)
    ordered = np.sort(scores)
    below = np.searchsorted(ordered, thresholds, side="left")
    rates: FloatArray = ((len(ordered) - below) / len(ordered)).astype(np.float32)
    return rates


def threshold_for_far(impostor: FloatArray, target: float = TARGET_FAR) -> float:
    """The lowest threshold (to 1e-4) at which at most `target` of the impostor pairs are accepted."""
    if len(impostor) == 0:
        return float("nan")
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(target * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    # Just above the first impostor score that would exceed the budget.
    return float(np.ceil((float(ordered[allowed]) + 1e-6) * 1e4) / 1e4)


def evaluate_faces(
    crops: dict[str, list[RgbImage]],
    embed: Callable[[list[RgbImage]], FloatArray],
    *,
    enroll: int,
    threshold: float,
    margin: float,
    model_id: str,
    refused: tuple[str, ...] = (),
) -> FaceEvaluation:
    """`crops`: each person's aligned faces in photo order; the first `enroll` are enrolled, the rest
    identified."""
    gallery_vectors: list[FloatArray] = []
    owners: list[str] = []
    probe_faces: list[RgbImage] = []
    probe_people: list[str] = []
    for person, faces in crops.items():
        enrolled, probed = faces[:enroll], faces[enroll:]
        if enrolled:
            gallery_vectors.append(embed(enrolled))
            owners += [person] * len(enrolled)
        if enrolled and probed:  # a probe of someone not enrolled cannot be identified: not counted
            probe_faces += probed
            probe_people += [person] * len(probed)
    gallery = np.concatenate(gallery_vectors) if gallery_vectors else np.zeros((0, 0), np.float32)
    matcher = Matcher(gallery, owners, {p: p for p in owners}, model_id, threshold=threshold, margin=margin)
    probes = embed(probe_faces) if probe_faces else np.zeros((0, matcher.dim), np.float32)
    scores = matcher.scores(probes)  # [probes, people]
    truth = np.array([matcher.person_ids.index(p) for p in probe_people], np.intp)
    count = len(truth)
    genuine_mask = np.zeros(scores.shape, bool)
    genuine_mask[np.arange(count), truth] = True
    genuine, impostor = scores[genuine_mask], scores[~genuine_mask]
    matches = matcher.match(probes)
    named = np.array([m.identity.name is not None for m in matches], bool)
    right = np.array([m.identity.name == p for m, p in zip(matches, probe_people, strict=True)], bool)
    top = np.argmax(scores, axis=1) if count and scores.shape[1] else np.zeros(0, np.intp)
    at_target = threshold_for_far(impostor)
    known = count > 0 and not np.isnan(at_target)
    tar_at_target = float(np.mean(genuine >= at_target)) if known else float("nan")
    far_at_target = float(np.mean(impostor >= at_target)) if known else float("nan")
    return FaceEvaluation(
        people=len(set(owners)),
        enrolled=len(owners),
        probes=count,
        rank1=float(np.mean(top == truth)) if count else float("nan"),
        accepted_right=float(np.mean(named & right)) if count else float("nan"),
        accepted_wrong=float(np.mean(named & ~right)) if count else float("nan"),
        threshold=threshold,
        margin=margin,
        tar=float(np.mean(genuine >= threshold)) if count else float("nan"),
        far=float(np.mean(impostor >= threshold)) if len(impostor) else float("nan"),
        threshold_at_target=at_target,
        tar_at_target=tar_at_target,
        far_at_target=far_at_target,
        genuine=genuine.astype(np.float32),
        impostor=impostor.astype(np.float32),
        refused=refused,
    )


def person_folders(folder: Path, suffixes: tuple[str, ...]) -> dict[str, list[Path]]:
    """`folder/<person>/<photo>` in name order; people without photos are left out."""
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        photos = sorted(p for p in sub.iterdir() if p.suffix.lower() in suffixes)
        if photos:
            found[sub.name] = photos
    return found
