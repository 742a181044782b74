"""Snapshots: the JPEG crop of the best face, and the ArcFace-aligned 112x112 crop from named landmarks."""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from conftest import asset_path
from PIL import Image

from nvr.contracts.alignment import ARCFACE_TEMPLATE, align_face, align_faces, alignment_matrix
from nvr.contracts.faces import BLAZEFACE_LANDMARKS, SCRFD_LANDMARKS
from nvr.contracts.imaging import load_rgb
from nvr.detector import open_detector
from nvr.events.config import SnapshotConfig
from nvr.events.snapshot import FaceCrop, SnapshotMaker, crop_face, encode_jpeg

IMAGE = "images/cospectrum_newton.png"  # one face, box about [334, 89, 438, 232]


@functools.cache
def newton() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image, its face box and its 5 SCRFD landmarks."""
    image = load_rgb(asset_path(IMAGE))
    with open_detector(asset_path("models/scrfd/det_2.5g.onnx"), "onnx", 0.5) as detector:
        found = detector.detect(image)
    assert len(found) == 1
    return image, found.boxes[0], found.landmarks[0]


def rotate(image: np.ndarray, points: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Rotate the image about its centre (counter-clockwise on screen) and the points with it."""
    h, w = image.shape[:2]
    rotated = np.asarray(Image.fromarray(image).rotate(degrees, resample=Image.Resampling.BICUBIC))
    c = np.array([w / 2, h / 2])
    a = math.radians(degrees)
    # Image y points down, so a counter-clockwise turn on screen is (x, y) -> (x cos + y sin, -x sin + y cos).
    r = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    return rotated, ((points - c) @ r.T + c).astype(np.float32)


def test_crop_has_the_margin_and_follows_the_snapshot_scale() -> None:
    image = np.zeros((180, 320, 3), np.uint8)  # a half-size snapshot of a 640x360 frame
    image[40:60, 100:120] = 255
    box = np.array([200, 80, 240, 120], np.float32)  # frame pixels: (100, 40)-(120, 60) in the snapshot
    landmarks = np.tile(np.array([220, 100], np.float32), (5, 1))  # the box centre
    crop = crop_face(image, 0.5, box, landmarks, SCRFD_LANDMARKS, margin=0.5)
    assert crop is not None
    assert crop.snapshot_pixels.shape == (40, 40, 3)  # 20 px face + 10 px on each side
    assert crop.snapshot_pixels[10:30, 10:30].min() == 255 and crop.snapshot_pixels[:10].max() == 0
    np.testing.assert_allclose(crop.landmarks, np.full((5, 2), 20.0))
    image[:] = 7  # the crop owns its pixels: the shared frame may be overwritten afterwards
    assert crop.pixels.max() == 255


def test_crop_is_clipped_at_the_border_and_none_outside() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    landmarks = np.zeros((5, 2), np.float32)
    crop = crop_face(
        image, 1.0, np.array([-10, 80, 20, 120], np.float32), landmarks, SCRFD_LANDMARKS, margin=0.4
    )
    assert crop is not None and crop.pixels.shape == (36, 32, 3)  # rows 64..100, columns 0..32
    outside = np.array([150, 150, 190, 190], np.float32)
    assert crop_face(image, 1.0, outside, landmarks, SCRFD_LANDMARKS, margin=0.4) is None


def test_jpeg_is_bounded_and_never_upscaled() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (300, 200, 3), np.uint8)
    big = Image.open(io.BytesIO(encode_jpeg(pixels, 150, 90)))
    assert big.format == "JPEG" and big.size == (100, 150)
    small = Image.open(io.BytesIO(encode_jpeg(pixels[:50, :40], 150, 90)))
    assert small.size == (40, 50)
    assert len(encode_jpeg(pixels, 150, 30)) < len(encode_jpeg(pixels, 150, 90))


def test_alignment_puts_the_landmarks_on_the_arcface_template() -> None:
    _, _, landmarks = newton()
    matrix = alignment_matrix(landmarks, SCRFD_LANDMARKS)
    assert matrix is not None
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    template = np.array([ARCFACE_TEMPLATE[n] for n in SCRFD_LANDMARKS])
    assert np.abs(mapped - template).max() < 6.0  # a real face is not exactly the template, but close


def test_aligned_crop_does_not_depend_on_head_roll() -> None:
    image, box, landmarks = newton()
    maker = SnapshotMaker(SnapshotConfig(aligned=True))
    upright = maker.capture(image, 1.0, box, landmarks, SCRFD_LANDMARKS)
    turned_image, turned_landmarks = rotate(image, landmarks, 25.0)
    turned_box = np.concatenate([turned_landmarks.min(0) - 40, turned_landmarks.max(0) + 40])
    turned = maker.capture(turned_image, 1.0, turned_box, turned_landmarks, SCRFD_LANDMARKS)
    assert upright is not None and turned is not None
    a = align_face(upright.pixels, upright.landmarks, SCRFD_LANDMARKS)
    b = align_face(turned.pixels, turned.landmarks, SCRFD_LANDMARKS)
    assert a is not None and b is not None and a.shape == (112, 112, 3)
    inner = (slice(16, 96), slice(16, 96))  # away from the corners the rotation fills differently
    difference = np.abs(a[inner].astype(int) - b[inner].astype(int)).mean()
    assert difference < 12, f"aligned crops differ by {difference:.1f} grey levels on average"
    # Against an unaligned crop of the turned face the difference is large: the test can tell.
    naive = np.asarray(Image.fromarray(turned.snapshot_pixels).resize((112, 112)))
    assert np.abs(a[inner].astype(int) - naive[inner].astype(int)).mean() > 2 * difference
    jpeg = maker.encode_aligned(upright)
    assert jpeg is not None and Image.open(io.BytesIO(jpeg)).size == (112, 112)


def test_alignment_uses_landmarks_by_name() -> None:
    _, _, landmarks = newton()
    five = alignment_matrix(landmarks, SCRFD_LANDMARKS)
    # BlazeFace's points: both eyes, the nose tip and the mouth centre (ears are not in the template).
    by_name = dict(zip(SCRFD_LANDMARKS, landmarks, strict=True))
    mouth_center = (by_name["mouth_right"] + by_name["mouth_left"]) / 2
    blaze = np.array(
        [by_name["right_eye"], by_name["left_eye"], by_name["nose_tip"], mouth_center, [0, 0], [999, 999]],
        np.float32,
    )
    four = alignment_matrix(blaze, BLAZEFACE_LANDMARKS)
    assert five is not None and four is not None
    np.testing.assert_allclose(four, five, atol=0.05 * np.abs(five).max())
    # Order does not matter, names do: the same points listed differently give the same transform.
    order = [2, 0, 4, 1, 3]
    shuffled = alignment_matrix(landmarks[order], tuple(SCRFD_LANDMARKS[i] for i in order))
    assert shuffled is not None
    np.testing.assert_allclose(shuffled, five, atol=1e-9)


def test_alignment_needs_two_known_points() -> None:
    points = np.array([[10, 10], [20, 10]], np.float32)
    assert alignment_matrix(points, ("right_eye", "right_ear_tragion")) is None
    assert alignment_matrix(np.array([[10, 10], [10, 10]], np.float32), ("right_eye", "left_eye")) is None
    assert align_face(np.zeros((20, 20, 3), np.uint8), points, ("nose_tip", "left_ear_tragion")) is None


def test_faces_align_straight_from_the_frame_many_at_once() -> None:
    image, box, landmarks = newton()
    # From the whole frame (only the face's region is read) as from a crop copied out of it.
    crop = SnapshotMaker(SnapshotConfig(aligned=True)).capture(image, 1.0, box, landmarks, SCRFD_LANDMARKS)
    assert crop is not None
    from_crop = align_face(crop.pixels, crop.landmarks, SCRFD_LANDMARKS)
    # A batch: the face, the face again, one whose landmarks cannot place it, one outside the image.
    outside = landmarks + np.float32(10_000)
    batch = np.stack([landmarks, landmarks, np.full_like(landmarks, np.nan), outside])
    aligned, placed = align_faces(image, batch, SCRFD_LANDMARKS)
    assert aligned.shape == (4, 112, 112, 3) and placed.tolist() == [True, True, False, True]
    assert from_crop is not None and np.abs(aligned[0].astype(int) - from_crop.astype(int)).max() <= 1
    np.testing.assert_array_equal(aligned[0], aligned[1])
    assert aligned[0].mean() > 40 and aligned[2].max() == 0 and aligned[3].max() == 0
    # The eyes land where the template puts them: darker than the cheeks below them.
    eye_row, cheek_row = aligned[0, 50:54].mean(), aligned[0, 60:64].mean()
    assert eye_row < cheek_row


def test_snapshots_can_be_disabled() -> None:
    image = np.zeros((20, 20, 3), np.uint8)
    box, landmarks = np.array([0, 0, 10, 10], np.float32), np.zeros((5, 2), np.float32)
    assert (
        SnapshotMaker(SnapshotConfig(enabled=False)).capture(image, 1.0, box, landmarks, SCRFD_LANDMARKS)
        is None
    )
    crop = SnapshotMaker(SnapshotConfig()).capture(image, 1.0, box, landmarks, SCRFD_LANDMARKS)
    assert crop is not None
    assert SnapshotMaker(SnapshotConfig()).encode_aligned(crop) is None  # aligned crops are off by default


def test_snapshot_settings_are_honoured() -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 255, (100, 80, 3), np.uint8)
    crop = FaceCrop(pixels, np.zeros((5, 2), np.float32), SCRFD_LANDMARKS, (10, 10, 70, 90))
    low = SnapshotMaker(SnapshotConfig(quality=5, max_size=64)).encode(crop)
    high = SnapshotMaker(SnapshotConfig(quality=95, max_size=64)).encode(crop)
    assert len(high) > 3 * len(low)
    assert Image.open(io.BytesIO(high)).size == (48, 64)  # the 60x80 snapshot region, longest side 64
