"""The Hailo engine against the HailoRT double: correct faces, async flow, back-pressure, every failure."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hailo_support import (
    PROJECT_ROOT,
    SCRFD_HEF,
    device_held_by_another_process,
    double_subprocess_env,
)

from nvr.backends.hailo import HailoBackend, HailoEngine, HailoSettings, InferenceResult
from nvr.contracts.frameref import ArrayFrame
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.detector import open_detector
from nvr.errors import DeviceError, ExitCode, ModelError

IMAGES = [
    "images/insightface_t1.jpg",
    "images/cospectrum_newton.png",
    "images/face_recognition_two_people.jpg",
]


pytest_plugins = ("hailo_support",)  # fixtures: double (configures the HailoRT double), hailo_logs


@pytest.fixture
def frame(asset: Callable[[str], Path]) -> np.ndarray:
    pixels = np.zeros((640, 640, 3), np.uint8)
    letterbox_into(load_rgb(asset("images/insightface_t1.jpg")), pixels)
    return pixels


class CountingFrame(ArrayFrame):
    __slots__ = ("released",)

    def __init__(self, pixels: np.ndarray, tag: object) -> None:
        super().__init__(pixels, tag)
        self.released = 0

    def release(self) -> bool:
        self.released += 1
        return True


def _collect(engine: HailoEngine, n: int, timeout: float = 60.0) -> list[tuple[object, str | None]]:
    got: list[tuple[object, str | None]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        result = engine.get_result(timeout=0.5)
        if result is not None:
            with result:
                got.append((result.tag, result.error))
    return got


def _events(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [entry for entry in list(logs) if entry["event"] == event]


def _engine(asset: Callable[[str], Path], **settings: float) -> Iterator[HailoEngine]:
    engine = HailoEngine(asset(SCRFD_HEF), HailoSettings(**settings)).start()  # type: ignore[arg-type]
    try:
        yield engine
    finally:
        engine.close()


@pytest.mark.parametrize("image", IMAGES)
def test_faces_match_onnx_within_quantization_error(
    asset: Callable[[str], Path], double: Callable[..., None], image: str
) -> None:
    picture = load_rgb(asset(image))
    with open_detector(asset("models/scrfd/det_2.5g.onnx")) as cpu, open_detector(asset(SCRFD_HEF)) as hailo:
        assert isinstance(hailo.backend, HailoBackend)
        expected, got = cpu.detect(picture), hailo.detect(picture)
    assert len(got) == len(expected) > 0
    # Boxes: within a few quantization steps (box scale ~0.02-0.03 stride units = up to ~1 px at stride 32,
    # times the letterbox scale back to the source image).
    scale = max(picture.shape[:2]) / 640
    for face in expected:
        best = min(got, key=lambda f: float(np.abs(np.subtract(f.box, face.box)).max()))
        assert np.abs(np.subtract(best.box, face.box)).max() <= 3.0 * scale
        assert abs(best.score - face.score) <= 2.0 / 255
        assert np.abs(np.subtract(best.landmarks, face.landmarks)).max() <= 3.0 * scale


def test_nvr_detect_runs_through_the_engine(asset: Callable[[str], Path], tmp_path: Path) -> None:
    images = [str(asset(i)) for i in IMAGES[:2]]

    def detect(*args: str) -> list[dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "nvr", "detect", *args, *images, "--json"],
            env=double_subprocess_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            cwd=PROJECT_ROOT,
        )
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    by_hef = detect("--backend", "hailo", "--hef", str(asset(SCRFD_HEF)))
    by_model = detect("--model", str(asset(SCRFD_HEF)))
    cpu = detect("--model", str(asset("models/scrfd/det_2.5g.onnx")))
    assert by_hef == by_model
    for hailo_record, cpu_record in zip(by_hef, cpu, strict=True):
        assert len(hailo_record["faces"]) == len(cpu_record["faces"]) > 0  # type: ignore[arg-type]


def test_frames_flow_in_order_with_several_in_flight(
    asset: Callable[[str], Path], double: Callable[..., None], frame: np.ndarray
) -> None:
    double(replay="1", latency_ms="2")
    for engine in _engine(asset, batch_size=2, input_queue=64):
        frames = [CountingFrame(frame, i) for i in range(40)]
        for f in frames:
            engine.submit(f)
        got = _collect(engine, 40)
        assert [tag for tag, _ in got] == list(range(40))
        assert all(error is None for _, error in got)
        assert all(f.released == 1 for f in frames)
        assert engine.stats.dropped == 0 and engine.stats.completed == 40


def test_back_pressure_drops_oldest_first_and_counts(
    asset: Callable[[str], Path], double: Callable[..., None], frame: np.ndarray
) -> None:
    double(replay="1", latency_ms="20")
    held: list[InferenceResult] = []
    for engine in _engine(asset, batch_size=1, input_queue=4, result_backlog=0):
        frames = [CountingFrame(frame, i) for i in range(60)]
        for f in frames[:4]:
            engine.submit(f)
        deadline = time.monotonic() + 30
        while any(f.released == 0 for f in frames[:4]) and time.monotonic() < deadline:
            time.sleep(0.01)  # the engine copies the first four into its four buffer sets
        for f in frames[4:]:
            engine.submit(f)  # no buffer set is free: these wait in the queue of 4, oldest dropped
        # Hold every result, so the pool stays dry until we release them.
        while (result := engine.get_result(timeout=2.0)) is not None:
            held.append(result)
        assert [r.tag for r in held] == [0, 1, 2, 3]
        assert engine.stats.dropped == 60 - 4 - 4
        for result in held:
            result.release()
        rest = _collect(engine, 4)
        assert [tag for tag, _ in rest] == [56, 57, 58, 59]  # the newest frames survive
        assert all(f.released == 1 for f in frames)


def test_hailort_missing(
    asset: Callable[[str], Path], tmp_path: Path, model_store: Callable[..., Path]
) -> None:
    env = double_subprocess_env(tmp_path)
    env["PYTHONPATH"] = str(PROJECT_ROOT)  # no double, and no real HailoRT on this machine
    image = str(asset(IMAGES[1]))
    hailo = subprocess.run(
        [sys.executable, "-m", "nvr", "detect", "--backend", "hailo", "--hef", str(asset(SCRFD_HEF)), image],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert hailo.returncode == ExitCode.DEVICE
    assert hailo.stderr.strip().splitlines()[-1].startswith("nvr: error: HailoRT is not installed")
    auto_command = [sys.executable, "-m", "nvr", "detect", "--model", str(asset(SCRFD_HEF)), image, "--json"]
    # The CPU stand-in comes from the model store: with an empty store, the error says what to pull.
    unpulled = subprocess.run(auto_command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert unpulled.returncode == ExitCode.DEVICE
    last_line = unpulled.stderr.strip().splitlines()[-1]
    assert "HailoRT is not installed" in last_line
    # The command names the store this process reads (NVR_MODELS is set): the one to fill.
    assert "; no CPU model of scrfd_2.5g to fall back on (NVR_MODELS=" in last_line
    assert last_line.endswith(" nvr models pull scrfd_2.5g-onnx)")
    env["NVR_MODELS"] = str(model_store("scrfd_2.5g-onnx"))
    auto = subprocess.run(
        auto_command,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert auto.returncode == 0, auto.stderr
    warning = auto.stderr.strip().splitlines()[-1]
    assert "the Hailo cannot be used: running the CPU model instead" in warning
    assert "cpu_model=det_2.5g.onnx" in warning and "HailoRT is not installed" in warning
    assert len(json.loads(auto.stdout)["faces"]) == 1


def test_no_device(asset: Callable[[str], Path], double: Callable[..., None]) -> None:
    double(devices="0")
    with pytest.raises(DeviceError, match=r"^no Hailo device found .*hailortcli scan") as caught:
        HailoBackend(asset(SCRFD_HEF))
    assert caught.value.exit_code == ExitCode.DEVICE


def test_device_busy_in_another_process(
    asset: Callable[[str], Path], double: Callable[..., None], tmp_path: Path
) -> None:
    with (
        device_held_by_another_process(tmp_path / "locks"),
        pytest.raises(DeviceError, match=r"device 0000:01:00.0 is busy: another process .*lsof /dev/hailo0"),
    ):
        HailoBackend(asset(SCRFD_HEF))
    HailoBackend(asset(SCRFD_HEF)).close()  # the recovery: free again once the other process is gone


def test_hef_for_another_chip(asset: Callable[[str], Path], double: Callable[..., None]) -> None:
    double(arch="hailo8")
    message = (
        f"{asset(SCRFD_HEF)}: compiled for Hailo-10H/15H, this device is a Hailo-8: "
        "use the hailo8 build of scrfd_2.5g (nvr models pull scrfd_2.5g-hailo8)"
    )
    with pytest.raises(ModelError) as caught:
        HailoBackend(asset(SCRFD_HEF))
    assert caught.value.message == message


def test_hef_newer_than_hailort(
    asset: Callable[[str], Path], double: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    import hailo_platform

    monkeypatch.setattr(hailo_platform, "__version__", "4.20.0")
    with pytest.raises(
        ModelError,
        match=r"HEF header v3 needs HailoRT 4.21 or newer, the installed HailoRT is "
        r"4.20.0: upgrade hailo-all",
    ):
        HailoBackend(asset(SCRFD_HEF))


def test_failed_jobs_are_logged_counted_and_skipped(
    asset: Callable[[str], Path],
    double: Callable[..., None],
    frame: np.ndarray,
    hailo_logs: list[dict[str, Any]],
) -> None:
    double(replay="1", fail_frames="2,5")
    for engine in _engine(asset, batch_size=1):
        for i in range(8):
            engine.submit(ArrayFrame(frame, i))
            time.sleep(0.02)
        got = _collect(engine, 8)
        assert [tag for tag, _ in got] == list(range(8))
        assert [tag for tag, error in got if error is not None] == [2, 5]
        assert "libhailort failed with error: 8 (HAILO_INTERNAL_FAILURE)" in str(got[2][1])
        deadline = time.monotonic() + 5
        while not _events(hailo_logs, "Hailo job failed; carrying on") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.stats.failed == 2 and engine.stats.restarts == 0
    (failed, *_) = _events(hailo_logs, "Hailo job failed; carrying on")
    assert failed["error"].startswith("HailoRTException: libhailort failed with error: 8")


def test_hung_device_is_detected_and_recreated(
    asset: Callable[[str], Path],
    double: Callable[..., None],
    frame: np.ndarray,
    hailo_logs: list[dict[str, Any]],
) -> None:
    double(replay="1", hang_after="3")
    for engine in _engine(asset, batch_size=1, hang_timeout_s=1.0):
        for i in range(6):
            engine.submit(ArrayFrame(frame, i))
        got = _collect(engine, 6, timeout=30)
        ok = [tag for tag, error in got if error is None]
        aborted = [tag for tag, error in got if error is not None]
        assert ok[:3] == [0, 1, 2] and aborted and all("StreamAborted" in str(e) for _, e in got if e)
        assert engine.stats.restarts == 1
        engine.submit(ArrayFrame(frame, "after"))
        assert _collect(engine, 1) == [("after", None)]  # the re-created device works
    (torn_down,) = _events(hailo_logs, "tearing down and re-creating the Hailo device")
    assert torn_down["reason"].startswith("the Hailo device stopped completing jobs")
    assert _events(hailo_logs, "Hailo device re-created; inference continues")


def test_clean_shutdown_leaves_no_job_behind(
    asset: Callable[[str], Path], double: Callable[..., None], frame: np.ndarray
) -> None:
    double(replay="1", latency_ms="30")
    engine = HailoEngine(asset(SCRFD_HEF), HailoSettings(batch_size=2, input_queue=8)).start()
    frames = [CountingFrame(frame, i) for i in range(20)]
    for f in frames:
        engine.submit(f)
    time.sleep(0.1)  # some jobs in flight, some frames queued
    started = time.monotonic()
    engine.close()
    assert time.monotonic() - started < 10.0
    stats = engine.stats
    assert stats.completed + stats.dropped + sum(1 for f in frames if f.released and f.tag is not None) >= 20
    assert all(f.released == 1 for f in frames)  # every frame given back exactly once
    in_flight_done = _collect(engine, stats.completed, timeout=2)
    assert len(in_flight_done) == stats.completed  # every submitted job delivered its result
    alive = [
        t.name for t in threading.enumerate() if t.name.startswith(("hailo-engine", "hailo-double-device"))
    ]
    assert not alive


def test_quantization_comes_from_hailort_and_the_hef(
    asset: Callable[[str], Path], double: Callable[..., None], frame: np.ndarray
) -> None:
    from nvr.hef import read_hef

    double(replay="1")
    layers = read_hef(asset(SCRFD_HEF)).default_group.outputs
    for engine in _engine(asset, batch_size=1):
        engine.submit(ArrayFrame(frame, "q"))
        result = engine.get_result(timeout=60)
        assert result is not None
        with result:
            assert [o.name for o in result.outputs] == [layer.name for layer in layers]
            for output, layer in zip(result.outputs, layers, strict=True):
                assert output.quant is not None and output.data.dtype == np.uint8
                assert output.data.shape == layer.shape
                assert float(output.quant.scale) == pytest.approx(float(layer.quant.scale))
                assert float(output.quant.zero_point) == float(layer.quant.zero_point)


def test_per_feature_quantization_comes_from_the_hef_reader(
    asset: Callable[[str], Path], double: Callable[..., None]
) -> None:
    from nvr.hef import read_hef

    double(arch="hailo8", replay="1")  # a Hailo-8 runs this Hailo-8L build (with a warning)
    hef = asset("hef/lightface_slim.hailo8l.hef")
    layers = read_hef(hef).default_group.outputs
    engine = HailoEngine(hef, HailoSettings(batch_size=1)).start()
    try:
        engine.submit(ArrayFrame(np.zeros((240, 320, 3), np.uint8), "lf"))
        result = engine.get_result(timeout=60)
        assert result is not None and result.error is None
        with result:
            for output, layer in zip(result.outputs, layers, strict=True):
                assert output.quant is not None and output.quant.is_per_feature
                np.testing.assert_array_equal(output.quant.scale, layer.quant.scale)
                np.testing.assert_array_equal(output.quant.zero_point, layer.quant.zero_point)
    finally:
        engine.close()


def test_a_frame_of_the_wrong_size_is_skipped(
    asset: Callable[[str], Path], double: Callable[..., None], frame: np.ndarray
) -> None:
    double(replay="1")
    for engine in _engine(asset, batch_size=1):
        engine.submit(ArrayFrame(np.zeros((480, 640, 3), np.uint8), "bad"))
        engine.submit(ArrayFrame(frame, "good"))
        assert _collect(engine, 1) == [("good", None)]
        assert engine.stats.rejected == 1 and engine.stats.restarts == 0


def test_multi_process_service(
    asset: Callable[[str], Path], double: Callable[..., None], tmp_path: Path
) -> None:
    shared = HailoSettings(multi_process_service=True)
    with pytest.raises(DeviceError, match=r"multi-process service does not answer .*hailort.service"):
        HailoBackend(asset(SCRFD_HEF), shared)
    double(service="1")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import hailo_platform as hp, sys; p = hp.VDevice.create_params(); "
         "p.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN; p.multi_process_service = True; "
         "v = hp.VDevice(p); print('held', flush=True); sys.stdin.readline()"],
        env=double_subprocess_env(tmp_path / "locks", service="1"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        HailoBackend(asset(SCRFD_HEF), shared).close()  # both processes use the device through the service
    finally:
        holder.communicate("\n", timeout=30)
