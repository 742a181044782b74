"""ArcFace 5-point alignment: a similarity transform puts a face's landmarks onto the 112x112 template.

Both the recognition stage (embeddings) and the event stage (aligned snapshots) use it, so it sits below
them. The warp reads the image it is given directly, only the region each face needs: pass the
highest-resolution pixels there are (the frame's snapshot image, not the model's letterboxed input), with
the landmarks in that image's pixels. The pixels are Pillow's affine warp (C); per face in Python there is
only a 4-parameter least-squares solve. (A numpy gather over all faces at once measured 5-20x slower.)
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from nvr.contracts.arrays import BoolArray, Float64Array, FloatArray, RgbImage

ARCFACE_SIZE = 112
# The standard ArcFace 5-point template for 112x112 crops (insightface's `arcface_dst`), keyed by our landmark
# names, which are from the subject's point of view (the subject's right eye is on the image's left).
# `mouth_center` (BlazeFace) is the midpoint of the two mouth corners.
ARCFACE_TEMPLATE: dict[str, tuple[float, float]] = {
    "right_eye": (38.2946, 51.6963),
    "left_eye": (73.5318, 51.5014),
    "nose_tip": (56.0252, 71.7366),
    "mouth_right": (41.5493, 92.3655),
    "mouth_left": (70.7299, 92.2041),
    "mouth_center": (56.1396, 92.2848),
}


def alignment_matrix(points: FloatArray, names: tuple[str, ...]) -> Float64Array | None:
    """The least-squares similarity (2x3) taking the named landmarks onto the ArcFace template, or None.

    Only the landmarks the template knows are used, so any detector with at least both eyes works.
    """
    known = [i for i, name in enumerate(names) if name in ARCFACE_TEMPLATE]
    if len(known) < 2:
        return None
    src = points[known].astype(np.float64)
    dst = np.array([ARCFACE_TEMPLATE[names[i]] for i in known], np.float64)
    if not np.isfinite(src).all():
        return None
    # x' = a*x - b*y + tx,  y' = b*x + a*y + ty, solved for (a, b, tx, ty) in one linear least-squares system.
    k = len(known)
    system = np.zeros((2 * k, 4), np.float64)
    system[0::2, 0], system[0::2, 1], system[0::2, 2] = src[:, 0], -src[:, 1], 1.0
    system[1::2, 0], system[1::2, 1], system[1::2, 3] = src[:, 1], src[:, 0], 1.0
    (a, b, tx, ty), _, rank, _ = np.linalg.lstsq(system, dst.reshape(-1), rcond=None)
    if rank < 4 or a * a + b * b < 1e-12:
        return None  # the points coincide: no orientation or scale to recover
    return np.array([[a, -b, tx], [b, a, ty]], np.float64)


def invert_similarity(matrix: Float64Array) -> Float64Array:
    """The inverse map of a similarity (output pixel -> input pixel), in closed form."""
    a, b = matrix[1, 1], matrix[1, 0]
    linear = np.array([[a, b], [-b, a]]) / (a * a + b * b)
    return np.concatenate([linear, (-linear @ matrix[:, 2])[:, None]], axis=1)


def warp_face(image: RgbImage, inverse: Float64Array, size: int) -> RgbImage:
    """Bilinear size x size samples of `image` through the inverse map (2x3, output -> input pixels).

    Only the region the map reads is handed to Pillow's affine warp (C, no copy of the whole frame);
    pixel centres sit at +0.5, and what falls outside the image is black."""
    height, width = image.shape[:2]
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    left, top = np.floor(corners.min(axis=0)).astype(int) - 1
    right, bottom = np.ceil(corners.max(axis=0)).astype(int) + 1
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if right - left < 1 or bottom - top < 1:
        return np.zeros((size, size, 3), np.uint8)  # the face lies outside the image
    shifted = inverse - np.array([[0.0, 0.0, left], [0.0, 0.0, top]])
    region = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]), "RGB")
    warped = region.transform(
        (size, size), Image.Transform.AFFINE, tuple(shifted.reshape(-1).tolist()), Image.Resampling.BILINEAR
    )
    return np.asarray(warped)


def warp_affine(image: RgbImage, inverse: Float64Array, size: int) -> RgbImage:
    """`warp_face` for each inverse map of (N, 2, 3): (N, size, size, 3) uint8."""
    out = np.zeros((len(inverse), size, size, 3), np.uint8)
    for i, face in enumerate(inverse):
        out[i] = warp_face(image, face, size)
    return out


def align_faces(
    image: RgbImage, landmarks: FloatArray, names: tuple[str, ...], size: int = ARCFACE_SIZE
) -> tuple[RgbImage, BoolArray]:
    """Every face aligned to the ArcFace template: (N, size, size, 3) uint8 RGB from `image` and landmarks
    (N, K, 2) in its pixels, and which faces the landmarks could place (the others' crops are black)."""
    count = len(landmarks)
    aligned = np.zeros((count, size, size, 3), np.uint8)
    placed = np.zeros(count, bool)
    for i in range(count):
        matrix = alignment_matrix(landmarks[i], names)
        if matrix is not None:
            aligned[i] = warp_face(image, invert_similarity(matrix * (size / ARCFACE_SIZE)), size)
            placed[i] = True
    return aligned, placed


def align_face(
    image: RgbImage, landmarks: FloatArray, names: tuple[str, ...], size: int = ARCFACE_SIZE
) -> RgbImage | None:
    """One face (landmarks (K, 2) in `image`'s pixels) aligned to the template, or None if they cannot
    place it."""
    aligned, placed = align_faces(image, landmarks[None], names, size)
    return aligned[0] if placed[0] else None
