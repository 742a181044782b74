"""Where pulled models live (`nvr.assets.models_dir()`) and how the daemon finds catalogue models there."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import asset_path

from nvr.assets import models_dir
from nvr.config import DetectorConfig
from nvr.errors import ConfigError, ModelError
from nvr.models.resolve import cpu_counterpart, resolve_configured, resolve_model


def test_the_store_is_nvr_models_then_systemd_state_then_xdg_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NVR_MODELS", str(tmp_path / "chosen"))
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/nvr:/var/lib/other")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert models_dir() == tmp_path / "chosen"
    monkeypatch.delenv("NVR_MODELS")
    assert models_dir() == Path("/var/lib/nvr/models")  # systemd's StateDirectory=nvr
    monkeypatch.delenv("STATE_DIRECTORY")
    assert models_dir() == tmp_path / "data" / "nvr" / "models"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG spec: relative values are ignored
    assert models_dir() == tmp_path / "home" / ".local" / "share" / "nvr" / "models"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert models_dir() == tmp_path / "home" / ".local" / "share" / "nvr" / "models"


def test_the_daemon_finds_a_catalogue_model_in_the_store_only(
    tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    detector = DetectorConfig(backend="onnx", model="scrfd_2.5g")
    asset_path("models/scrfd/det_2.5g.onnx")  # the mirror has it, but the daemon never reads the mirror
    with pytest.raises(ConfigError) as caught:
        resolve_configured(detector, tmp_path)
    store = model_store()
    assert caught.value.message == (
        f"detector.model: 'scrfd_2.5g' is not in the model store {store}: "
        f"run `NVR_MODELS={store} nvr models pull scrfd_2.5g-onnx or scrfd_2.5g-bnkps-onnx`"
    )
    model_store("scrfd_2.5g-onnx")
    assert _found(detector, tmp_path) == (store / "det_2.5g.onnx", "onnx")
    by_id = DetectorConfig(backend="auto", model="scrfd_2.5g-onnx")
    assert _found(by_id, tmp_path) == (store / "det_2.5g.onnx", "onnx")


def test_under_systemd_the_pull_command_names_the_service_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NVR_MODELS")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    with pytest.raises(ConfigError, match=r"run `sudo -u \S+ NVR_MODELS=\S+/state/models nvr models pull"):
        resolve_configured(DetectorConfig(backend="onnx", model="scrfd_500m"), tmp_path)


def _found(detector: DetectorConfig, config_dir: Path) -> tuple[Path, str]:
    model = resolve_configured(detector, config_dir)
    return model.path, model.backend


def test_an_id_names_its_file_and_a_hef_falls_back_to_its_familys_cpu_model(
    model_store: Callable[..., Path],
) -> None:
    store = model_store("scrfd_2.5g-hailo10h")
    hef = resolve_model("scrfd_2.5g-hailo10h")
    expected = (store / "scrfd_2.5g.hailo10h.hef", "hailo", "scrfd_2.5g")
    assert (hef.path, hef.backend, hef.catalogue_family) == expected
    assert hef.may_fall_back and not hef.pinned().may_fall_back
    assert not resolve_model("scrfd_2.5g-hailo10h", backend="hailo").may_fall_back
    missing = (
        r"^no CPU model of scrfd_2\.5g to fall back on \(NVR_MODELS=\S+ nvr models pull scrfd_2\.5g-onnx\)$"
    )
    with pytest.raises(ModelError, match=missing):
        cpu_counterpart(hef, "fall back on", ModelError)
    model_store("scrfd_2.5g-onnx")
    cpu = cpu_counterpart(hef, "fall back on", ModelError)
    assert (cpu.path, cpu.backend) == (store / "det_2.5g.onnx", "onnx")
    with pytest.raises(
        ModelError, match=r"det_2\.5g\.onnx: \.onnx models run on the onnx backend, not hailo$"
    ):
        resolve_model("scrfd_2.5g-onnx", backend="hailo")
