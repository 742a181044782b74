"""Every command takes a catalogue name (an id like `scrfd_500m-onnx` or a family like `scrfd_500m`) where
it takes a model file, found in the model store the way `nvr run` finds it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import PROJECT_ROOT, asset_path
from hailo_support import double_subprocess_env

from nvr.errors import ExitCode

T1 = "images/insightface_t1.jpg"  # six faces


def nvr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nvr", *args], check=False, cwd=PROJECT_ROOT, env=env or dict(os.environ),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_detect_takes_an_id_or_a_family_and_names_the_pull_when_missing(
    model_store: Callable[..., Path],
) -> None:
    image = str(asset_path(T1))
    store = model_store()
    missing = nvr("detect", image, "--model", "scrfd_500m")
    assert missing.returncode == ExitCode.MODEL
    assert missing.stderr == (
        f"nvr: error: 'scrfd_500m' is not in the model store {store}: "
        f"run `NVR_MODELS={store} nvr models pull scrfd_500m`\n"
    )
    model_store("scrfd_500m-onnx")
    by_file = nvr("detect", image, "--model", str(store / "det_500m.onnx"), "--json")
    assert by_file.returncode == 0, by_file.stderr
    assert len(json.loads(by_file.stdout)["faces"]) == 6
    for name in ("scrfd_500m", "scrfd_500m-onnx"):
        by_name = nvr("detect", image, "--model", name, "--json")
        assert by_name.returncode == 0, by_name.stderr
        assert by_name.stdout == by_file.stdout


def test_eval_widerface_takes_a_catalogue_name(tmp_path: Path, model_store: Callable[..., Path]) -> None:
    model_store("scrfd_500m-onnx")
    event = "4--Dancing"
    images = tmp_path / "images"
    (images / event).mkdir(parents=True)
    for path in sorted(asset_path("widerface/images").glob(f"{event}/*.jpg"))[:2]:
        (images / event / path.name).symlink_to(path)
    result = nvr(
        "eval", "widerface", "--images", str(images), "--gt", str(asset_path("widerface/gt")),
        "--model", "scrfd_500m", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "WIDER FACE validation: 2 images in 1 event(s); det_500m.onnx (onnx)" in result.stdout


def test_bench_detect_and_bench_inference_take_a_catalogue_name(model_store: Callable[..., Path]) -> None:
    store = model_store("scrfd_500m-onnx")
    image = str(asset_path(T1))
    bench = nvr("bench", "detect", "--model", "scrfd_500m", "--images", image, "--count", "2", "--json")
    assert bench.returncode == 0, bench.stderr
    figures = json.loads(bench.stdout)
    assert (figures["model"], figures["backend"], figures["images"]) == (
        str(store / "det_500m.onnx"),
        "onnx",
        2,
    )
    assert figures["faces_per_image"] == 6.0
    # The daemon's path on the CPU: SyncEngine, one frame in flight, the pipeline's face filter.
    args = ["--model", "scrfd_500m-onnx", "--frames", "6", "--warmup", "2", "--image", image, "--json"]
    inference = nvr("bench", "inference", *args)
    assert inference.returncode == 0, inference.stderr
    figures = json.loads(inference.stdout)
    assert (figures["backend"], figures["frames"], figures["in_flight_max"]) == ("onnx", 6, 1)
    assert figures["faces_per_frame"] == 6.0 and figures["failed"] == 0 and figures["dropped"] == 0


def test_models_verify_takes_catalogue_names(tmp_path: Path, model_store: Callable[..., Path]) -> None:
    store = model_store("scrfd_2.5g-hailo10h", "scrfd_2.5g-onnx")
    env = double_subprocess_env(tmp_path / "locks")
    result = nvr("models", "verify", "--hef", "scrfd_2.5g-hailo10h", "--json", str(asset_path(T1)), env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["hef"], report["onnx"]) == (
        str(store / "scrfd_2.5g.hailo10h.hef"),
        str(store / "det_2.5g.onnx"),
    )
    assert report["overall"]["matched"] == 6 and report["consistent"]
