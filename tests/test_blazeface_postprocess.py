"""BlazeFace postprocessing: anchors, decoding, score threshold/clipping and weighted NMS, without a model."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nvr.contracts.faces import BLAZEFACE_LANDMARKS
from nvr.contracts.geometry import Letterbox
from nvr.contracts.tensors import QuantInfo, RawOutput
from nvr.errors import ModelError
from nvr.postprocess.blazeface import (
    BACK_CAMERA,
    FULL_RANGE,
    SHORT_RANGE,
    BlazeFacePostprocessor,
    anchor_options_for,
    blazeface_anchor_count,
    generate_anchors,
    weighted_nms,
)


def test_generated_anchors_equal_the_ports_anchor_files(asset: Callable[[str], Path]) -> None:
    front = np.load(asset("models/blazeface/anchors.npy"))
    back = np.load(asset("models/blazeface/anchorsback.npy"))
    np.testing.assert_array_equal(generate_anchors(SHORT_RANGE), front.astype(np.float32))
    np.testing.assert_array_equal(generate_anchors(BACK_CAMERA), back.astype(np.float32))


def test_full_range_anchors_are_one_per_cell_of_a_48x48_grid() -> None:
    anchors = generate_anchors(FULL_RANGE)
    assert anchors.shape == (2304, 4)
    grid = anchors[:, :2].reshape(48, 48, 2)
    centres = (np.arange(48) + 0.5) / 48
    np.testing.assert_allclose(grid[0, :, 0], centres, rtol=1e-6)  # x varies along a row
    np.testing.assert_allclose(grid[:, 0, 1], centres, rtol=1e-6)  # y down the rows
    assert np.all(anchors[:, 2:] == 1.0)


def test_anchor_layout_is_chosen_by_input_size_and_anchor_count() -> None:
    assert anchor_options_for(128, 128, 896) is SHORT_RANGE
    assert anchor_options_for(256, 256, 896) is BACK_CAMERA
    assert anchor_options_for(192, 192, 2304) is FULL_RANGE
    with pytest.raises(ModelError, match="192x192 input with 896 anchors"):
        anchor_options_for(192, 192, 896)


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ([(1, 896, 16), (1, 896, 1)], 896),
        ([("batch", 2304, 1), ("batch", 2304, 16)], 2304),
        ([(896, 16), (896, 1)], 896),
        ([(1, 896, 16), (1, 2304, 1)], None),
        ([(12800, 1), (3200, 1), (800, 1), (12800, 4), (3200, 4), (800, 4)], None),  # SCRFD
        ([(1, 1000, 16), (1, 1000, 1)], None),
    ],
)
def test_blazeface_outputs_are_recognised_by_shape(
    shapes: list[tuple[int | str, ...]], expected: int | None
) -> None:
    assert blazeface_anchor_count(shapes) == expected


def reference_weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, threshold: float
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's WeightedNonMaxSuppression, one candidate at a time (the test's independent oracle)."""
    remaining = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    while remaining:
        best = remaining[0]
        cluster: list[int] = []
        rest: list[int] = []
        for i in remaining:
            (cluster if _iou(boxes[best], boxes[i]) > threshold or i == best else rest).append(i)
        w = scores[cluster]
        out.append(((w[:, None] * boxes[cluster]).sum(0) / w.sum(), float(scores[best]),
                    (w[:, None, None] * points[cluster]).sum(0) / w.sum()))  # fmt: skip
        remaining = rest
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_weighted_nms_blends_each_cluster_by_score() -> None:
    boxes = np.array([[10, 10, 30, 30], [12, 10, 32, 30], [100, 100, 120, 120]], np.float32)
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    points = np.repeat(boxes[:, None, :2], 6, axis=1).copy()
    out_boxes, out_scores, out_points = weighted_nms(boxes, scores, points)
    np.testing.assert_allclose(out_scores, [0.9, 0.7])
    np.testing.assert_allclose(out_boxes[0], [10 + 2 * 0.6 / 1.5, 10, 30 + 2 * 0.6 / 1.5, 30], rtol=1e-6)
    np.testing.assert_allclose(out_boxes[1], boxes[2])
    np.testing.assert_allclose(out_points[0, :, 0], 10 + 2 * 0.6 / 1.5, rtol=1e-6)


def test_weighted_nms_matches_mediapipes_algorithm_on_random_candidates() -> None:
    rng = np.random.default_rng(8)
    for _ in range(30):
        n = int(rng.integers(1, 200))  # both of nms's paths: dense below 64 boxes, sweep above
        xy = rng.uniform(0, 100, (n, 2))
        size = rng.uniform(5, 40, (n, 1))
        boxes = np.concatenate((xy, xy + size), axis=1).astype(np.float32)
        scores = rng.uniform(0.5, 1.0, n).astype(np.float32)
        points = rng.uniform(0, 140, (n, 6, 2)).astype(np.float32)
        out_boxes, out_scores, out_points = weighted_nms(boxes, scores, points, 0.3)
        expected = reference_weighted_nms(boxes, scores, points, 0.3)
        assert len(out_scores) == len(expected)
        for i, (box, score, pts) in enumerate(expected):
            np.testing.assert_allclose(out_boxes[i], box, rtol=1e-5, atol=1e-4)
            assert out_scores[i] == pytest.approx(score)
            np.testing.assert_allclose(out_points[i], pts, rtol=1e-5, atol=1e-4)


def test_weighted_nms_survives_scores_that_underflowed_to_zero() -> None:
    """At threshold 0, logits below about -88 give a float32 sigmoid of exactly 0."""
    boxes = np.array([[10, 10, 30, 30], [12, 10, 32, 30]], np.float32)
    points = np.zeros((2, 6, 2), np.float32)
    out_boxes, out_scores, _ = weighted_nms(boxes, np.zeros(2, np.float32), points)
    assert out_scores.tolist() == [0.0]
    np.testing.assert_allclose(out_boxes[0], [11, 10, 31, 30])


def synthetic_outputs(anchor: int, logit: float, num_anchors: int = 896) -> list[RawOutput]:
    """All anchors far below threshold except one, whose box and keypoints are known offsets."""
    regressors = np.zeros((1, num_anchors, 16), np.float32)
    # centre offset (+4, -2), size 20 x 24, keypoints at centre + (k, 2k) before the anchor shift
    regressors[0, anchor, :4] = [4, -2, 20, 24]
    regressors[0, anchor, 4:] = np.array([[k, 2 * k] for k in range(6)], np.float32).ravel()
    scores = np.full((1, num_anchors, 1), -50.0, np.float32)
    scores[0, anchor, 0] = logit
    return [RawOutput("classificators", scores), RawOutput("regressors", regressors)]


def test_decode_maps_box_and_keypoints_through_the_letterbox() -> None:
    post = BlazeFacePostprocessor(128, 128, 0.5)
    anchor = 513  # first anchor of the 8x8 (stride 16) map: centre (8, 8) input pixels
    letterbox = Letterbox.fit(640, 320, 128, 128)  # 5 source pixels per input pixel, image in the top half
    faces = post.decode(synthetic_outputs(anchor, logit=3.0), letterbox)
    assert len(faces) == 1
    assert faces.landmark_names == BLAZEFACE_LANDMARKS
    assert faces.scores[0] == pytest.approx(1 / (1 + math.exp(-3.0)), rel=1e-6)
    cx, cy = 8 + 4, 8 - 2
    np.testing.assert_allclose(faces.boxes[0], np.array([cx - 10, cy - 12, cx + 10, cy + 12]) * 5, rtol=1e-6)
    expected_points = np.array([[8 + k, 8 + 2 * k] for k in range(6)], np.float32) * 5
    np.testing.assert_allclose(faces.landmarks[0], expected_points, rtol=1e-6)


def test_scores_are_thresholded_after_clipping_and_sigmoid() -> None:
    post = BlazeFacePostprocessor(128, 128, 0.75)
    logit = math.log(0.75 / 0.25)
    empty = post.decode(synthetic_outputs(10, logit - 1e-3), Letterbox.fit(128, 128, 128, 128))
    assert len(empty) == 0 and empty.landmarks.shape == (0, 6, 2)
    assert len(post.decode(synthetic_outputs(10, logit + 1e-3), Letterbox.fit(128, 128, 128, 128))) == 1
    huge = post.decode(synthetic_outputs(10, 1e6), Letterbox.fit(128, 128, 128, 128))
    assert huge.scores[0] == pytest.approx(1 / (1 + math.exp(-100.0)))


def test_a_threshold_changed_on_a_running_postprocessor_takes_effect() -> None:
    # The detection stage sets score_threshold on a config reload; the logit gate must follow it.
    post = BlazeFacePostprocessor(128, 128, 0.75)
    letterbox = Letterbox.fit(128, 128, 128, 128)
    middling = synthetic_outputs(10, math.log(0.6 / 0.4))  # scores 0.6
    assert len(post.decode(middling, letterbox)) == 0
    post.score_threshold = 0.5
    assert len(post.decode(middling, letterbox)) == 1
    post.score_threshold = 0.7
    assert len(post.decode(middling, letterbox)) == 0


def test_quantized_outputs_decode_like_float_ones() -> None:
    post = BlazeFacePostprocessor(192, 192, 0.5, num_anchors=2304)
    floats = synthetic_outputs(1200, logit=2.0, num_anchors=2304)
    quant = {"classificators": QuantInfo.per_tensor(0.5, 128), "regressors": QuantInfo.per_tensor(0.25, 100)}
    quantized = []
    for output in floats:
        q = quant[output.name]
        quantized.append(RawOutput(output.name, q.quantize(np.asarray(output.data, np.float32)), q))
    letterbox = Letterbox.fit(192, 192, 192, 192)
    expected, got = post.decode(floats, letterbox), post.decode(quantized, letterbox)
    assert len(got) == len(expected) == 1
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=0.25)
    np.testing.assert_allclose(got.landmarks, expected.landmarks, atol=0.25)


def test_outputs_that_do_not_match_the_anchors_are_a_model_error() -> None:
    post = BlazeFacePostprocessor(128, 128)
    with pytest.raises(ModelError, match="896 anchors"):
        post.decode(synthetic_outputs(0, 1.0, num_anchors=2304), Letterbox.fit(128, 128, 128, 128))
