"""`nvr models inspect`: the table for people, the JSON for programs, and one-line errors with exit code 4."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import PROJECT_ROOT, asset_path

from nvr.cli import main
from nvr.errors import ExitCode
from nvr.hef import read_hef

NVR = PROJECT_ROOT / ".venv" / "bin" / "nvr"


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["models", "inspect", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    path = asset_path("hef/scrfd_2.5g.hailo10h.hef")
    code, out, err = run_main(capsys, str(path))
    assert (code, err) == (ExitCode.OK, "")
    assert f"file           {path}" in out
    assert "header         v3 (needs HailoRT >= 4.21)" in out
    assert "architecture   HAILO15H (Hailo-10H/15H family)" in out
    assert "network group  scrfd_2_5g, network scrfd_2_5g/scrfd_2_5g" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("  ") and "/" in line]
    # Input first, then the outputs in HailoRT's sorted order: box, score, landmarks per stride.
    assert [row[1] for row in rows] == ["scrfd_2_5g/input_layer1"] + [
        f"scrfd_2_5g/conv{n}" for n in (43, 42, 44, 50, 49, 51, 56, 55, 57)
    ]
    assert rows[0][2:] == ["640x640x3", "uint8", "NHCW", "0", "1", "0", "..", "255"]
    assert rows[1][2:7] == ["80x80x8", "uint8", "NHCW", "4", "0.01984936"]
    assert rows[2][5:] == ["0", "0.003921569", "0", "..", "1"]
    assert "per feature" not in out


def test_table_notes_per_feature_quantization(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys, str(asset_path("hef/lightface_slim.hailo8l.hef")))
    assert code == ExitCode.OK
    assert "architecture   HAILO8L (Hailo-8L family)" in out
    assert "quantizes each output feature (channel) separately (extension 25)" in out
    conv23 = next(line.split() for line in out.splitlines() if "lightface_slim/conv23" in line)
    assert conv23[5:7] == ["133", "0.02918547..0.05288118"]  # zp constant, scale varies: a range


def test_json_for_programs(capsys: pytest.CaptureFixture[str]) -> None:
    path = asset_path("hef/lightface_slim.hailo8l.hef")
    code, out, err = run_main(capsys, str(path), "--json")
    assert (code, err) == (ExitCode.OK, "")
    doc: dict[str, Any] = json.loads(out)
    assert list(doc) == [
        "format_version", "file", "header_version", "min_hailort", "hw_arch", "hw_arch_name", "arch_family",
        "sdk_version", "extensions", "per_feature_quantization", "network_groups", "runs_on", "usable_as",
        "family", "usable_because", "hailort",
    ]  # fmt: skip
    assert (doc["file"], doc["header_version"], doc["min_hailort"]) == (str(path), 2, "4.20")
    assert (doc["hw_arch"], doc["hw_arch_name"], doc["arch_family"]) == (3, "HAILO8L", "Hailo-8L")
    assert doc["per_feature_quantization"] is True and 25 in doc["extensions"]
    (group,) = doc["network_groups"]
    assert list(group) == ["name", "network_name", "inputs", "outputs"]
    conv23 = group["outputs"][0]
    assert list(conv23) == [
        "name", "shape", "hailort_shape", "dtype", "device_format", "frame_size", "per_feature", "qp_zp",
        "qp_scale", "limvals",
    ]  # fmt: skip
    expected = json.loads(asset_path("hef/expected.json").read_text())["lightface_slim.hailo8l.hef"][0]
    for layer, want in zip(group["outputs"], expected["outputs"], strict=True):
        assert layer["name"] == want["name"] and layer["shape"] == want["shape_hwc"]
        assert layer["per_feature"] is True and len(layer["qp_scale"]) == want["shape_hwc"][2]
        # JSON carries the float32 values exactly (as doubles), so a program gets HailoRT's numbers.
        assert np.array_equal(np.float32(layer["qp_scale"]), np.float32(want["qp_scale"]))
        assert layer["limvals"] == want["limvals"]


@pytest.mark.parametrize(
    ("hef", "runs_on", "usable_as", "family", "text"),
    [
        ("scrfd_2.5g.hailo10h.hef", ["Hailo-10H", "Hailo-15H"], "face detector", "scrfd", [
            "runs on        Hailo-10H, Hailo-15H; never on Hailo-8 or Hailo-8L",
            "HailoRT        needs HailoRT >= 5.0, < 6.0",
            "use in nvr     face detector (SCRFD: 9 outputs, score/box/landmarks at strides 8, 16, 32)",
        ]),
        ("arcface_mobilefacenet.hailo8.hef", ["Hailo-8"], "face embedder", "arcface", [
            "runs on        Hailo-8; never on Hailo-8L",
            "HailoRT        needs HailoRT >= 4.17, < 5.0",
            "use in nvr     face embedder (one 512-value vector per 112x112 face)",
        ]),
        ("lightface_slim.hailo8l.hef", ["Hailo-8", "Hailo-8L"], None, None, [
            "runs on        Hailo-8L, and Hailo-8 (at lower performance: use a Hailo-8 build there)",
            "use in nvr     none: 8 outputs [30x40x12, 30x40x6, 15x20x8, 15x20x4, 8x10x8, 8x10x4, 4x5x12, "
            "4x5x6] from a 240x320x3 input: neither SCRFD's 9 score/box/landmark maps (a face detector) nor "
            "one vector (a face embedder)",
        ]),
        ("hand_landmark_lite.hailo8.hef", ["Hailo-8"], None, None, [
            "use in nvr     none: 4 outputs [1x1x63, 1x1x1, 1x1x1, 1x1x63] from a 224x224x3 input",
        ]),
    ],
)  # fmt: skip
def test_inspect_answers_which_chips_which_hailort_and_what_for(
    capsys: pytest.CaptureFixture[str],
    hef: str,
    runs_on: list[str],
    usable_as: str | None,
    family: str | None,
    text: list[str],
) -> None:
    path = str(asset_path(f"hef/{hef}"))
    code, out, _err = run_main(capsys, path, "--json")
    doc = json.loads(out)
    assert code == ExitCode.OK
    assert (doc["runs_on"], doc["usable_as"], doc["family"]) == (runs_on, usable_as, family)
    code, out, _err = run_main(capsys, path)
    lines = out.splitlines()
    assert lines[0] == f"file           {path}"
    for expected in text:
        assert any(line.startswith(expected) for line in lines[1:5]), (expected, lines[:5])


def test_the_chip_table_is_hailorts(capsys: pytest.CaptureFixture[str]) -> None:
    """Each chip runs exactly the HEF architectures HailoRT's device check accepts (one table each side)."""
    from nvr.backends.hailo_diagnostics import DEVICE_ARCHS
    from nvr.hef.model import HwArch
    from nvr.hef.usage import RUNS, runs_on

    for family, _chip, accepted in DEVICE_ARCHS.values():
        assert RUNS[family] == accepted, family
    assert runs_on(HwArch.HAILO8R) == ("Hailo-8",)
    assert runs_on(HwArch.HAILO10H) == ("Hailo-10H", "Hailo-15H")
    assert runs_on(HwArch.HAILO8) == ()  # no chip accepts it


def test_json_nc_layer_and_scalars(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run_main(capsys, "--json", str(asset_path("hef/arcface_mobilefacenet.hailo8.hef")))
    assert code == ExitCode.OK
    (fc1,) = json.loads(out)["network_groups"][0]["outputs"]
    assert (fc1["shape"], fc1["hailort_shape"], fc1["device_format"]) == ([1, 1, 512], [512], "NC")
    assert (fc1["qp_zp"], fc1["qp_scale"], fc1["per_feature"]) == (144.0, 0.01673891767859459, False)


def test_every_asset_hef_inspects(capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted(asset_path("hef").glob("*.hef")):
        code, out, err = run_main(capsys, "--json", str(path))
        assert (code, err) == (ExitCode.OK, ""), path
        info = read_hef(path)
        doc = json.loads(out)
        assert [g["name"] for g in doc["network_groups"]] == [g.name for g in info.network_groups]


@pytest.mark.parametrize("make", ["missing", "empty", "directory", "truncated", "text"])
def test_errors_are_one_line_with_exit_code_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: str
) -> None:
    path = tmp_path / "model.hef"
    if make == "empty":
        path.write_bytes(b"")
    elif make == "directory":
        path.mkdir()
    elif make == "truncated":
        path.write_bytes(asset_path("hef/mnist_cnn.hailo8.hef").read_bytes()[:5000])
    elif make == "text":
        path.write_text("not a model\n")
    code, out, err = run_main(capsys, str(path), "--json")
    assert code == ExitCode.INPUT
    assert out == ""
    assert err.startswith(f"nvr: error: {path}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err


def test_console_script(tmp_path: Path) -> None:
    if not NVR.exists():
        pytest.fail(f"{NVR} is missing: run `.venv/bin/pip install -e .`", pytrace=False)
    path = asset_path("hef/scrfd_2.5g.hailo10h.hef")
    done = subprocess.run(
        [str(NVR), "models", "inspect", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["network_groups"][0]["outputs"][1]["name"] == "scrfd_2_5g/conv42"

    bad = tmp_path / "bad.hef"
    bad.write_bytes(path.read_bytes()[:-10])
    done = subprocess.run(
        [str(NVR), "models", "inspect", str(bad)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == ExitCode.INPUT and done.stdout == ""
    assert done.stderr.startswith(f"nvr: error: {bad}: size mismatch (the header promises ")
    assert done.stderr.endswith("the file is truncated or corrupted\n") and done.stderr.count("\n") == 1

    done = subprocess.run(
        [str(NVR), "models", "inspect"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == ExitCode.USAGE and "FILE.hef" in done.stderr


def test_python_dash_m(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nvr", "models", "inspect", str(tmp_path / "x.hef")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == ExitCode.INPUT
    assert done.stderr == f"nvr: error: {tmp_path / 'x.hef'}: no such file\n"


def test_a_non_hef_is_refused_after_its_first_bytes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`nvr models inspect video.mp4` must not read gigabytes first: a pipe that stays open proves it."""
    fifo = tmp_path / "stream.hef"
    os.mkfifo(fifo)
    writer_closed = threading.Event()

    def write() -> None:
        with fifo.open("wb") as pipe:
            pipe.write(b"\x00\x00\x00\x18ftypmp42" + b"\0" * 100)
            pipe.flush()
            time.sleep(10)  # a reader that wants the whole file waits this long
        writer_closed.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    code, _out, err = run_main(capsys, str(fifo))
    assert not writer_closed.is_set()
    assert code == ExitCode.INPUT
    assert (
        err
        == f"nvr: error: {fifo}: not a HEF file (starts with 00 00 00 18, a HEF starts with 01 48 45 46)\n"
    )
