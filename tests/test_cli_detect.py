"""`nvr detect` as a user runs it: the console script in a subprocess, JSON lines, drawings, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nvr.cli import main
from nvr.cli.draw import BOX_COLOUR, draw_faces, save_identified
from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.errors import ExitCode

NVR = [sys.executable, "-m", "nvr"]


def run_nvr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NVR, *args], capture_output=True, text=True, timeout=120, check=False)


def test_detect_json_lines(asset: Callable[[str], Path], tmp_path: Path) -> None:
    model = asset("models/scrfd/det_2.5g.onnx")
    t1, newton = asset("images/insightface_t1.jpg"), asset("images/cospectrum_newton.png")
    result = run_nvr("detect", str(t1), str(newton), "--model", str(model), "--json", "--draw", str(tmp_path))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["image"] for r in records] == [str(t1), str(newton)]
    assert (records[0]["width"], records[0]["height"]) == (1280, 886)
    assert len(records[0]["faces"]) == 6
    (face,) = records[1]["faces"]
    assert set(face) == {"box", "score", "landmarks"}
    x1, y1, x2, y2 = face["box"]
    # The asset README gives the Newton face at about [334, 89, 438, 232].
    assert abs(x1 - 334) < 12 and abs(y1 - 89) < 12 and abs(x2 - 438) < 12 and abs(y2 - 232) < 12
    assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
    assert 0.5 <= face["score"] <= 1.0
    # Landmarks sit inside the box: eyes above the mouth.
    (rex, rey), (lex, ley), _, (_, mry), (_, mly) = face["landmarks"]
    assert x1 < rex < lex < x2 and max(rey, ley) < min(mry, mly) < y2
    # Each drawing keeps its input's name and format, and its path is in the record.
    assert [r["drawing"] for r in records] == [
        str(tmp_path / "insightface_t1.jpg"), str(tmp_path / "cospectrum_newton.png"),
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cospectrum_newton.png", "insightface_t1.jpg"]
    for record, image_format in zip(records, ("JPEG", "PNG"), strict=True):
        with Image.open(record["drawing"]) as img:
            assert (img.format, img.size) == (image_format, (record["width"], record["height"]))


def test_draw_prints_where_it_wrote_and_never_overwrites_the_input(
    asset: Callable[[str], Path], tmp_path: Path
) -> None:
    source = tmp_path / "newton.png"
    source.write_bytes(asset("images/cospectrum_newton.png").read_bytes())
    model = str(asset("models/scrfd/det_500m.onnx"))
    result = run_nvr("detect", str(source), "--model", model, "--draw", str(tmp_path))
    assert result.returncode == 0, result.stderr
    drawn = tmp_path / "newton.faces.png"
    assert result.stdout.splitlines()[-1] == f"  drawn to {drawn}"
    assert source.read_bytes() == asset("images/cospectrum_newton.png").read_bytes()
    with Image.open(drawn) as img:
        assert img.format == "PNG"


def tag_height(drawing: Image.Image, x: int, box_top: int, background: int = 128) -> int:
    """Rows of the label tag (anything but the grey background) straight above the box, in column `x`."""
    column = np.asarray(drawing)[:box_top, x]
    plain = np.flatnonzero((column == background).all(axis=1))
    return box_top - 1 - int(plain[-1]) if plain.size else box_top


def test_labels_and_lines_grow_with_the_image() -> None:
    """On a 3000x2171 photo (viewed scaled to a screen) labels must stay readable: they and the box lines
    scale with the image, about 1/60 and 1/500 of its longer side."""
    heights = {}
    for width, height in ((640, 360), (3000, 2171)):
        box = np.array([[200.0, 150.0, 300.0, 270.0]], np.float32)
        landmarks = np.full((1, 5, 2), 250.0, np.float32)
        detections = Detections(box, np.array([0.87], np.float32), landmarks, SCRFD_LANDMARKS)
        drawing = draw_faces(np.full((height, width, 3), 128, np.uint8), detections)
        line = int(np.count_nonzero((np.asarray(drawing)[200, 190:215] == BOX_COLOUR).all(axis=1)))
        heights[width] = (tag_height(drawing, 205, 150), line)
    (small_tag, small_line), (large_tag, large_line) = heights[640], heights[3000]
    assert small_tag >= 12 and large_tag >= 40 and large_tag >= 3 * small_tag  # ~20 px at half size
    assert small_line == 2 and large_line == 6


def test_names_are_drawn_for_identified_faces(tmp_path: Path) -> None:
    detections = Detections(
        np.array([[20.0, 60.0, 80.0, 140.0], [120.0, 60.0, 180.0, 140.0]], np.float32),
        np.array([0.9, 0.8], np.float32), np.zeros((2, 5, 2), np.float32), SCRFD_LANDMARKS,
    )  # fmt: skip
    image = np.full((200, 200, 3), 128, np.uint8)
    path = save_identified(image, detections, [("Ada", 0.71), ("unknown", 0.2)], tmp_path, Path("x.jpeg"))
    assert path == tmp_path / "x.jpeg"
    named = np.asarray(draw_faces(image, detections, ["Ada 0.71", "unknown 0.20"]))
    plain = np.asarray(draw_faces(image, detections))
    assert not np.array_equal(named, plain), "the labels are the names, not the scores"


def test_a_model_file_at_fault_exits_4_and_a_model_nvr_cannot_use_exits_5(
    asset: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's story: missing, unreadable or not a model at all is the input file's fault (4); a
    readable model that is not a face detector nvr runs (or not for this chip or backend) is 5."""
    image = str(asset("images/hollance_1face.png"))
    junk_onnx, junk_tflite = tmp_path / "junk.onnx", tmp_path / "junk.tflite"
    junk_onnx.write_bytes(b"not a protobuf")
    junk_tflite.write_bytes(b"not a flatbuffer" * 64)
    for model in (tmp_path / "missing.onnx", junk_onnx, junk_tflite):
        assert main(["detect", image, "--model", str(model)]) == ExitCode.INPUT
        assert capsys.readouterr().err.startswith(f"nvr: error: {model}: ")
    embedder = asset("models/recognition/fr_feature_512.onnx")
    assert main(["detect", image, "--model", str(embedder)]) == ExitCode.MODEL
    assert "are not those of a known detector family" in capsys.readouterr().err
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "4 input file (missing, unreadable or not a model)" in readme


def test_threshold_changes_the_answer(asset: Callable[[str], Path], capsys: object) -> None:
    model = str(asset("models/scrfd/det_500m.onnx"))
    image = str(asset("images/hpc203_selfie.jpg"))
    counts = []
    for threshold in ("0.8", "0.3"):
        result = run_nvr("detect", image, "--model", model, "--json", "--threshold", threshold)
        assert result.returncode == 0, result.stderr
        counts.append(len(json.loads(result.stdout)["faces"]))
    assert 20 < counts[0] < counts[1]


def test_one_bad_image_does_not_stop_the_others(asset: Callable[[str], Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    good = asset("images/cospectrum_newton.png")
    model = str(asset("models/scrfd/det_500m.onnx"))
    result = run_nvr("detect", str(bad), str(good), "--model", model, "--json")
    assert result.returncode == ExitCode.INPUT
    assert len(result.stdout.splitlines()) == 1 and "cospectrum_newton" in result.stdout
    assert result.stderr.count("\n") == 1 and str(bad) in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_are_one_line(tmp_path: Path, capsys: object) -> None:
    image = str(tmp_path / "x.jpg")
    assert main(["detect", image]) == ExitCode.MODEL  # no model at all
    assert main(["detect", image, "--model", str(tmp_path / "none.onnx")]) == ExitCode.INPUT
    (tmp_path / "m.tflite2").write_bytes(b"x")
    assert main(["detect", image, "--model", str(tmp_path / "m.tflite2")]) == ExitCode.MODEL
    result = run_nvr("detect", image, "--model", str(tmp_path / "none.onnx"))
    assert result.returncode == ExitCode.INPUT
    assert result.stderr == f"nvr: error: {tmp_path / 'none.onnx'}: no such model file\n"
