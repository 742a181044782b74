"""ArcFace alignment: the 5 face landmarks onto the standard 112x112 template by a similarity transform.

Face embedders (nvr/families/arcface.py) are trained on faces aligned exactly so; snapshots publish the same
aligned crop. One implementation for both, below every stage.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from nvr.contracts.arrays import Float64Array, FloatArray, RgbImage

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
    src = np.asarray(points, np.float64)[known]
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


def warp_aligned(pixels: RgbImage, matrix: Float64Array) -> RgbImage:
    """The 112x112 crop of `pixels` under `matrix` (image -> template coordinates), bilinear."""
    # Pillow wants the inverse map (output pixel -> input pixel); a similarity inverts in closed form.
    a, b = matrix[1, 1], matrix[1, 0]
    norm = a * a + b * b
    inverse = np.array([[a, b], [-b, a]]) / norm
    offset = -inverse @ matrix[:, 2]
    coefficients = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB").transform(
        (ARCFACE_SIZE, ARCFACE_SIZE),
        Image.Transform.AFFINE,
        tuple(float(c) for c in coefficients),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(image)


def align_to_template(pixels: RgbImage, landmarks: FloatArray, names: tuple[str, ...]) -> RgbImage | None:
    """The face with `landmarks` (in `pixels`' coordinates) aligned to 112x112, or None if they cannot place it."""
    matrix = alignment_matrix(landmarks, names)
    return None if matrix is None else warp_aligned(pixels, matrix)
