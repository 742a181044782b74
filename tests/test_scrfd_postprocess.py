"""SCRFD float path: every ONNX export decodes by shape, and the fast decode equals the plain reference."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from reference_scrfd import greedy_nms, reference_decode
from scrfd_helpers import ScrfdOnnx, model_input

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.contracts.geometry import Letterbox
from nvr.contracts.tensors import RawOutput
from nvr.errors import ExitCode, ModelError
from nvr.postprocess import nms as nms_module
from nvr.postprocess.nms import nms
from nvr.postprocess.scrfd import ScrfdPostprocessor

FAMILIES = {
    "500m": ["det_500m.onnx", "scrfd_500m_bnkps_shape640x640.onnx", "scrfd_500m_kps_opencv.onnx"],
    "2.5g": ["det_2.5g.onnx", "scrfd_2.5g_bnkps_shape640x640.onnx", "scrfd_2.5g_kps_opencv.onnx"],
}
# image, faces SCRFD-2.5G finds at threshold 0.5 (the README's counts: t1 6, selfie ~150, solvay 29, newton 1)
IMAGES = [
    ("insightface_t1.jpg", 6),
    ("hpc203_selfie.jpg", 151),  # with insightface's INTER_LINEAR input resize (152 with swscale's)
    ("cospectrum_solvay_conference_1927.png", 29),
    ("cospectrum_newton.png", 1),
    ("face_recognition_two_people.jpg", 2),
]

Asset = Callable[[str], Path]


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """IoU matrix (len(a), len(b)) of x1, y1, x2, y2 boxes, continuous coordinates."""
    a64, b64 = a.astype(np.float64)[:, None, :], b.astype(np.float64)[None, :, :]
    w = np.clip(np.minimum(a64[..., 2], b64[..., 2]) - np.maximum(a64[..., 0], b64[..., 0]), 0, None)
    h = np.clip(np.minimum(a64[..., 3], b64[..., 3]) - np.maximum(a64[..., 1], b64[..., 1]), 0, None)
    inter = w * h
    area_a = (a64[..., 2] - a64[..., 0]) * (a64[..., 3] - a64[..., 1])
    area_b = (b64[..., 2] - b64[..., 0]) * (b64[..., 3] - b64[..., 1])
    result: npt.NDArray[np.float64] = inter / (area_a + area_b - inter)
    return result


def assert_same_faces(
    ours: Detections, reference: Detections, iou: float = 0.99, landmark_px: float = 0.5
) -> None:
    assert len(ours) == len(reference)
    if len(ours) == 0:
        return
    np.testing.assert_array_equal(ours.scores, reference.scores)  # same faces, same order
    # Weak candidates at a low threshold can decode to empty boxes: IoU only means something for real ones.
    real = (reference.boxes[:, 2] - reference.boxes[:, 0] > 1) & (
        reference.boxes[:, 3] - reference.boxes[:, 1] > 1
    )
    assert np.diag(box_iou(ours.boxes[real], reference.boxes[real])).min() >= iou
    assert np.abs(ours.boxes - reference.boxes).max() <= landmark_px
    assert np.abs(ours.landmarks - reference.landmarks).max() <= landmark_px


@pytest.fixture(scope="module")
def scrfd_2_5g() -> ScrfdOnnx:
    from conftest import asset_path

    return ScrfdOnnx(asset_path("models/scrfd/det_2.5g.onnx"))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_onnx_export_decodes_by_shape_and_a_family_agrees(asset: Asset, family: str) -> None:
    image = asset("images/insightface_t1.jpg")
    results = []
    for name in FAMILIES[family]:
        outputs, letterbox = ScrfdOnnx(asset(f"models/scrfd/{name}")).run(image)
        results.append(ScrfdPostprocessor().decode(outputs, letterbox))
    assert [len(r) for r in results] == [6, 6, 6]
    for other in results[1:]:
        # Same weights under different names and shapes: the same faces, to float noise.
        assert np.diag(box_iou(results[0].boxes, other.boxes)).min() > 0.999
        assert np.abs(results[0].landmarks - other.landmarks).max() < 0.05
        assert np.abs(results[0].scores - other.scores).max() < 1e-4


@pytest.mark.parametrize(("image", "faces"), IMAGES)
@pytest.mark.parametrize("threshold", [0.5, 0.02])
def test_float_path_equals_reference_decode(
    asset: Asset, scrfd_2_5g: ScrfdOnnx, image: str, faces: int, threshold: float
) -> None:
    outputs, letterbox = scrfd_2_5g.run(asset(f"images/{image}"))
    ours = ScrfdPostprocessor(score_threshold=threshold).decode(outputs, letterbox)
    reference = reference_decode(outputs, letterbox, threshold)
    assert_same_faces(ours, reference)
    if threshold == 0.5:
        assert len(ours) == faces
    else:
        assert len(ours) > faces  # the evaluation threshold keeps many weak candidates through NMS
    assert ours.landmark_names == SCRFD_LANDMARKS
    assert ours.boxes.dtype == ours.scores.dtype == ours.landmarks.dtype == np.float32
    assert np.all(np.diff(ours.scores) <= 0)


def test_newton_face_is_where_the_readme_says(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs, letterbox = scrfd_2_5g.run(asset("images/cospectrum_newton.png"))
    (face,) = ScrfdPostprocessor().decode(outputs, letterbox)
    np.testing.assert_allclose(face.box, [334, 89, 438, 232], atol=2.0)
    # Landmarks inside the box, eyes above the mouth, the subject's right eye on the image's left.
    points = dict(zip(face.landmark_names, face.landmarks, strict=True))
    x1, y1, x2, y2 = face.box
    assert all(x1 < x < x2 and y1 < y < y2 for x, y in face.landmarks)
    assert points["right_eye"][0] < points["left_eye"][0]
    assert max(points["right_eye"][1], points["left_eye"][1]) < points["mouth_right"][1]


def test_blank_image_has_no_faces(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs = scrfd_2_5g.backend.infer(np.zeros((640, 640, 3), np.uint8))
    letterbox = Letterbox.fit(1920, 1080, 640, 640)
    result = ScrfdPostprocessor().decode(outputs, letterbox)
    assert len(result) == 0
    assert result.boxes.shape == (0, 4) and result.landmarks.shape == (0, 5, 2)
    assert result.faces() == []
    # At the evaluation threshold only weak noise remains, and it matches the reference too.
    weak = ScrfdPostprocessor(score_threshold=0.02).decode(outputs, letterbox)
    assert len(weak) > 0 and weak.scores.max() < 0.2
    assert_same_faces(weak, reference_decode(outputs, letterbox, 0.02))


@pytest.mark.parametrize("padding", ["tall", "wide"])
def test_non_square_images_map_back_to_source_pixels(
    asset: Asset, scrfd_2_5g: ScrfdOnnx, tmp_path: Path, padding: str
) -> None:
    """The same photo on a larger canvas (below or to the right): its faces keep their source pixels."""
    from PIL import Image

    photo = asset("images/insightface_t1.jpg")
    outputs, letterbox = scrfd_2_5g.run(photo)
    original = ScrfdPostprocessor().decode(outputs, letterbox)
    with Image.open(photo) as img:
        w, h = img.size
        size = (w, 3 * h) if padding == "tall" else (2 * w, h)
        canvas = Image.new("RGB", size)
        canvas.paste(img.convert("RGB"), (0, 0))
        canvas.save(tmp_path / "padded.png")
    tensor, padded_letterbox = model_input(tmp_path / "padded.png")
    assert (padded_letterbox.src_width, padded_letterbox.src_height) == size
    padded_outputs = scrfd_2_5g.backend.infer(tensor)
    padded = ScrfdPostprocessor().decode(padded_outputs, padded_letterbox)
    assert_same_faces(padded, reference_decode(padded_outputs, padded_letterbox))
    # Faces are smaller in the model input now; matched by position they stay where they were.
    assert len(padded) == len(original) == 6
    ious = box_iou(original.boxes, padded.boxes).max(axis=1)
    assert ious.mean() >= 0.85 and ious.min() >= 0.7


def test_non_square_model_input(asset: Asset) -> None:
    """A dynamic-input export run at 640x480: grids of 80x60, 40x30, 20x15 give the strides."""
    scrfd = ScrfdOnnx(asset("models/scrfd/det_2.5g.onnx"), input_width=640, input_height=480)
    outputs, letterbox = scrfd.run(asset("images/insightface_t1.jpg"))
    assert sorted(o.data.shape[0] for o in outputs if o.data.shape[-1] == 1) == [600, 2400, 9600]
    ours = ScrfdPostprocessor(input_width=640, input_height=480).decode(outputs, letterbox)
    assert len(ours) == 6
    assert_same_faces(ours, reference_decode(outputs, letterbox))
    square, square_letterbox = ScrfdOnnx(asset("models/scrfd/det_2.5g.onnx")).run(
        asset("images/insightface_t1.jpg")
    )
    expected = ScrfdPostprocessor().decode(square, square_letterbox)
    assert box_iou(expected.boxes, ours.boxes).max(axis=1).min() > 0.9


def test_max_faces_keeps_the_best(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs, letterbox = scrfd_2_5g.run(asset("images/hpc203_selfie.jpg"))
    everything = ScrfdPostprocessor().decode(outputs, letterbox)
    best = ScrfdPostprocessor(max_faces=5).decode(outputs, letterbox)
    assert len(best) == 5
    np.testing.assert_array_equal(best.boxes, everything.boxes[:5])


def test_threshold_change_takes_effect(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs, letterbox = scrfd_2_5g.run(asset("images/hpc203_selfie.jpg"))
    postprocessor = ScrfdPostprocessor(score_threshold=0.5)
    strict = postprocessor.decode(outputs, letterbox)
    postprocessor.score_threshold = 0.8
    stricter = postprocessor.decode(outputs, letterbox)
    assert 0 < len(stricter) < len(strict)
    assert stricter.scores.min() >= 0.8


def _outputs(scrfd: ScrfdOnnx, image: Path) -> tuple[list[RawOutput], Letterbox]:
    outputs, letterbox = scrfd.run(image)
    return list(outputs), letterbox


def test_missing_output_is_named(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs, letterbox = _outputs(scrfd_2_5g, asset("images/insightface_t1.jpg"))
    kps_32 = next(i for i, o in enumerate(outputs) if o.data.shape == (800, 10))
    del outputs[kps_32]
    with pytest.raises(ModelError) as error:
        ScrfdPostprocessor().decode(outputs, letterbox)
    message = str(error.value)
    assert message.startswith(
        "expected 9 SCRFD outputs (score/box/keypoints for strides 8, 16, 32), got 8 with"
    )
    assert "missing: keypoints for stride 32" in message and "(3200, 10)" in message
    assert error.value.exit_code == ExitCode.MODEL and "\n" not in message


def test_model_without_keypoints_is_refused(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs, letterbox = _outputs(scrfd_2_5g, asset("images/insightface_t1.jpg"))
    without_kps = [o for o in outputs if o.data.shape[-1] != 10]
    with pytest.raises(
        ModelError, match=r"got 6 with shapes .*missing: keypoints for stride 8, keypoints for "
    ):
        ScrfdPostprocessor().decode(without_kps, letterbox)


def test_extra_or_foreign_output_is_named(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs, letterbox = _outputs(scrfd_2_5g, asset("images/insightface_t1.jpg"))
    duplicate = [*outputs, RawOutput("extra", outputs[0].data.copy())]
    with pytest.raises(
        ModelError, match=r"two SCRFD score outputs for stride 8: '446' and 'extra' \(expected 9"
    ):
        ScrfdPostprocessor().decode(duplicate, letterbox)
    foreign = [*outputs[:8], RawOutput("landmarks106", np.zeros((800, 212), np.float32))]
    with pytest.raises(ModelError, match=r"SCRFD output 'landmarks106' has shape \(800, 212\): not a score"):
        ScrfdPostprocessor().decode(foreign, letterbox)
    # A model run at another input size than the postprocessor expects: the grid sizes give it away.
    with pytest.raises(ModelError, match="of a 320x320 input"):
        ScrfdPostprocessor(input_width=320, input_height=320).decode(
            outputs, Letterbox.fit(640, 640, 320, 320)
        )


def test_integer_outputs_need_quantization(asset: Asset, scrfd_2_5g: ScrfdOnnx) -> None:
    outputs, letterbox = _outputs(scrfd_2_5g, asset("images/insightface_t1.jpg"))
    outputs[0] = RawOutput(outputs[0].name, (outputs[0].data * 255).astype(np.uint8))
    with pytest.raises(ModelError, match="'446' is uint8 without quantization parameters"):
        ScrfdPostprocessor().decode(outputs, letterbox)


def test_letterbox_for_another_input_size_is_a_bug() -> None:
    with pytest.raises(ValueError, match="letterbox is for a 320x320 input"):
        ScrfdPostprocessor().decode([], Letterbox.fit(100, 100, 320, 320))


# --- NMS on its own: the exact greedy result, whatever the path (IoU matrix or sweep) ---


def _clustered_boxes(
    rng: np.random.Generator, count: int, spread: float
) -> tuple[npt.NDArray[np.float32], ...]:
    """Boxes in clusters around a few faces, as detectors produce them, with many tied scores."""
    centres = rng.uniform(0, 1000, size=(max(1, count // 12), 2))
    sizes = rng.uniform(8, 120, size=(centres.shape[0], 1))
    pick = rng.integers(0, centres.shape[0], size=count)
    size = sizes[pick] * rng.uniform(0.7, 1.3, size=(count, 2))
    centre = centres[pick] + rng.normal(0, spread, size=(count, 2)) * size
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    scores = (rng.integers(0, 40, size=count) / 40).astype(np.float32)  # quantized: ties everywhere
    return boxes, scores


@pytest.mark.parametrize("count", [0, 1, 2, 30, 64, 65, 300, 3000])
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_nms_equals_the_greedy_loop(count: int, offset: float) -> None:
    rng = np.random.default_rng(count)
    _compare_with_greedy_loop(rng, count, offset)


def test_nms_in_tiny_chunks_equals_the_greedy_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunk boundaries everywhere, and single boxes with more candidate pairs than a chunk holds.
    monkeypatch.setattr(nms_module, "_CHUNK_PAIRS", 5)
    _compare_with_greedy_loop(np.random.default_rng(7), 400, 1.0)


def _compare_with_greedy_loop(rng: np.random.Generator, count: int, offset: float) -> None:
    for spread in (0.05, 0.2, 0.6):
        boxes, scores = _clustered_boxes(rng, count, spread)
        for threshold in (0.0, 0.3, 0.4, 0.7, 1.0):
            expected = greedy_nms(boxes, scores, threshold, offset) if count else []
            kept = nms(boxes, scores, threshold, pixel_offset=offset)
            assert kept.tolist() == expected, (spread, threshold)


def test_nms_handles_degenerate_and_identical_boxes() -> None:
    # Identical boxes, a single point and an inverted box (negative width), as low scores can decode to.
    boxes = np.array(
        [[10, 10, 50, 50], [10, 10, 50, 50], [30, 30, 30, 30], [60, 60, 58, 70], [12, 10, 52, 50]] * 20,
        np.float32,
    )
    scores = np.linspace(1, 0, boxes.shape[0], dtype=np.float32)
    kept = nms(boxes, scores, 0.4, pixel_offset=1.0)
    assert kept.tolist() == greedy_nms(boxes, scores, 0.4, 1.0)
    assert kept.tolist() == [
        0,
        2,
        3,
        8,
        13,
        18,
        23,
        28,
        33,
        38,
        43,
        48,
        53,
        58,
        63,
        68,
        73,
        78,
        83,
        88,
        93,
        98,
    ]
    with pytest.raises(ValueError, match="IoU threshold"):
        nms(boxes, scores, 1.5)
