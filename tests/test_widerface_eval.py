"""The WIDER FACE evaluator: hand-computed PR/AP cases, the real ground truth, real models on dev images."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, asset_path
from PIL import Image
from reference_insightface import reference_predictions

from nvr.detector import FaceDetector, open_detector
from nvr.errors import InputFileError
from nvr.evaluation.groundtruth import SETTINGS, GroundTruthImage, WiderGroundTruth, load_ground_truth
from nvr.evaluation.matfile import MatFileError, load_mat
from nvr.evaluation.predictions import read_predictions, write_prediction
from nvr.evaluation.protocol import box_overlaps, evaluate, voc_ap
from nvr.evaluation.quantized import HefQuantizedOnnx
from nvr.evaluation.widerface import EVAL_SCORE_THRESHOLD, find_images, predict
from nvr.postprocess.scrfd import ScrfdPostprocessor

GT_DIR = "widerface/gt"
IMAGES_DIR = "widerface/images"


def one_image(boxes: list[list[float]], counted: list[bool]) -> WiderGroundTruth:
    mask = np.array(counted, bool)
    return WiderGroundTruth(
        [GroundTruthImage("0--Test", "img", np.array(boxes, np.float64), {s: mask for s in SETTINGS})]
    )


def preds(rows: list[list[float]]) -> dict[str, np.ndarray]:
    return {"img": np.array(rows, np.float64)}


# ---- hand-computed cases -------------------------------------------------------------------------


def test_iou_uses_the_toolkits_inclusive_pixels() -> None:
    # gt covers pixels 0..9 (w = 9 -> x2 = 9): area 10x10 = 100; the prediction 3..12 overlaps 7 columns.
    candidates = np.array([[3.0, 0, 9, 9], [10.0, 0, 9, 9], [0.0, 0, 9, 9]])
    iou = box_overlaps(np.array([[0.0, 0, 9, 9]]), candidates)
    assert iou[:, 0] == pytest.approx([70 / 130, 0.0, 1.0])


def test_miss_then_hit_gives_the_hand_computed_ap() -> None:
    gt = one_image([[0, 0, 10, 10], [100, 100, 10, 10]], [True, True])
    # Scores normalise to 1, 2/3, 0: the false positive enters at t = 0.666, the second hit only at t = 0.
    result = evaluate(gt, preds([[0, 0, 10, 10, 1.0], [50, 50, 10, 10, 0.75], [100, 100, 10, 10, 0.25]]))
    curve = result.settings["hard"]
    assert curve.face_count == 2
    assert curve.precision[0] == 1.0 and curve.recall[0] == 0.5  # t = 0.999: one proposal, one hit
    assert curve.precision[332] == 1.0 and curve.precision[333] == 0.5  # t = 0.667 then 0.666
    assert curve.precision[-1] == pytest.approx(2 / 3) and curve.recall[-1] == 1.0
    # Envelope: precision 1 up to recall 0.5, then max(0.5, 2/3) = 2/3 up to recall 1.
    assert curve.ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_detection_on_an_ignored_face_is_neither_hit_nor_false_positive() -> None:
    gt = one_image([[0, 0, 10, 10], [100, 100, 10, 10]], [True, False])
    result = evaluate(gt, preds([[100, 100, 10, 10, 1.0], [0, 0, 10, 10, 0.5], [300, 300, 10, 10, 0.0]]))
    curve = result.settings["easy"]
    assert curve.face_count == 1
    # Above t = 0.5 the only prediction sits on the ignored face: nothing proposed, precision undefined.
    assert np.isnan(curve.precision[:499]).all() and (curve.recall[:499] == 0).all()
    assert curve.precision[499] == 1.0 and curve.recall[499] == 1.0
    assert curve.precision[-1] == 0.5  # the background box at score 0 is a false positive
    assert curve.ap == pytest.approx(1.0)


def test_a_second_detection_of_a_recalled_face_is_a_false_positive() -> None:
    gt = one_image([[0, 0, 10, 10], [100, 100, 10, 10]], [True, True])
    result = evaluate(gt, preds([[0, 0, 10, 10, 1.0], [1, 0, 10, 10, 0.5], [100, 100, 10, 10, 0.0]]))
    curve = result.settings["medium"]
    assert curve.precision[499] == 0.5 and curve.recall[499] == 0.5
    assert curve.ap == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_a_prediction_matches_only_its_best_face() -> None:
    # The second prediction overlaps face 0 enough (IoU 85/115) but face 1 more (95/105); face 1 is
    # already recalled, so it adds nothing and face 0 stays missed: no reassignment, as in the toolkit.
    gt_boxes = [[0.0, 0, 9, 9], [2.0, 0, 9, 9]]
    second = [1.5, 0.0, 9, 9]
    assert box_overlaps(np.array(gt_boxes), np.array([second]))[0] == pytest.approx([85 / 115, 95 / 105])
    result = evaluate(one_image(gt_boxes, [True, True]), preds([[2, 0, 9, 9, 1.0], [*second, 0.0]]))
    assert result.settings["hard"].recall[-1] == 0.5
    assert result.settings["hard"].precision[-1] == 0.5


def test_voc_ap_of_a_hand_made_curve() -> None:
    recall = np.array([0.25, 0.25, 0.5, 0.75])
    precision = np.array([1.0, np.nan, 0.5, 0.6])
    # Envelope 1 | 0.6 | 0.6 over recall steps 0.25, 0.25, 0.25; the last quarter adds nothing.
    assert voc_ap(recall, precision) == pytest.approx(0.25 + 0.25 * 0.6 + 0.25 * 0.6)


def test_faces_of_images_without_predictions_count_as_missed() -> None:
    gt = WiderGroundTruth(
        [
            GroundTruthImage("e", "a", np.array([[0.0, 0, 10, 10]]), {s: np.array([True]) for s in SETTINGS}),
            GroundTruthImage("e", "b", np.array([[0.0, 0, 10, 10]]), {s: np.array([True]) for s in SETTINGS}),
        ]
    )
    both = evaluate(gt, {"a": np.array([[0.0, 0, 10, 10, 0.9]]), "b": np.zeros((0, 5))})
    only_a = evaluate(gt, {"a": np.array([[0.0, 0, 10, 10, 0.9]])})
    assert both.ap("easy") == pytest.approx(0.5)
    assert only_a.ap("easy") == pytest.approx(1.0) and only_a.image_count == 1


def test_unknown_image_names_are_refused() -> None:
    with pytest.raises(InputFileError, match="'nope' is not in the WIDER FACE validation ground truth"):
        evaluate(one_image([[0, 0, 1, 1]], [True]), {"nope": np.zeros((0, 5))})


# ---- the official ground truth -------------------------------------------------------------------


@pytest.fixture(scope="session")
def ground_truth() -> WiderGroundTruth:
    return load_ground_truth(asset_path(GT_DIR))


def test_ground_truth_matches_the_published_counts(ground_truth: WiderGroundTruth) -> None:
    assert len(ground_truth) == 3226
    assert len({image.event for image in ground_truth.images}) == 61
    assert sum(len(image.boxes) for image in ground_truth.images) == 39708
    first = ground_truth.images[0]
    assert (first.event, first.name) == ("0--Parade", "0_Parade_marchingband_1_465")
    assert first.boxes[0].tolist() == [345, 211, 4, 4]
    counted = {s: sum(int(i.keep[s].sum()) for i in ground_truth.images) for s in SETTINGS}
    # Each harder setting contains the easier one's faces and more.
    assert 0 < counted["easy"] < counted["medium"] < counted["hard"] <= 39708
    for image in ground_truth.images:
        assert not (image.keep["easy"] & ~image.keep["medium"]).any()


def test_ground_truth_fed_back_scores_100_ap(ground_truth: WiderGroundTruth) -> None:
    rng = np.random.default_rng(7)
    predictions = {
        i.name: np.hstack([i.boxes, rng.uniform(0.1, 1.0, (len(i.boxes), 1))]) for i in ground_truth.images
    }
    result = evaluate(ground_truth, predictions)
    for setting in SETTINGS:
        assert result.ap(setting) > 0.999
    # Every other face dropped: precision stays 1, so AP falls to the share of hard faces still found.
    halved = {name: pred[::2] for name, pred in predictions.items()}
    kept = sum(int(i.keep["hard"][::2].sum()) for i in ground_truth.images)
    total = sum(int(i.keep["hard"].sum()) for i in ground_truth.images)
    assert evaluate(ground_truth, halved).ap("hard") == pytest.approx(kept / total, abs=0.002)


def test_matfile_errors_are_one_line_and_name_the_file(tmp_path: Path) -> None:
    source = asset_path(f"{GT_DIR}/wider_easy_val.mat").read_bytes()
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(source[: len(source) // 2])
    with pytest.raises(MatFileError, match=r"truncated\.mat: not a readable MATLAB v5 MAT-file") as caught:
        load_mat(truncated)
    assert "\n" not in str(caught.value)
    not_mat = tmp_path / "wider_face_val.mat"
    not_mat.write_text("hello")
    with pytest.raises(MatFileError, match=r"missing the 'MATLAB 5\.0 MAT-file' header"):
        load_mat(not_mat)
    with pytest.raises(InputFileError, match="no such ground-truth folder"):
        load_ground_truth(tmp_path / "missing")


def test_prediction_files_round_trip(tmp_path: Path) -> None:
    faces = np.array([[1.5, 2.0, 30.0, 40.5, 0.91234], [5.0, 6.0, 7.0, 8.0, 0.02]])
    path = write_prediction(tmp_path, "19--Couple", "19_Couple_Couple_19_106", faces)
    assert path.read_text().splitlines()[:3] == ["19_Couple_Couple_19_106", "2", "1.5 2.0 30.0 40.5 0.91234"]
    assert read_predictions(tmp_path)["19_Couple_Couple_19_106"] == pytest.approx(faces)
    path.write_text("19_Couple_Couple_19_106\n2\n1 2 3 4 0.5\n1 2 x 4 0.5\n")
    with pytest.raises(InputFileError, match=r"19_Couple_Couple_19_106\.txt:4: expected 'x y w h score'"):
        read_predictions(tmp_path)


# ---- real models on the dev images ---------------------------------------------------------------


@pytest.fixture(scope="session")
def float_predictions(ground_truth: WiderGroundTruth) -> Callable[[str], dict[str, np.ndarray]]:
    """nvr's CPU-backend predictions on the dev images, per model, computed once per session."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def get(model: str) -> dict[str, np.ndarray]:
        if model not in cache:
            images = find_images(asset_path(IMAGES_DIR), ground_truth)
            assert len(images) == 79
            with open_detector(asset_path(f"models/scrfd/{model}"), "onnx", EVAL_SCORE_THRESHOLD) as detector:
                cache[model] = predict(detector.detect, images, None)
        return cache[model]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("model", ["det_2.5g.onnx", "det_500m.onnx"])
def test_cpu_backend_matches_an_independent_insightface_pipeline(
    model: str, ground_truth: WiderGroundTruth, float_predictions: Callable[[str], dict[str, np.ndarray]]
) -> None:
    ours = evaluate(ground_truth, float_predictions(model))
    reference_preds = reference_predictions(asset_path(f"models/scrfd/{model}"), asset_path(IMAGES_DIR))
    reference = evaluate(ground_truth, reference_preds)
    for setting in SETTINGS:
        assert ours.ap(setting) == pytest.approx(reference.ap(setting), abs=0.005), setting
    # A sanity floor: these images are mostly easy, and the models are good.
    assert ours.ap("easy") > 0.9


@pytest.mark.slow
def test_hef_output_quantization_costs_under_one_ap(
    ground_truth: WiderGroundTruth, float_predictions: Callable[[str], dict[str, np.ndarray]]
) -> None:
    backend = HefQuantizedOnnx(
        asset_path("models/scrfd/det_2.5g.onnx"), asset_path("hef/scrfd_2.5g.hailo10h.hef")
    )
    quantized_detector = FaceDetector(backend, ScrfdPostprocessor(640, 640, EVAL_SCORE_THRESHOLD))
    quantized = evaluate(
        ground_truth,
        predict(quantized_detector.detect, find_images(asset_path(IMAGES_DIR), ground_truth), None),
    )
    floating = evaluate(ground_truth, float_predictions("det_2.5g.onnx"))
    for setting in SETTINGS:
        assert quantized.ap(setting) == pytest.approx(floating.ap(setting), abs=0.01), setting
    # The quantized path really is different numbers, not the float path again.
    assert quantized.settings["hard"].precision.tolist() != floating.settings["hard"].precision.tolist()


# ---- the command ---------------------------------------------------------------------------------


def run_nvr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nvr", *args],
        check=False, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip


def subset_tree(root: Path, event: str, count: int) -> tuple[Path, list[Path]]:
    """A WIDER-style tree of the first `count` dev images of `event` (symlinks)."""
    chosen = sorted(asset_path(IMAGES_DIR).glob(f"{event}/*.jpg"))[:count]
    (root / event).mkdir(parents=True)
    for path in chosen:
        (root / event / path.name).symlink_to(path)
    return root, chosen


def test_eval_command_on_a_subset(tmp_path: Path, ground_truth: WiderGroundTruth) -> None:
    images, chosen = subset_tree(tmp_path / "images", "4--Dancing", 4)
    out = tmp_path / "out"
    result = run_nvr(
        "eval", "widerface", "--images", str(images), "--gt", str(asset_path(GT_DIR)),
        "--model", str(asset_path("models/scrfd/det_500m.onnx")), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "WIDER FACE validation: 4 images in 1 event(s); det_500m.onnx (onnx)" in result.stdout
    truth = [image for image in ground_truth.images if image.name in {p.stem for p in chosen}]
    faces = {s: sum(int(image.keep[s].sum()) for image in truth) for s in SETTINGS}
    for setting in SETTINGS:
        line = next(row for row in result.stdout.splitlines() if row.startswith(setting))
        assert int(line.split()[1]) == faces[setting]
    assert "4/4 images" in result.stderr  # progress
    written = sorted(p.stem for p in (out / "predictions" / "4--Dancing").glob("*.txt"))
    assert written == sorted(p.stem for p in chosen)
    with Image.open(out / "pr_curves.png") as png:
        assert png.size == (800, 640)
        # The curves are drawn: the plot holds the settings' colours, not only the white background.
        colours = {c for _, c in png.convert("RGB").getcolors(100000) or []}
        assert (214, 39, 40) in colours and (31, 119, 180) in colours

    # The written predictions score the same when read back.
    rescored = run_nvr(
        "eval", "widerface", "--images", str(images), "--gt", str(asset_path(GT_DIR)),
        "--predictions", str(out / "predictions"), "--out", str(tmp_path / "again"),
    )  # fmt: skip
    assert rescored.returncode == 0, rescored.stderr
    table = [row for row in result.stdout.splitlines() if row.split()[:1] and row.split()[0] in SETTINGS]
    again = [row for row in rescored.stdout.splitlines() if row.split()[:1] and row.split()[0] in SETTINGS]
    assert table == again


def test_eval_command_errors_are_one_line(tmp_path: Path) -> None:
    stray = tmp_path / "images" / "0--Parade"
    stray.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(stray / "holiday.jpg")
    result = run_nvr(
        "eval", "widerface", "--images", str(tmp_path / "images"), "--gt", str(asset_path(GT_DIR)),
        "--model", str(asset_path("models/scrfd/det_500m.onnx")),
    )  # fmt: skip
    assert result.returncode == 4
    expected = f"{stray / 'holiday.jpg'}: not an image of the WIDER FACE validation set (no ground truth)"
    assert result.stderr.strip().splitlines() == [f"nvr: error: {expected}"]


@pytest.mark.slow
def test_eval_on_the_hailo_backend_through_the_double(tmp_path: Path, ground_truth: WiderGroundTruth) -> None:
    # The double computes the HEF's uint8 outputs from the ONNX model; our emulation does the same
    # rounding in-process. Through the whole Hailo engine, the scores must come out identical.
    images, _ = subset_tree(tmp_path / "images", "19--Couple", 6)
    hef = asset_path("hef/scrfd_2.5g.hailo10h.hef")
    double = {
        "PYTHONPATH": str(PROJECT_ROOT / "tests" / "hailo_double"),
        "HAILO_DOUBLE_ARCH": "hailo10h",
        "HAILO_DOUBLE_LOCK_DIR": str(tmp_path / "locks"),
        "HAILO_DOUBLE_ONNX": str(asset_path("models/scrfd/det_2.5g.onnx")),
    }
    result = run_nvr(
        "eval", "widerface", "--images", str(images), "--gt", str(asset_path(GT_DIR)),
        "--model", str(hef), "--backend", "hailo", "--out", str(tmp_path / "out"), env=double,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scrfd_2.5g.hailo10h.hef (hailo)" in result.stdout
    through_double = json.loads((tmp_path / "out" / "results.json").read_text())["ap"]
    backend = HefQuantizedOnnx(asset_path("models/scrfd/det_2.5g.onnx"), hef)
    emulated = FaceDetector(backend, ScrfdPostprocessor(640, 640, EVAL_SCORE_THRESHOLD))
    emulated_predictions = predict(emulated.detect, find_images(images, ground_truth), None)
    written = read_predictions(tmp_path / "out" / "predictions")
    assert written.keys() == emulated_predictions.keys()
    for name, faces in emulated_predictions.items():
        assert written[name][:, :4] == pytest.approx(faces[:, :4], abs=0.051), name  # written with 1 decimal
        assert written[name][:, 4] == pytest.approx(faces[:, 4], abs=6e-6), name
    expected = evaluate(ground_truth, emulated_predictions)
    for setting in SETTINGS:
        assert through_double[setting] == pytest.approx(expected.ap(setting), abs=1e-9), setting


def _element(order: str, mi_type: int, payload: bytes) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 8)
    return struct.pack(order + "II", mi_type, len(payload)) + padded


def _matrix(order: str, array_class: int, dims: tuple[int, ...], name: str, *data: bytes) -> bytes:
    flags = _element(order, 6, struct.pack(order + "II", array_class, 0))
    shape = _element(order, 5, struct.pack(order + f"{len(dims)}i", *dims))
    # The name as a "small data element": type and size share the first word (names up to 4 bytes).
    small_name = struct.pack(order + "I", (len(name) << 16) | 1) + name.encode().ljust(4, b"\0")
    return _element(order, 14, flags + shape + small_name + b"".join(data))


@pytest.mark.parametrize("order", ["<", ">"])
def test_matfile_reads_uncompressed_data_in_either_byte_order(tmp_path: Path, order: str) -> None:
    header = b"MATLAB 5.0 MAT-file, written by a test".ljust(116, b" ") + b"\0" * 8
    header += struct.pack(order + "H", 0x0100) + (b"IM" if order == "<" else b"MI")
    # x = [1 2 3; 4 5 6] (doubles stored column-major as uint8, as MATLAB does to save space)
    x = _matrix(order, 6, (2, 3), "x", _element(order, 2, bytes([1, 4, 2, 5, 3, 6])))
    # c = {'ab'; int32([7 8])}: a 2x1 cell of a char row (UTF-16 code units) and an int32 row
    text = _matrix(order, 4, (1, 2), "", _element(order, 4, struct.pack(order + "2H", 97, 98)))
    ints = _matrix(order, 12, (1, 2), "", _element(order, 5, struct.pack(order + "2i", 7, 8)))
    cell = _matrix(order, 1, (2, 1), "c", text, ints)
    path = tmp_path / "tiny.mat"
    path.write_bytes(header + x + cell)
    variables = load_mat(path)
    assert (
        variables["x"].tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] and variables["x"].dtype == np.float64
    )
    assert variables["c"].shape == (2, 1)
    assert variables["c"][0, 0] == "ab"
    assert variables["c"][1, 0].tolist() == [[7, 8]] and variables["c"][1, 0].dtype == np.int32


def test_a_setting_without_counted_faces_has_no_ap() -> None:
    result = evaluate(one_image([[0, 0, 10, 10]], [False]), preds([[0, 0, 10, 10, 0.9]]))
    assert result.settings["easy"].face_count == 0 and np.isnan(result.ap("easy"))
