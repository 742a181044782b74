"""Setting up a Hailo: driver and library versions, which HailoRT a HEF needs, sharing the device.

The HailoRT double stands in for the library, the kernel driver (HAILO_DOUBLE_DRIVER_VERSION) and
hailort_service (HAILO_DOUBLE_SERVICE); see tests/hailo_double/hailo_platform/pyhailort/_pyhailort.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import asset_path
from hailo_support import PROJECT_ROOT, SCRFD_HEF, double_subprocess_env
from nvr_daemon import NvrDaemon

from nvr.backends import hailo_diagnostics as diag
from nvr.backends.hailo import HailoBackend
from nvr.errors import DeviceError, ExitCode

pytest_plugins = ("hailo_support",)

ARCFACE_HEF = "hef/arcface_mobilefacenet.hailo8.hef"


def nvr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nvr", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd=PROJECT_ROOT,
    )  # fmt: skip


def test_driver_and_library_out_of_step_names_both_and_the_fix(
    asset: Callable[[str], Path],
    double: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import hailo_platform

    double(driver_version="4.20.0")  # an OS update brought a new library but the old driver is loaded
    module_version = tmp_path / "version"
    module_version.write_text("4.20.0\n")  # what /sys/module/hailo_pci/version says on such a machine
    monkeypatch.setattr(diag, "DRIVER_VERSION_FILES", (tmp_path / "absent", module_version))
    with pytest.raises(DeviceError) as caught:
        HailoBackend(asset(SCRFD_HEF))
    message = str(caught.value)
    assert message.startswith("the Hailo driver and library versions differ (HailoRT status 76): ")
    assert f"driver 4.20.0, library {hailo_platform.__version__}" in message and "\n" not in message
    assert "sudo apt install --reinstall hailo-all" in message and "reboot" in message
    assert caught.value.exit_code == ExitCode.DEVICE


def test_driver_mismatch_is_one_line_and_exit_6(asset: Callable[[str], Path], tmp_path: Path) -> None:
    image = str(asset("images/cospectrum_newton.png"))
    env = double_subprocess_env(tmp_path / "locks", arch="hailo10h", driver_version="5.1.0")
    done = nvr(env, "detect", "--backend", "hailo", "--model", str(asset(SCRFD_HEF)), image)
    assert done.returncode == ExitCode.DEVICE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(
        "nvr: error: the Hailo driver and library versions differ (HailoRT status 76)"
    )
    assert "library 5.2.0" in lines[-1] and "driver " in lines[-1]
    assert "Traceback" not in done.stderr


def test_models_inspect_says_which_hailort_the_hef_needs(
    asset: Callable[[str], Path], tmp_path: Path
) -> None:
    hailo8 = double_subprocess_env(tmp_path / "locks", arch="hailo8")  # HailoRT 4.23.0 installed
    text = nvr(hailo8, "models", "inspect", str(asset(ARCFACE_HEF))).stdout
    assert "HailoRT        needs HailoRT >= 4.17, < 5.0; installed 4.23.0: OK" in text.splitlines()
    text = nvr(hailo8, "models", "inspect", str(asset(SCRFD_HEF))).stdout
    assert "needs HailoRT >= 5.0, < 6.0; installed 4.23.0: will not load it" in text
    doc = json.loads(nvr(hailo8, "models", "inspect", str(asset(SCRFD_HEF)), "--json").stdout)
    assert doc["hailort"] == {"needs": ">= 5.0, < 6.0", "installed": "4.23.0", "ok": False}
    bare = {**hailo8, "PYTHONPATH": str(PROJECT_ROOT)}  # no HailoRT at all
    doc = json.loads(nvr(bare, "models", "inspect", str(asset(ARCFACE_HEF)), "--json").stdout)
    assert doc["hailort"] == {"needs": ">= 4.17, < 5.0", "installed": None, "ok": None}


def test_check_config_says_which_hailort_the_hef_needs(asset: Callable[[str], Path], tmp_path: Path) -> None:
    config = tmp_path / "nvr.yml"
    config.write_text(
        "cameras:\n  - name: door\n    url: rtsp://camera.lan/stream\n"
        f"state_dir: {tmp_path / 'state'}\n"
        f"detector:\n  backend: hailo\n  model: {asset(SCRFD_HEF)}\n"
    )
    env = double_subprocess_env(tmp_path / "locks", arch="hailo10h")  # HailoRT 5.2.0
    done = nvr(env, "check-config", str(config))
    assert done.returncode == ExitCode.OK, done.stderr
    assert (
        f"{config}: detector.model scrfd_2.5g.hailo10h.hef: needs HailoRT >= 5.0, < 6.0; installed 5.2.0: OK"
        in done.stdout.splitlines()
    )


def _metrics(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("nvr_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name[4:]] = float(value)
    return values


def _daemon_config(tmp_path: Path, name: str, shared: bool) -> dict[str, object]:
    clip = f"file://{asset_path('video/hamilton_clip.mp4')}"
    return {
        "instance": f"t{uuid.uuid4().hex[:8]}",
        "state_dir": str(tmp_path / name / "state"),
        "cameras": [{"name": name, "url": clip, "detect_fps": 5}],
        "capture": {"snapshot_width": 640, "snapshot_height": 360},
        "detector": {
            "backend": "hailo", "model": str(asset_path(SCRFD_HEF)),
            "hailo": {"multi_process_service": shared, "group_id": "SHARED"},
        },
        "metrics": {"port": 0},
    }  # fmt: skip


def test_two_nvr_processes_share_the_device_through_the_service(tmp_path: Path) -> None:
    """Two daemons on one Hailo, both through hailort_service: both detect. Without the service running,
    a daemon configured for it stops with the one line that says how to start it (exit 6)."""
    env = double_subprocess_env(tmp_path / "locks", service="1", replay="1", latency_ms="20")
    daemons = [NvrDaemon(tmp_path / n, _daemon_config(tmp_path, n, True), env=env) for n in ("a", "b")]
    try:
        urls = []
        for daemon in daemons:
            assert daemon.wait_for_event("detector ready", 90)["backend"] == "hailo"
            urls.append(daemon.wait_for_event("metrics endpoint listening")["url"])
        for name, url, daemon in zip(("a", "b"), urls, daemons, strict=True):
            key = f'camera_processed_frames_total{{camera="{name}"}}'
            deadline = time.monotonic() + 90
            while (values := _metrics(url)).get(key, 0) < 5 and time.monotonic() < deadline:
                time.sleep(1)
            assert values[key] >= 5, (name, values)
            assert daemon.proc.poll() is None
        for daemon in daemons:
            code, _seconds = daemon.stop()
            assert code == 0
    finally:
        for daemon in daemons:
            daemon.close()
    no_service = double_subprocess_env(tmp_path / "locks", service="0")
    daemon = NvrDaemon(tmp_path / "c", _daemon_config(tmp_path, "c", True), env=no_service)
    try:
        assert daemon.proc.wait(90) == ExitCode.DEVICE
        assert any("multi-process service does not answer" in raw for raw in daemon.raw), daemon.raw[-10:]
        assert any("systemctl enable --now hailort.service" in raw for raw in daemon.raw)
    finally:
        daemon.close()


@pytest.mark.parametrize(
    ("hef", "hw_arch", "installed", "needs", "ok"),
    [
        ("arcface", 1, "4.23.0", ">= 4.17, < 5.0", True),  # header v1: 4.17+; a Hailo-8 build: 4.x
        ("arcface", 1, "4.16.0", ">= 4.17, < 5.0", False),  # too old for header v1
        ("arcface", 1, "5.2.0", ">= 4.17, < 5.0", False),  # the 5.x line does not run Hailo-8
        ("scrfd", 1, "4.20.0", ">= 4.21, < 5.0", False),  # header v3 (the synthetic Hailo-8 build)
        ("scrfd", 1, "4.21.0", ">= 4.21, < 5.0", True),
        ("scrfd", 103, "5.2.0", ">= 5.0, < 6.0", True),  # the real Hailo-10H build
        ("scrfd", 103, None, ">= 5.0, < 6.0", None),  # HailoRT not installed
    ],
)
def test_which_hailort_a_hef_needs(
    asset: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
    hef: str,
    hw_arch: int,
    installed: str | None,
    needs: str,
    ok: bool | None,
) -> None:
    import dataclasses

    from nvr.hef import read_hef

    info = read_hef(asset(ARCFACE_HEF if hef == "arcface" else SCRFD_HEF))
    monkeypatch.setattr(diag, "installed_hailort_version", lambda: installed)
    found = diag.hailort_compatibility(dataclasses.replace(info, hw_arch=hw_arch))
    assert (found.needs, found.installed, found.ok) == (needs, installed, ok)
    line = found.line()
    assert line.startswith(f"needs HailoRT {needs}; ") and "\n" not in line
    assert line.endswith(
        {True: ": OK", False: ": will not load it", None: "(hailo_platform cannot be imported)"}[ok]
    )
