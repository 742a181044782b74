"""`nvr check-config` makes the checks `nvr run` makes before opening a device or a camera: one line each,
exit 3, naming the command that fixes what it can."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import PROJECT_ROOT

from nvr.errors import ExitCode

CAMERA = "cameras:\n  - name: door\n    url: rtsp://camera.lan/stream\n"


def check(tmp_path: Path, text: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path / "nvr.yml"
    path.write_text(f"{CAMERA}state_dir: {tmp_path / 'state'}\n{text}")
    result = subprocess.run(
        [sys.executable, "-m", "nvr", "check-config", str(path)],
        capture_output=True, text=True, check=False, timeout=120, cwd=PROJECT_ROOT,
    )  # fmt: skip
    return path, result


def test_a_misspelt_model_name_is_named_with_a_suggestion(
    tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    model_store("scrfd_500m-onnx")
    path, result = check(tmp_path, "detector:\n  model: scrfd_500n\n")
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.splitlines() == [
        f"nvr: error: {path}: detector.model: 'scrfd_500n' is neither a model file nor a catalogue model "
        "(did you mean 'scrfd_500m'? `nvr models list` shows them; "
        "families: arcface_mobilefacenet, scrfd_10g, scrfd_2.5g, scrfd_500m)"
    ]


def test_a_model_not_pulled_names_the_pull_command_and_passes_once_pulled(
    tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    store = model_store()
    path, result = check(tmp_path, "detector:\n  model: scrfd_500m\n  backend: onnx\n")
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.splitlines() == [
        f"nvr: error: {path}: detector.model: 'scrfd_500m' is not in the model store {store}: "
        f"run `NVR_MODELS={store} nvr models pull scrfd_500m-onnx`"
    ]
    model_store("scrfd_500m-onnx")
    path, result = check(tmp_path, "detector:\n  model: scrfd_500m\n  backend: onnx\n")
    assert result.returncode == ExitCode.OK, result.stderr
    assert result.stdout.startswith(f"{path}: OK: 1 camera(s)")


def test_a_missing_password_file_and_every_other_problem_get_one_line_each(
    tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    model_store()
    (tmp_path / "state").write_text("a file where the state folder should be")
    missing = tmp_path / "mqtt_password"
    mqtt = f"mqtt:\n  host: broker.lan\n  username: nvr\n  password_file: {missing}\n"
    path, result = check(tmp_path, f"detector:\n  model: scrfd_2.5g-onnx\n{mqtt}")
    assert result.returncode == ExitCode.CONFIG
    lines = result.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(
        f"nvr: error: {path}: detector.model: 'scrfd_2.5g-onnx' is not in the model store"
    )
    assert (
        lines[1]
        == f"nvr: error: {path}: mqtt.password_file {missing}: cannot read (No such file or directory)"
    )
    assert (
        lines[2]
        == f"nvr: error: {path}: state_dir: {tmp_path / 'state'}: {tmp_path / 'state'} is not a folder"
    )
    missing.write_text("secret\n")
    (tmp_path / "state").unlink()
    model_store("scrfd_2.5g-onnx")
    _, result = check(tmp_path, f"detector:\n  model: scrfd_2.5g-onnx\n{mqtt}")
    assert result.returncode == ExitCode.OK, result.stderr
    assert "secret" not in result.stdout + result.stderr
