"""`nvr models verify`: the Hailo path (through the HailoRT test double) against the float ONNX model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, asset_path

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.models.verify import compare

HEF = "hef/scrfd_2.5g.hailo10h.hef"
IMAGES = (
    "images/insightface_t1.jpg",
    "images/cospectrum_solvay_conference_1927.png",
    "images/retinaface_test.jpg",
)


def detections(boxes: list[list[float]], scores: list[float]) -> Detections:
    box_array = np.array(boxes, np.float32).reshape(-1, 4)
    # Landmarks at fixed fractions of each box, so moving a box moves its landmarks with it.
    fractions = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)
    size = box_array[:, 2:] - box_array[:, :2]
    landmarks = box_array[:, None, :2] + fractions[None] * size[:, None, :]
    return Detections(box_array, np.array(scores, np.float32), landmarks, SCRFD_LANDMARKS)


def test_compare_pairs_faces_and_measures_the_differences() -> None:
    reference = detections([[0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 440, 40]], [0.9, 0.8, 0.52])
    # The first two faces come back 10 px to the right (in the other order), the third is lost, and one
    # extra face appears elsewhere.
    hailo = detections([[210, 0, 310, 100], [10, 0, 110, 100], [0, 300, 50, 350]], [0.85, 0.88, 0.51])
    result = compare("x.jpg", reference, hailo)
    assert (result.reference_faces, result.hailo_faces, result.matched) == (3, 3, 2)
    # Each pair: IoU = 90x100 / (2x10000 - 9000) = 9/11, landmarks 10 px off (10 % of the 100 px face).
    assert result.ious == pytest.approx((9 / 11, 9 / 11))
    assert result.landmark_errors == pytest.approx((10.0, 10.0))
    assert result.relative_landmark_errors == pytest.approx((0.1, 0.1))
    assert result.missed_scores == pytest.approx((0.52,))
    assert result.extra_scores == pytest.approx((0.51,))


def test_compare_pairs_one_to_one_best_first() -> None:
    reference = detections([[0, 0, 100, 100], [5, 0, 105, 100]], [0.9, 0.8])
    hailo = detections([[5, 0, 105, 100]], [0.9])
    result = compare("x.jpg", reference, hailo)
    assert result.ious == pytest.approx((1.0,))  # the exact twin wins, the other float face is missed
    assert result.missed_scores == pytest.approx((0.9,))


def run_verify(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT / "tests" / "hailo_double"),
        "HAILO_DOUBLE_ARCH": "hailo10h",
        "HAILO_DOUBLE_LOCK_DIR": str(tmp_path / "locks"),
    }
    return subprocess.run(
        [sys.executable, "-m", "nvr", "models", "verify", *args],
        check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


@pytest.mark.slow
def test_verify_through_the_double_finds_quantization_noise_only(
    tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    store = model_store("scrfd_2.5g-onnx")
    images = [str(asset_path(p)) for p in IMAGES]
    result = run_verify(tmp_path, "--hef", str(asset_path(HEF)), "--json", *images)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["onnx"] == str(store / "det_2.5g.onnx")  # the family's catalogue model, pulled
    overall = report["overall"]
    assert report["consistent"] is True
    assert overall["images"] == 3 and overall["float_faces"] > 50
    assert overall["matched"] >= overall["float_faces"] - 1
    assert overall["box_iou_mean"] > 0.97 and overall["box_iou_min"] > 0.9
    assert overall["landmark_error_px_mean"] < 1.0
    # The quantized outputs really are different numbers: not a float path in disguise.
    assert overall["box_iou_mean"] < 0.9999 and overall["landmark_error_px_mean"] > 0.01
    assert [image["image"] for image in report["images"]] == images


@pytest.mark.slow
def test_verify_flags_a_hef_checked_against_another_model(tmp_path: Path) -> None:
    result = run_verify(
        tmp_path, "--hef", str(asset_path(HEF)), "--onnx", str(asset_path("models/scrfd/det_500m.onnx")),
        str(asset_path(IMAGES[0])), str(asset_path(IMAGES[1])),
    )  # fmt: skip
    assert result.returncode == 5, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "scrfd_2.5g.hailo10h.hef on the Hailo vs det_500m.onnx (float, CPU)"
    assert lines[-1].startswith("verdict: INCONSISTENT")
    assert lines[-2].startswith("box IoU mean 0.9")


def test_verify_without_a_float_model_says_how_to_get_one(
    tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    store = model_store()  # an empty store; the mirror has the model, but only the store counts
    hef = asset_path(HEF)
    result = run_verify(tmp_path, "--hef", str(hef), str(asset_path(IMAGES[0])))
    assert result.returncode == 5
    assert result.stderr.strip() == (
        f"nvr: error: {hef}: no CPU model of scrfd_2.5g to compare with "
        f"(NVR_MODELS={store} nvr models pull scrfd_2.5g-onnx); or pass --onnx"
    )
