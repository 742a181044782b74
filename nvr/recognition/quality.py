"""Is a face good enough to embed? Size, a frontal pose (from the landmarks) and sharpness.

An embedding of a tiny, turned or blurred face is noise that can name the wrong person, so the recognition
stage embeds only faces that pass these three cheap checks (all computed before the embedder runs, except
sharpness, which needs the aligned crop and is vectorised over a batch of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nvr.contracts.arrays import FloatArray, UInt8Array

# Limits of a "frontal enough" face, as measured on the 5 landmarks (see `pose`). A profile face has its
# nose well outside the eyes' midpoint; a face looking far up or down squeezes the eye-nose or nose-mouth
# span. Measured on the test video: frontal faces |yaw| <= 0.33, profiles 0.6 and more.
MAX_YAW = 0.35  # nose offset from the eyes' midpoint along the eye axis, in eye distances (frontal: ~0)
PITCH_RANGE = (0.4, 3.0)  # eye-to-nose over nose-to-mouth height (frontal, the ArcFace template: ~0.98)
_SHARPNESS_MARGIN = 20  # pixels of the 112x112 crop left out at each side (the alignment's black borders)
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True, slots=True)
class Pose:
    yaw: float  # signed, in eye distances; |yaw| <= MAX_YAW is frontal enough
    pitch: float  # ratio, 1 is level; None-like NaN when the mouth is not known

    @property
    def frontal(self) -> bool:
        low, high = PITCH_RANGE
        pitch_ok = not np.isfinite(self.pitch) or low <= self.pitch <= high
        return bool(abs(self.yaw) <= MAX_YAW and pitch_ok)

    @property
    def frontality(self) -> float:
        """1 for a face looking straight at the camera, falling to 0 at the yaw limit."""
        return float(max(0.0, 1.0 - abs(self.yaw) / MAX_YAW))


def _point(landmarks: FloatArray, names: tuple[str, ...], name: str) -> FloatArray | None:
    return landmarks[names.index(name)] if name in names else None


def pose(landmarks: FloatArray, names: tuple[str, ...]) -> Pose | None:
    """Yaw and pitch proxies from the landmarks (K, 2), or None when the eyes and nose are not all there."""
    right, left, nose = (_point(landmarks, names, n) for n in ("right_eye", "left_eye", "nose_tip"))
    if right is None or left is None or nose is None:
        return None
    axis = (left - right).astype(np.float64)
    eye_distance = float(np.hypot(axis[0], axis[1]))
    if not np.isfinite(eye_distance) or eye_distance < 1e-6:
        return None
    axis /= eye_distance
    normal = np.array([-axis[1], axis[0]])  # points down the face (towards the mouth) in image coordinates
    middle = (left + right) / 2.0
    yaw = float(np.dot(nose - middle, axis)) / eye_distance
    mouth = _point(landmarks, names, "mouth_center")
    corners = [_point(landmarks, names, n) for n in ("mouth_right", "mouth_left")]
    if corners[0] is not None and corners[1] is not None:
        mouth = (corners[0] + corners[1]) / 2.0
    pitch = float("nan")
    if mouth is not None:
        upper = float(np.dot(nose - middle, normal))
        lower = float(np.dot(mouth - nose, normal))
        pitch = upper / lower if lower > 1e-6 else float("inf")
    return Pose(yaw, pitch)


def face_size(box: FloatArray) -> float:
    """The face's smaller side in frame pixels: what `min_face_px` limits."""
    return float(min(box[2] - box[0], box[3] - box[1]))


def sharpness(aligned: UInt8Array) -> FloatArray:
    """Variance of the Laplacian of each aligned crop's grey image (N, 112, 112, 3) -> (N,), inside a margin
    that leaves out the alignment's borders. Higher is sharper; an upscaled or blurred face scores low."""
    if aligned.ndim == 3:
        aligned = aligned[None]
    m = _SHARPNESS_MARGIN
    gray = aligned.astype(np.float32) @ _GRAY  # (N, H, W)
    centre = gray[:, m:-m, m:-m]
    laplacian = (
        gray[:, m - 1 : -m - 1, m:-m]
        + gray[:, m + 1 : gray.shape[1] - m + 1, m:-m]
        + gray[:, m:-m, m - 1 : -m - 1]
        + gray[:, m:-m, m + 1 : gray.shape[2] - m + 1]
        - 4.0 * centre
    )
    return np.asarray(laplacian.reshape(len(gray), -1).var(axis=1), np.float32)


@dataclass(frozen=True, slots=True)
class QualityLimits:
    min_face_px: float
    min_sharpness: float


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    reason: str  # "" when ok, else what failed: "small", "pose", "landmarks"
    score: float  # how good, for picking a track's best faces: size times frontality (0 when not ok)


def assess(box: FloatArray, landmarks: FloatArray, names: tuple[str, ...], limits: QualityLimits) -> Verdict:
    """The checks that need no pixels: size and pose. Sharpness comes after alignment (`sharpness`)."""
    size = face_size(box)
    if not np.isfinite(size) or size < limits.min_face_px:
        return Verdict(False, "small", 0.0)
    found = pose(landmarks, names)
    if found is None:
        return Verdict(False, "landmarks", 0.0)
    if not found.frontal:
        return Verdict(False, "pose", 0.0)
    # Size saturates: beyond ~112 px the aligned crop gains nothing.
    return Verdict(True, "", min(size, 112.0) / 112.0 * (0.5 + 0.5 * found.frontality))
