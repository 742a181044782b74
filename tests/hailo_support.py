"""Helpers for tests that run against the HailoRT test double in tests/hailo_double."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

DOUBLE_DIR = Path(__file__).resolve().parent / "hailo_double"
SCRFD_HEF = "hef/scrfd_2.5g.hailo10h.hef"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

if str(DOUBLE_DIR) not in sys.path:
    sys.path.insert(0, str(DOUBLE_DIR))

_DOUBLE_VARS = (
    "HAILO_DOUBLE_ARCH", "HAILO_DOUBLE_DEVICES", "HAILO_DOUBLE_LOCK_DIR", "HAILO_DOUBLE_SERVICE",
    "HAILO_DOUBLE_VERSION", "HAILO_DOUBLE_LATENCY_MS", "HAILO_DOUBLE_REPLAY", "HAILO_DOUBLE_QUEUE_SIZE",
    "HAILO_DOUBLE_FAIL_FRAMES", "HAILO_DOUBLE_FAIL_STATUS", "HAILO_DOUBLE_HANG_AFTER", "HAILO_DOUBLE_HANGS",
    "HAILO_DOUBLE_ONNX", "HAILO_DOUBLE_QUEUE_FRAMES", "HAILO_DOUBLE_EMBEDDER_ONNX",
    "HAILO_DOUBLE_DRIVER_VERSION",
)  # fmt: skip


def configure_double(monkeypatch: pytest.MonkeyPatch, lock_dir: Path, **settings: str) -> None:
    """A fresh simulated chip (Hailo-10H family unless `arch=` says otherwise) with its own device lock.

    Fresh includes the in-process device registry: a VDevice that an earlier (failed) test never released
    keeps holding that test's chip, so it cannot make this test's VDevice() fail with status 74.
    """
    for name in _DOUBLE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HAILO_DOUBLE_ARCH", settings.pop("arch", "hailo10h"))
    monkeypatch.setenv("HAILO_DOUBLE_LOCK_DIR", str(lock_dir))
    for key, value in settings.items():
        monkeypatch.setenv(f"HAILO_DOUBLE_{key.upper()}", value)
    from hailo_platform.pyhailort import _pyhailort

    monkeypatch.setattr(_pyhailort, "REGISTRY", _pyhailort.DeviceRegistry())


def double_subprocess_env(lock_dir: Path, **settings: str) -> dict[str, str]:
    """Environment for a subprocess `nvr` (or python) that imports the double."""
    env = {k: v for k, v in os.environ.items() if k not in _DOUBLE_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(DOUBLE_DIR), str(PROJECT_ROOT)])
    env["HAILO_DOUBLE_ARCH"] = settings.pop("arch", "hailo10h")
    env["HAILO_DOUBLE_LOCK_DIR"] = str(lock_dir)
    for key, value in settings.items():
        env[f"HAILO_DOUBLE_{key.upper()}"] = value
    return env


@contextmanager
def device_held_by_another_process(lock_dir: Path) -> Iterator[None]:
    """Another process opens the (simulated) Hailo and keeps it until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import hailo_platform as hp, sys; v = hp.VDevice(); print('held', flush=True); "
            "sys.stdin.readline()",
        ],
        env=double_subprocess_env(lock_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.communicate("\n", timeout=30)


@pytest.fixture
def hailo_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """structlog events logged during the test (from any thread), as dicts: event, log_level, keys."""
    with structlog.testing.capture_logs() as logs:
        yield logs


@pytest.fixture
def double(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Configure the double for one test; call the returned function again to change its settings."""

    def configure(**settings: str) -> None:
        configure_double(monkeypatch, tmp_path / "locks", **settings)

    configure()
    return configure
