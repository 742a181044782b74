"""`nvr bench embed`: host milliseconds per face for each CPU embedder, in the model's own batch size."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, asset_path


def test_bench_embed_measures_each_embedder_and_keeps_going() -> None:
    onnx = asset_path("models/recognition/fr_feature_512.onnx")
    tflite = asset_path("models/recognition/mobilefacenet_192.tflite")
    detector = asset_path("models/scrfd/det_500m.onnx")  # an image-to-boxes model, not an embedder
    result = subprocess.run(
        [sys.executable, "-m", "nvr", "bench", "embed", "--embedder", str(onnx), "--embedder", str(detector),
         "--embedder", str(tflite), "--image", str(asset_path("faces/obama/1.jpg")),
         "--face-detector", str(detector), "--count", "4", "--json"],
        check=False, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    first, unusable, second = (json.loads(line) for line in result.stdout.splitlines())
    assert (first["model"], first["backend"], first["batch"], first["faces"]) == (
        "fr_feature_512",
        "onnx",
        1,
        4,
    )
    assert (second["model"], second["backend"], second["batch"], second["faces"]) == (
        "mobilefacenet_192", "tflite", 2, 4,
    )  # fmt: skip
    assert "112x112" in unusable["error"] and unusable["model"] == str(detector)
    for measured in (first, second):
        assert measured["cpu_ms_per_face"] > 0
        assert measured["wall_ms_per_face"] == pytest.approx(1000 / measured["faces_per_second"])
