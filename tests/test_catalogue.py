"""The model catalogue lists the official SCRFD builds and CPU models, and never invents a checksum."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvr.errors import ConfigError
from nvr.models.catalogue import cpu_model_for, find, load_catalogue

MODEL_ZOO = "https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled/"


def test_every_scrfd_variant_has_hailo8_and_hailo8l_builds() -> None:
    entries = load_catalogue()
    for family in ("scrfd_500m", "scrfd_2.5g", "scrfd_10g"):
        for chip in ("hailo8", "hailo8l"):
            entry = find(f"{family}-{chip}", entries)
            assert entry is not None and entry.kind == "hef" and entry.chip == chip
            assert entry.url == f"{MODEL_ZOO}v2.18.0/{chip}/{family}.hef"
        cpu = cpu_model_for(family, entries)
        assert cpu is not None and cpu.kind == "onnx" and cpu.url.startswith("https://")
    assert len({e.id for e in entries}) == len(entries)
    # No published checksums are known for these files: the pull command computes and prints them.
    assert all(e.sha256 is None for e in entries)


def test_models_are_stored_by_file_name_and_mirrored_at_their_catalogue_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NVR_MODELS", str(tmp_path / "store"))
    monkeypatch.setenv("NVR_ASSETS", str(tmp_path / "mirror"))
    entry = find("scrfd_2.5g-onnx")
    assert entry is not None
    assert entry.local_path == tmp_path / "store" / "det_2.5g.onnx"
    assert entry.mirror_path == tmp_path / "mirror" / "models" / "scrfd" / "det_2.5g.onnx"
    hef = find("scrfd_2.5g-hailo8")
    assert hef is not None and hef.local_path == tmp_path / "store" / "scrfd_2.5g.hailo8.hef"


def test_two_models_cannot_share_a_file_name_in_the_flat_store(tmp_path: Path) -> None:
    bad = tmp_path / "catalogue.yaml"
    model = "  - {{id: {id}, family: f, kind: onnx, url: u, path: {path}}}\n"
    models = [model.format(id="a", path="x/m.onnx"), model.format(id="b", path="y/m.onnx")]
    bad.write_text("models:\n" + "".join(models))
    with pytest.raises(ConfigError, match=r"models\[1\] \(b\): another model is already stored as m.onnx"):
        load_catalogue(bad)


def test_bad_catalogue_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "catalogue.yaml"
    bad.write_text("models:\n  - id: x\n    family: scrfd_2.5g\n    kind: hef\n    url: u\n    path: p\n")
    with pytest.raises(ConfigError, match=r"models\[0\] \(x\): kind must be hef \(with a chip\)"):
        load_catalogue(bad)


def test_face_embedders_have_official_sources_normalisation_and_thresholds() -> None:
    entries = load_catalogue()
    for chip in ("hailo8", "hailo8l"):
        entry = find(f"arcface_mobilefacenet-{chip}", entries)
        assert entry is not None and entry.kind == "hef" and entry.chip == chip
        assert entry.url == f"{MODEL_ZOO}v2.18.0/{chip}/arcface_mobilefacenet.hef"
        assert entry.match_threshold is not None and entry.input_mean is None  # normalised inside the HEF
    cpu = cpu_model_for("arcface_mobilefacenet", entries)
    assert cpu is not None and cpu.id == "arcface_mobilefacenet-onnx"
    assert cpu.url.endswith("/buffalo_sc.zip") and cpu.member == "w600k_mbf.onnx"
    assert (cpu.input_mean, cpu.input_std) == (127.5, 127.5) and cpu.match_threshold == 0.4
    # Test models are test assets, never catalogue entries.
    assert not any("fr_feature" in e.path or "mobilefacenet_192" in e.path for e in entries)
