"""`nvr faces` as a user runs it (subprocesses, the issue's own command lines), on the real photos and video.

Models: the 512-d test embedder `fr_feature_512.onnx` and SCRFD-2.5G `det_2.5g.onnx`, passed by bare file
name from the current folder exactly as in the issue's outside check.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from nvr.errors import ExitCode
from nvr.recognition.library import FaceLibrary

NVR = [sys.executable, "-m", "nvr"]
ENROLLED = ("obama", "biden", "kit_harington", "lin_manuel_miranda")
NOT_ENROLLED = ("alex_lacamoire", "rose_leslie")


def photos(assets: Path, person: str) -> list[Path]:
    return sorted((assets / "faces" / person).iterdir())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the two models, as the outside check has them."""
    from conftest import asset_path

    folder = tmp_path_factory.mktemp("faces-cli")
    shutil.copy(asset_path("models/recognition/fr_feature_512.onnx"), folder)
    shutil.copy(asset_path("models/scrfd/det_2.5g.onnx"), folder)
    return folder


def faces(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    models = ["--embedder", "fr_feature_512.onnx", "--face-detector", "det_2.5g.onnx"]
    return subprocess.run(
        [*NVR, "faces", *args, *models], cwd=workdir, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def enrolled(workdir: Path) -> Path:
    """One photo of each enrolled person, one `nvr faces add` each, as in the outside check."""
    from conftest import asset_path

    assets = asset_path("faces").parent
    library = workdir / "L.db"
    for person in ENROLLED:
        result = faces(workdir, "add", person, str(photos(assets, person)[0]), "--library", str(library))
        assert result.returncode == 0, result.stderr
        assert f"{person} ({person}): 1 sample(s) added" in result.stdout
    return library


def identify(workdir: Path, library: Path, images: list[Path], *extra: str) -> list[Any]:
    result = faces(
        workdir, "identify", "--json", "--threshold", "0.4", "--margin", "0", "--library", str(library),
        *extra, *map(str, images),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_one_photo_each_names_every_other_photo(
    workdir: Path, enrolled: Path, asset: Callable[[str], Path]
) -> None:
    assets = asset("faces").parent
    others = [p for person in ENROLLED for p in photos(assets, person)[1:]]
    strangers = [p for person in NOT_ENROLLED for p in photos(assets, person)]
    records = identify(workdir, enrolled, others + strangers)
    assert [r["image"] for r in records] == [str(p) for p in others + strangers]
    for record in records:
        person = Path(str(record["image"])).parent.name
        faces_found: list[Any] = record["faces"]
        assert set(record) == {"image", "width", "height", "landmark_names", "faces"}
        face = max(faces_found, key=lambda f: _area(f["box"]))  # the largest face counts
        assert set(face) == {"box", "score", "landmarks", "identity", "candidates"}
        identity: dict[str, Any] = face["identity"]
        assert set(identity) == {"name", "score", "model"}
        assert str(identity["model"]).startswith("fr_feature_512-")
        candidates: list[dict[str, Any]] = face["candidates"]
        assert len(candidates) == 3 and all(set(c) == {"name", "score"} for c in candidates)
        scores = [float(c["score"]) for c in candidates]
        assert scores == sorted(scores, reverse=True)
        if person in ENROLLED:
            assert identity["name"] == person, record["image"]
            assert candidates[0]["name"] == person and identity["score"] == candidates[0]["score"]
        else:
            assert identity["name"] is None, record["image"]
            assert float(identity["score"]) < 0.4


def _area(box: list[float]) -> float:
    x1, y1, x2, y2 = box
    return float((x2 - x1) * (y2 - y1))


def test_video_names_lin_manuel_miranda_and_nobody_else(
    workdir: Path, enrolled: Path, asset: Callable[[str], Path], tmp_path: Path
) -> None:
    wanted = {30, 60, 80, 120, 150, 180, 230, 260}  # he is the large face from ~90 to 210
    frames: dict[int, Path] = {}
    with av.open(str(asset("video/hamilton_clip.mp4"))) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                frames[index] = tmp_path / f"frame{index:03d}.png"
                Image.fromarray(frame.to_ndarray(format="rgb24")).save(frames[index])
            if index >= max(wanted):
                break
    drawn = tmp_path / "drawn"
    records = identify(workdir, enrolled, [frames[i] for i in sorted(frames)], "--draw", str(drawn))
    # The drawings keep their inputs' names and format.
    assert sorted(p.name for p in drawn.iterdir()) == [f"frame{i:03d}.png" for i in sorted(frames)]
    for index, record in zip(sorted(frames), records, strict=True):
        names = [f["identity"]["name"] for f in record["faces"]]
        if 120 <= index <= 180:
            assert names == ["lin_manuel_miranda"], (index, names)
        else:
            assert names and all(name is None for name in names), (index, names)


def test_add_refuses_bad_images_and_enrols_the_rest(
    workdir: Path, asset: Callable[[str], Path], tmp_path: Path
) -> None:
    library = tmp_path / "faces.db"
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a picture")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    good = photos(asset("faces").parent, "obama")[:2]
    result = faces(
        workdir, "add", "Barack Obama", str(not_image), str(blank), *map(str, good), "--library", str(library)
    )
    assert result.returncode == ExitCode.INPUT
    errors = result.stderr.splitlines()
    assert len(errors) == 2, result.stderr
    assert str(not_image) in errors[0] and "not a readable image" in errors[0]
    assert str(blank) in errors[1] and "no face found" in errors[1]
    assert "Barack Obama (barack_obama): 2 sample(s) added" in result.stdout
    with FaceLibrary(library) as opened:
        (person,) = opened.people()
        assert [s.source for s in opened.samples(person)] == [str(p) for p in good]

    # Only refused images: nobody is created.
    result = faces(workdir, "add", "Nobody", str(blank), "--library", str(library))
    assert result.returncode == ExitCode.INPUT and "nothing enrolled" in result.stderr
    # A name that becomes someone else's slug: one line, exit 2, library untouched.
    with FaceLibrary(library) as opened:
        version = opened.version()
    result = faces(workdir, "add", "barack-obama", str(good[0]), "--library", str(library))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.strip().count("\n") == 0 and "collides with 'Barack Obama'" in result.stderr
    with FaceLibrary(library) as opened:
        assert opened.version() == version and [p.name for p in opened.people()] == ["Barack Obama"]


def test_bad_library_files(workdir: Path, asset: Callable[[str], Path], tmp_path: Path) -> None:
    image = str(photos(asset("faces").parent, "biden")[0])
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"\x00garbage" * 1000)
    for command in (("add", "Joe", image), ("identify", image), ("list",)):
        result = faces(workdir, *command, "--library", str(corrupt))
        assert result.returncode == ExitCode.INPUT, result.stderr
        assert result.stderr.count("\n") == 1 and str(corrupt) in result.stderr
    assert corrupt.read_bytes() == b"\x00garbage" * 1000

    future = tmp_path / "future.db"
    FaceLibrary(future).close()
    with sqlite3.connect(future) as db:
        db.execute("PRAGMA user_version = 42")
    result = faces(workdir, "add", "Joe", image, "--library", str(future))
    assert result.returncode == ExitCode.INPUT and "newer nvr" in result.stderr
    with sqlite3.connect(future) as db:
        assert db.execute("SELECT COUNT(*) FROM people").fetchone()[0] == 0

    missing = tmp_path / "missing.db"
    result = faces(workdir, "identify", image, "--library", str(missing))
    assert result.returncode == ExitCode.INPUT and "no such face library" in result.stderr
    assert not missing.exists()


def test_an_embedder_whose_output_is_not_a_vector(
    workdir: Path, asset: Callable[[str], Path], tmp_path: Path
) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "not_an_embedder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 112, 112])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "image_to_image.onnx"
    onnx.save(model, str(path))
    library = tmp_path / "faces.db"
    image = str(photos(asset("faces").parent, "biden")[0])
    result = subprocess.run(
        [*NVR, "faces", "add", "Joe", image, "--library", str(library), "--embedder", str(path),
         "--face-detector", str(workdir / "det_2.5g.onnx")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == ExitCode.MODEL
    assert result.stderr.count("\n") == 1 and "not one embedding vector per face" in result.stderr
    assert not library.exists()  # nothing written at all


def test_list_rename_remove_and_import(workdir: Path, asset: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "people"
    for person in ("kit_harington", "rose_leslie"):
        shutil.copytree(asset("faces") / person, folder / person.replace("_", " ").title())
    library = tmp_path / "faces.db"
    result = faces(workdir, "import", str(folder), "--library", str(library))
    assert result.returncode == 0, result.stderr
    assert "import: 5/5 images" in result.stderr  # the progress bar (one line per tenth off a terminal)
    assert "imported 5 sample(s) of 2 people" in result.stdout

    listing = json.loads(faces(workdir, "list", "--json", "--library", str(library)).stdout)
    people = {p["name"]: p for p in listing["people"]}
    assert set(people) == {"Kit Harington", "Rose Leslie"}
    assert people["Rose Leslie"]["slug"] == "rose_leslie" and len(people["Rose Leslie"]["samples"]) == 2
    (model,) = listing["models"]
    assert (
        model["dim"] == 512 and model["samples"] == 5 and people["Kit Harington"]["models"] == [model["id"]]
    )

    assert faces(workdir, "rename", "rose_leslie", "Rose", "--library", str(library)).returncode == 0
    first_sample = people["Kit Harington"]["samples"][0]["id"]
    assert (
        faces(
            workdir, "remove", "Kit Harington", "--sample", str(first_sample), "--library", str(library)
        ).returncode
        == 0
    )
    wrong = faces(workdir, "remove", "Rose", "--sample", str(first_sample), "--library", str(library))
    assert wrong.returncode == ExitCode.USAGE and "has no sample" in wrong.stderr
    assert faces(workdir, "remove", "Rose", "--library", str(library)).returncode == 0
    with FaceLibrary(library) as opened:
        (kit,) = opened.people()
        assert kit.name == "Kit Harington" and len(opened.samples(kit)) == 2
    gone = faces(workdir, "remove", "Rose", "--library", str(library))
    assert gone.returncode == ExitCode.USAGE and "no person 'Rose'" in gone.stderr


def test_config_gives_the_library_and_detector(
    workdir: Path, asset: Callable[[str], Path], tmp_path: Path
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "nvr.yml"
    config.write_text(f"detector:\n  model: {workdir / 'det_2.5g.onnx'}\nstate_dir: {state}\n")
    image = str(photos(asset("faces").parent, "biden")[0])
    # As the README has it: the common options before the action.
    result = subprocess.run(
        [*NVR, "faces", "--config", str(config), "--embedder", str(workdir / "fr_feature_512.onnx"),
         "add", "Joe Biden", image],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with FaceLibrary(state / "faces.db", create=False) as opened:
        assert [p.slug for p in opened.people()] == ["joe_biden"]
    # Looking at the library needs no model (the model store here is empty).
    listed = subprocess.run(
        [*NVR, "faces", "list", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [p["name"] for p in json.loads(listed.stdout)["people"]] == ["Joe Biden"]


def test_eval_faces(workdir: Path, asset: Callable[[str], Path], tmp_path: Path) -> None:
    result = subprocess.run(
        [*NVR, "eval", "faces", str(asset("faces")), "--enroll", "1", "--json", "--out", str(tmp_path),
         "--embedder", "fr_feature_512.onnx", "--face-detector", "det_2.5g.onnx", "--threshold", "0.4"],
        cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "faces: 16/16 photos" in result.stderr  # progress
    figures = json.loads(result.stdout)
    # 6 people enrolled with their first photo; the 10 other photos are probes (Lin has only one).
    assert (figures["people"], figures["enrolled"], figures["probes"]) == (6, 6, 10)
    assert figures["rank1"] == 1.0 and figures["accepted_right"] == 1.0 and figures["accepted_wrong"] == 0.0
    assert figures["far"] == 0.0 and figures["tar"] == 1.0
    # The asset README: different people score at most ~0.17 with this model.
    assert 0.1 < figures["threshold_at_target"] < 0.25
    with Image.open(tmp_path / "roc.png") as roc:
        assert roc.size == (800, 640)
    assert json.loads((tmp_path / "results.json").read_text())["probes"] == 10
