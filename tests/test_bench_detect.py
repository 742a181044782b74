"""`nvr bench detect`: it measures every model asked for and reports unusable ones without stopping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, asset_path

from nvr.errors import ExitCode


def test_bench_detect_reports_each_model_and_keeps_going_past_an_unusable_one() -> None:
    onnx = asset_path("models/scrfd/det_500m.onnx")
    hef = asset_path("hef/scrfd_2.5g.hailo10h.hef")  # no HailoRT in this environment
    image = asset_path("images/insightface_t1.jpg")
    result = subprocess.run(
        [sys.executable, "-m", "nvr", "bench", "detect", "--model", str(hef), "--model", str(onnx),
         "--images", str(image), "--count", "3", "--json"],
        check=False, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # The named HEF could not be measured (no HailoRT here): the ONNX model still is, and the run fails.
    assert result.returncode == ExitCode.DEVICE, result.stderr
    unusable, measured = (json.loads(line) for line in result.stdout.splitlines())
    assert unusable["model"] == str(hef) and "HailoRT is not installed" in unusable["error"]
    assert result.stderr.startswith(f"nvr: error: {unusable['error']}\n")  # then the progress lines
    assert measured["model"] == str(onnx) and measured["backend"] == "onnx"
    assert measured["images"] == 3
    assert measured["faces_per_image"] == 6.0  # the image's six faces: real detections were timed
    assert measured["images_per_second"] > 0 and measured["cpu_ms_per_image"] > 0
    assert measured["cpu_cores"] == pytest.approx(
        measured["cpu_ms_per_image"] * measured["images_per_second"] / 1000
    )


def test_bench_detect_fails_for_a_model_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.onnx"
    result = subprocess.run(
        [sys.executable, "-m", "nvr", "bench", "detect", "--model", str(missing), "--count", "1"],
        check=False, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == ExitCode.INPUT
    assert result.stderr == f"nvr: error: {missing}: no such model file\n"
    assert "Traceback" not in result.stdout + result.stderr
