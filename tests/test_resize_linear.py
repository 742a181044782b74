"""The model-input resizer has OpenCV's INTER_LINEAR semantics, checked against OpenCV itself.

Pixels: within one grey level of `cv2.resize` for shrinking, enlarging and odd sizes, stills and video
frames alike. Faces: the same SCRFD model and postprocessing fed nvr's letterbox or a `cv2.resize` one give
the same faces (IoU >= 0.99, landmarks within 0.1 px) on the dev and asset images, and the same WIDER AP.
"""

from __future__ import annotations

from collections.abc import Callable

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest
from conftest import asset_path

from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections
from nvr.contracts.geometry import Letterbox
from nvr.contracts.imaging import Resizer, letterbox_into, load_rgb, resize_linear
from nvr.detector import FaceDetector, open_detector
from nvr.evaluation.groundtruth import SETTINGS, load_ground_truth
from nvr.evaluation.predictions import detections_to_wider
from nvr.evaluation.protocol import evaluate
from nvr.evaluation.widerface import EVAL_SCORE_THRESHOLD, find_images

MODEL = "models/scrfd/det_2.5g.onnx"
ASSET_IMAGES = "images"
WIDER_IMAGES = "widerface/images"
WIDER_GT = "widerface/gt"
FACE_SCORE = 0.5  # the daemon's default threshold: faces compared
DETECT_SCORE = 0.3  # where their counterparts are looked for


def textured(width: int, height: int, seed: int = 0) -> RgbImage:
    """A picture with detail at every scale (noise smoothed a little), so every tap matters."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.asarray(cv2.GaussianBlur(noise, (3, 3), 0.8), np.uint8)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((1920, 1080), (640, 360)),  # shrink by 3: every tap lands on a pixel
        ((1280, 720), (640, 360)),  # shrink by 2: every tap halfway
        ((2048, 1150), (640, 359)),
        ((1023, 767), (640, 479)),
        ((500, 333), (640, 426)),  # enlarge
        ((128, 128), (640, 640)),
        ((7, 5), (3, 2)),
        ((1, 1), (4, 3)),
    ],
)
def test_linear_resize_matches_opencv(src: tuple[int, int], dst: tuple[int, int]) -> None:
    image = textured(*src)
    np.testing.assert_array_equal(
        resize_linear(image, *dst), cv2.resize(image, dst, interpolation=cv2.INTER_LINEAR)
    )


def test_linear_resize_is_not_a_smoothing_filter() -> None:
    """Shrinking by 3 with INTER_LINEAR picks the middle pixel of each 3x3 block: no low-pass at all."""
    image = textured(96, 48)
    np.testing.assert_array_equal(resize_linear(image, 32, 16), image[1::3, 1::3])


def test_linear_resize_blends_the_two_nearest_pixels() -> None:
    """Shrinking by 2: each output is the mean of a 2x2 block (half-pixel centres), rounded."""
    image = textured(64, 32).astype(np.uint16)
    expected = (image[0::2, 0::2] + image[0::2, 1::2] + image[1::2, 0::2] + image[1::2, 1::2] + 2) // 4
    difference = np.abs(resize_linear(image.astype(np.uint8), 32, 16).astype(np.int16) - expected)
    assert difference.max() <= 1  # rounding of the two passes


def test_letterbox_fills_the_top_left_and_zeroes_the_rest() -> None:
    image = textured(1280, 720)
    out = np.full((640, 640, 3), 77, np.uint8)
    letterbox = letterbox_into(image, out)
    assert (letterbox.resized_width, letterbox.resized_height) == (640, 360)
    np.testing.assert_array_equal(out[:360], cv2.resize(image, (640, 360), interpolation=cv2.INTER_LINEAR))
    assert not out[360:].any()


def test_video_frames_resize_like_their_rgb_picture() -> None:
    """A decoded frame (YUV) is converted to RGB at its own size, then resized exactly like a still."""
    rgb = textured(1280, 720, seed=3)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    as_rgb = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
    resizer = Resizer()
    from_frame = np.zeros((640, 640, 3), np.uint8)
    from_still = np.zeros((640, 640, 3), np.uint8)
    for _ in range(2):  # the second call runs on the cached swscale context
        resizer.letterbox_into(frame, from_frame)
    letterbox_into(as_rgb, from_still)
    np.testing.assert_array_equal(from_frame, from_still)


def test_a_frame_of_the_input_size_is_copied_unchanged() -> None:
    """A 640x360 sub-stream into a 640x640 input needs no resize at all."""
    image = textured(640, 360)
    out = np.zeros((640, 640, 3), np.uint8)
    Resizer().letterbox_into(image, out)
    np.testing.assert_array_equal(out[:360], image)


# ---- faces: nvr's letterbox against a cv2.resize one, same model and postprocessing -------------------


def cv2_reference(detector: FaceDetector) -> Callable[[RgbImage], Detections]:
    """The detector with its model input made by `cv2.resize(..., INTER_LINEAR)` instead of nvr's resizer."""
    backend = detector.backend
    buffer = np.zeros((backend.input_height, backend.input_width, 3), np.uint8)

    def detect(image: RgbImage) -> Detections:
        letterbox = Letterbox.fit(image.shape[1], image.shape[0], buffer.shape[1], buffer.shape[0])
        size = (letterbox.resized_width, letterbox.resized_height)
        buffer[...] = 0
        buffer[: size[1], : size[0]] = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return detector.postprocessor.decode(backend.infer(buffer), letterbox)

    return detect


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """IoU of every box in `a` with every box in `b`, both (N, 4) x1, y1, x2, y2 (continuous coordinates)."""
    a64, b64 = a.astype(np.float64)[:, None], b.astype(np.float64)[None]
    width = np.clip(np.minimum(a64[..., 2], b64[..., 2]) - np.maximum(a64[..., 0], b64[..., 0]), 0, None)
    height = np.clip(np.minimum(a64[..., 3], b64[..., 3]) - np.maximum(a64[..., 1], b64[..., 1]), 0, None)
    inter = width * height
    area_a = (a64[..., 2] - a64[..., 0]) * (a64[..., 3] - a64[..., 1])
    area_b = (b64[..., 2] - b64[..., 0]) * (b64[..., 3] - b64[..., 1])
    return np.asarray(inter / (area_a + area_b - inter), np.float64)


def matched_faces(
    ours: Detections, reference: Detections, scale: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], int]:
    """Each face either side scored >= FACE_SCORE against its best match on the other side (found at the
    lower DETECT_SCORE, so a face scored 0.501 on one side and 0.499 on the other still pairs up): IoUs,
    worst landmark distances in model-input pixels (source pixels times `scale`), and how many such faces
    have no counterpart above IoU 0.5."""
    iou = box_iou(reference.boxes, ours.boxes)
    pairs = [
        (i, j, iou[i, j])
        for i, j in zip(*np.nonzero(iou >= 0.5), strict=True)
        if max(reference.scores[i], ours.scores[j]) >= FACE_SCORE
    ]
    paired_ref, paired_ours = {i for i, _, _ in pairs}, {j for _, j, _ in pairs}
    unmatched = sum(
        1 for i in range(len(reference)) if reference.scores[i] >= FACE_SCORE and i not in paired_ref
    )
    unmatched += sum(1 for j in range(len(ours)) if ours.scores[j] >= FACE_SCORE and j not in paired_ours)
    ious = np.array([v for _, _, v in pairs], np.float64)
    distances = np.array(
        [
            np.linalg.norm(reference.landmarks[i] - ours.landmarks[j], axis=1).max() * scale
            for i, j, _ in pairs
        ],
        np.float64,
    )
    return ious, distances, unmatched


@pytest.fixture(scope="module")
def detectors() -> tuple[Callable[[RgbImage], Detections], Callable[[RgbImage], Detections]]:
    detector = open_detector(asset_path(MODEL), "onnx", DETECT_SCORE)
    return detector.detect, cv2_reference(detector)


@pytest.mark.slow
@pytest.mark.parametrize("folder", [ASSET_IMAGES, WIDER_IMAGES])
def test_faces_match_a_cv2_resize_reference(
    folder: str, detectors: tuple[Callable[[RgbImage], Detections], Callable[[RgbImage], Detections]]
) -> None:
    ours_detect, reference_detect = detectors
    paths = sorted(p for p in asset_path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".png"))
    assert len(paths) >= (79 if folder == WIDER_IMAGES else 15)
    ious: list[float] = []
    distances: list[float] = []
    for path in paths:
        image = load_rgb(path)
        ours, reference = ours_detect(image), reference_detect(image)
        scale = Letterbox.fit(image.shape[1], image.shape[0], 640, 640).scale_x
        iou, distance, unmatched = matched_faces(ours, reference, scale)
        assert unmatched == 0, path.name
        ious += iou.tolist()
        distances += distance.tolist()
    assert len(ious) > 50
    assert min(ious) >= 0.99, f"worst face IoU {min(ious):.4f}"
    assert max(distances) <= 0.1, f"worst landmark {max(distances):.3f} px (model input)"
    print(f"{folder}: {len(ious)} faces, IoU mean {np.mean(ious):.5f} min {min(ious):.5f}; landmarks"
          f" mean {np.mean(distances):.4f} max {max(distances):.4f} px (model input)")  # fmt: skip


@pytest.mark.slow
def test_wider_ap_equals_the_cv2_resize_reference() -> None:
    ground_truth = load_ground_truth(asset_path(WIDER_GT))
    images = find_images(asset_path(WIDER_IMAGES), ground_truth)
    assert len(images) == 79
    with open_detector(asset_path(MODEL), "onnx", EVAL_SCORE_THRESHOLD) as detector:
        reference_detect = cv2_reference(detector)
        ours, reference = {}, {}
        for image in images:
            rgb = load_rgb(image.path)
            ours[image.name] = detections_to_wider(detector.detect(rgb))
            reference[image.name] = detections_to_wider(reference_detect(rgb))
    ours_ap, reference_ap = evaluate(ground_truth, ours), evaluate(ground_truth, reference)
    for setting in SETTINGS:
        # AP in percent, as the README reports it: equal within 0.2 points.
        assert abs(ours_ap.ap(setting) - reference_ap.ap(setting)) * 100 <= 0.2, setting


def test_resizer_follows_a_change_of_frame_size() -> None:
    """A stream that changes resolution is resized right (swscale's context follows the source size)."""
    resizer = Resizer()
    out = np.zeros((640, 640, 3), np.uint8)
    for size in ((1280, 720), (1920, 1080), (1280, 720)):
        frame = av.VideoFrame.from_ndarray(textured(*size), format="rgb24").reformat(format="yuv420p")
        resizer.letterbox_into(frame, out)
        expected = cv2.resize(frame.to_ndarray(format="rgb24"), (640, 360), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out[:360], expected)
