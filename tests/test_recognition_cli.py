"""`nvr faces` for what the daemon saw: stranger groups (list, crops out, name, merge, remove) and enrolling
an event's kept crop; real embedder, real library file, the CLI run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import PROJECT_ROOT, asset_path
from recognition_helpers import DETECTOR, EMBEDDER, enrol

from nvr.errors import ExitCode
from nvr.families.arcface import open_embedder
from nvr.recognition.enrolment import decode_crop
from nvr.recognition.library import FaceLibrary
from nvr.recognition.strangers import StrangerStore

EVENT = "1765100000.123456-abc123"


def nvr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nvr", "faces", *args],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A daemon configuration whose library holds two stranger groups (Obama twice, Biden once) made from
    real aligned crops, and the kept crop of one event."""
    state = tmp_path / "state"
    library = state / "faces.db"
    enrol(library, "Rose Leslie", "faces/rose_leslie/1.jpg")
    with FaceLibrary(library) as faces:
        rose = faces.people()[0]
        crop = faces.sample_crop(faces.samples(rose)[0].id)
        faces.remove_person(rose)  # only its crop was wanted: a real aligned face
    other = state / "tmp.db"
    obama = [enrol(other, f"o{i}", f"faces/obama/{i}.jpg") for i in (1, 2)]
    biden = enrol(other, "b", "faces/biden/1.jpg")
    with FaceLibrary(other) as faces, open_embedder(asset_path(EMBEDDER)) as embedder:
        crops = {p.id: faces.sample_crop(faces.samples(p)[0].id) for p in (*obama, biden)}
        with StrangerStore(library) as strangers:
            for i, person in enumerate((*obama, biden)):
                vector = embedder.embed(decode_crop(crops[person.id])[None])[0]
                strangers.record(vector, embedder.model_id, crops[person.id], camera="door",
                                 event_id=f"e{i}", time=1000.0 + i, join_threshold=0.4)  # fmt: skip
    (state / "crops").mkdir()
    (state / "crops" / f"{EVENT}.jpg").write_bytes(crop)
    config = tmp_path / "nvr.yml"
    config.write_text(yaml.safe_dump({
        "state_dir": str(state), "cameras": [],
        "recognition": {"enabled": True, "embedder": str(asset_path(EMBEDDER))},
        "detector": {"backend": "onnx", "model": str(asset_path(DETECTOR))},
    }))  # fmt: skip
    return config, library


def test_list_name_merge_remove_groups(setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, library = setup
    listed = nvr("unknown", "--config", str(config), "--json", "--out", str(tmp_path / "out"))
    assert listed.returncode == 0, listed.stderr
    groups = {g["group"]: g for g in json.loads(listed.stdout)["groups"]}
    assert set(groups) == {"unknown_1", "unknown_2"}, "the same unknown face (Obama twice) is one group"
    assert groups["unknown_1"]["sightings"] == 2 and groups["unknown_1"]["cameras"] == ["door"]
    assert len(list((tmp_path / "out" / "unknown_1").glob("*.jpg"))) == 2
    text = nvr("unknown", "--library", str(library))
    assert "unknown_1: seen 2 time(s)" in text.stdout
    named = nvr("name", "unknown_1", "Barack Obama", "--library", str(library))
    assert named.returncode == 0, named.stderr
    assert "2 sample(s) enrolled" in named.stdout
    with FaceLibrary(library) as faces:
        obama = faces.require_person("Barack Obama")
        assert len(faces.samples(obama)) == 2 and obama.slug == "barack_obama"
    # A name that collides with Barack Obama's slug is refused on one line; the group stays, untouched.
    clash = nvr("name", "unknown_2", "Barack-Obama", "--library", str(library))
    assert clash.returncode == ExitCode.USAGE and "collides" in clash.stderr
    assert "\n" not in clash.stderr.strip()
    assert json.loads(nvr("unknown", "--library", str(library), "--json").stdout)["groups"][0]["crops"] == 1
    again = nvr("name", "unknown_1", "Someone", "--library", str(library))
    assert again.returncode == ExitCode.USAGE and "unknown_1" in again.stderr
    removed = nvr("remove", "unknown_2", "--library", str(library))
    assert removed.returncode == 0, removed.stderr
    assert json.loads(nvr("unknown", "--library", str(library), "--json").stdout)["groups"] == []


def test_enrol_an_events_kept_crop(setup: tuple[Path, Path]) -> None:
    config, library = setup
    args = ["--config", str(config), "--face-detector", str(asset_path(DETECTOR))]
    added = nvr("add", "Rose Leslie", "--event", EVENT, *args)
    assert added.returncode == 0, added.stderr
    with FaceLibrary(library) as faces:
        rose = faces.require_person("Rose Leslie")
        (sample,) = faces.samples(rose)
        assert sample.source == f"event {EVENT}"
        matrix, owners = faces.embedding_matrix(faces.sample_models(sample.id)[0])
        assert owners == [rose.id] and np.isclose(np.linalg.norm(matrix[0]), 1.0, atol=1e-4)
    missing = nvr("add", "Rose Leslie", "--event", "1765100000.000000-zzzzzz", *args)
    assert missing.returncode == ExitCode.INPUT and "no kept crop" in missing.stderr
    bad = nvr("add", "Rose Leslie", "--event", "../../etc/passwd", *args)
    assert bad.returncode == ExitCode.INPUT and "not an event id" in bad.stderr
