"""ArcFace 5-point alignment: a similarity transform puts a face's landmarks onto the 112x112 template.

Both the recognition stage (embeddings) and the event stage (aligned snapshots) use it, so it sits below
them. The warp is numpy, vectorised over faces and pixels, and reads the image it is given directly: pass
the highest-resolution pixels there are (the frame's snapshot image, not the model's letterboxed input),
with the landmarks in that image's pixels.
"""

from __future__ import annotations

import numpy as np

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


def warp_affine(image: RgbImage, inverse: Float64Array, size: int) -> RgbImage:
    """Bilinear samples of `image` (H x W x C) on a size x size grid for each inverse map (N, 2, 3):
    (N, size, size, C) uint8. Pixel centres sit at +0.5 (as in Pillow); outside the image is black."""
    height, width, channels = image.shape
    grid = (np.arange(size, dtype=np.float64) + 0.5)[None, :]
    gx = np.broadcast_to(grid, (size, size)).reshape(-1)
    gy = np.broadcast_to(grid.T, (size, size)).reshape(-1)
    # (N, P) source coordinates, pixel centres at integers.
    sx = inverse[:, 0, 0, None] * gx + inverse[:, 0, 1, None] * gy + inverse[:, 0, 2, None] - 0.5
    sy = inverse[:, 1, 0, None] * gx + inverse[:, 1, 1, None] * gy + inverse[:, 1, 2, None] - 0.5
    x0, y0 = np.floor(sx), np.floor(sy)
    fx, fy = (sx - x0).astype(np.float32), (sy - y0).astype(np.float32)
    x0i, y0i = x0.astype(np.intp), y0.astype(np.intp)
    flat = image.reshape(-1, channels)
    out = np.zeros((*sx.shape, channels), np.float32)
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):  # the four neighbours, each over every face and pixel at once
            x, y = x0i + dx, y0i + dy
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            index = np.where(inside, y * width + x, 0)
            weight = np.where(inside, wx * wy, np.float32(0.0))
            out += flat[index] * weight[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(len(inverse), size, size, channels)


def align_faces(
    image: RgbImage, landmarks: FloatArray, names: tuple[str, ...], size: int = ARCFACE_SIZE
) -> tuple[RgbImage, BoolArray]:
    """Every face aligned to the ArcFace template: (N, size, size, 3) uint8 RGB from `image` and landmarks
    (N, K, 2) in its pixels, and which faces the landmarks could place (the others' crops are black)."""
    count = len(landmarks)
    inverse = np.zeros((count, 2, 3), np.float64)
    placed = np.zeros(count, bool)
    scale = size / ARCFACE_SIZE
    for i in range(count):  # one 4x4 least-squares solve per face; the pixels are done all at once below
        matrix = alignment_matrix(landmarks[i], names)
        if matrix is not None:
            inverse[i], placed[i] = invert_similarity(matrix * scale), True
    if not count:
        return np.zeros((0, size, size, 3), np.uint8), placed
    aligned = warp_affine(image, inverse, size)
    aligned[~placed] = 0
    return aligned, placed


def align_face(
    image: RgbImage, landmarks: FloatArray, names: tuple[str, ...], size: int = ARCFACE_SIZE
) -> RgbImage | None:
    """One face (landmarks (K, 2) in `image`'s pixels) aligned to the template, or None if they cannot
    place it."""
    aligned, placed = align_faces(image, landmarks[None], names, size)
    return aligned[0] if placed[0] else None


def warp_aligned(pixels: RgbImage, matrix: Float64Array) -> RgbImage:
    """The 112x112 crop of `pixels` under `matrix` (image -> template coordinates), bilinear."""
    return np.asarray(warp_affine(pixels, invert_similarity(matrix)[None], ARCFACE_SIZE)[0])


def align_to_template(pixels: RgbImage, landmarks: FloatArray, names: tuple[str, ...]) -> RgbImage | None:
    """The face with `landmarks` (in `pixels`' coordinates) aligned to 112x112, or None."""
    return align_face(pixels, landmarks, names)
