"""The HailoRT test double behaves like HailoRT 4.23's Python API (facts: ../shared/reference/hailort.md)."""

from __future__ import annotations

import importlib
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
from hailo_support import SCRFD_HEF, device_held_by_another_process, double_subprocess_env

from nvr.backends.onnx import OnnxBackend
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.families import detector_family
from nvr.hef import read_hef

SCRFD = detector_family("scrfd").input

# The double, importable once hailo_support has put tests/hailo_double on sys.path.
hp: Any = importlib.import_module("hailo_platform")
ph: Any = importlib.import_module("hailo_platform.pyhailort.pyhailort")


pytest_plugins = ("hailo_support",)  # fixture: double (configures the HailoRT double)


def _vdevice() -> Any:
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    return hp.VDevice(params)


@pytest.fixture
def scrfd(asset: Callable[[str], Path], double: Callable[..., None]) -> Iterator[tuple[Any, Any]]:
    vdevice = _vdevice()
    model = vdevice.create_infer_model(str(asset(SCRFD_HEF)))
    yield vdevice, model
    vdevice.release()


def _buffers(model: Any) -> dict[str, np.ndarray[Any, Any]]:
    return {name: np.empty(model.output(name).shape, np.uint8) for name in model.output_names}


def test_module_layout_enums_and_defaults() -> None:
    assert str(hp.FormatType.UINT8) == "FormatType.UINT8"
    assert hp.FormatType.UINT8 != 1  # pybind enums do not compare equal to ints
    assert not hasattr(hp, "HailoRTTimeout")  # not re-exported: lives in pyhailort.pyhailort
    assert issubclass(ph.HailoRTTimeout, hp.HailoRTException)
    params = hp.VDevice.create_params()
    assert (params.scheduling_algorithm, params.group_id, params.multi_process_service) == (
        0,
        "UNIQUE",
        False,
    )
    with pytest.raises(TypeError):
        params.scheduling_algorithm = 1


def test_infer_model_mirrors_the_hef(asset: Callable[[str], Path], scrfd: tuple[Any, Any]) -> None:
    vdevice, model = scrfd
    info = read_hef(asset(SCRFD_HEF))
    expected = json.loads(asset("hef/expected.json").read_text())["scrfd_2.5g.hailo10h.hef"][0]["outputs"]
    assert (
        model.output_names
        == [o["name"] for o in expected]
        == [layer.name for layer in info.default_group.outputs]
    )
    stream = model.output(model.output_names[0])
    assert stream.shape == [80, 80, 8] and isinstance(stream.shape, list)
    assert stream.format.type == hp.FormatType.UINT8
    (quant,) = stream.quant_infos
    assert (quant.qp_zp, quant.qp_scale) == pytest.approx((expected[0]["qp_zp"], expected[0]["qp_scale"]))
    with pytest.raises(ph.HailoRTInvalidOperationException):
        model.output()
    with pytest.raises(ph.HailoRTNotFoundException):
        model.output("scrfd_2_5g/nope")
    with pytest.raises(TypeError):
        vdevice.create_infer_model(asset(SCRFD_HEF))  # a Path is not accepted


def test_per_feature_hef_reports_invalid_scalar_quant(
    asset: Callable[[str], Path], double: Callable[..., None]
) -> None:
    double(arch="hailo8")
    with _vdevice() as vdevice:
        model = vdevice.create_infer_model(str(asset("hef/lightface_slim.hailo8l.hef")))
        (quant,) = model.output(model.output_names[0]).quant_infos
        assert (quant.qp_zp, quant.qp_scale) == (0.0, 0.0)


def test_outputs_are_the_onnx_model_quantized_with_each_hef_output(
    asset: Callable[[str], Path], scrfd: tuple[Any, Any]
) -> None:
    _, model = scrfd
    frame = np.zeros((640, 640, 3), np.uint8)
    letterbox_into(load_rgb(asset("images/insightface_t1.jpg")), frame)
    outputs = _buffers(model)
    with model.configure() as configured:
        bindings = configured.create_bindings(output_buffers=outputs)
        bindings.input().set_buffer(frame)
        configured.run([bindings], 10000)
    floats = OnnxBackend(asset("models/scrfd/det_2.5g.onnx"), mean=SCRFD.mean, std=SCRFD.std).infer(frame)
    for layer in read_hef(asset(SCRFD_HEF)).default_group.outputs:
        h, w, c = layer.shape
        (match,) = [o.data for o in floats if o.data.size == h * w * c and o.data.shape[-1] * 2 == c]
        expected = layer.quant.quantize(match.astype(np.float32).reshape(h, w, c)).astype(int)
        assert np.abs(outputs[layer.name].astype(int) - expected).max() <= 1, layer.name


def test_buffer_checks(scrfd: tuple[Any, Any]) -> None:
    _, model = scrfd
    configured = model.configure()
    bindings = configured.create_bindings(output_buffers=_buffers(model))
    with pytest.raises(hp.HailoRTException, match="C_CONTIGUOUS"):
        bindings.input().set_buffer(np.zeros((640, 640, 6), np.uint8)[:, :, ::2])
    readonly = np.zeros((640, 640, 3), np.uint8)
    readonly.flags.writeable = False
    with pytest.raises(ValueError):
        bindings.input().set_buffer(readonly)
    bindings.input().set_buffer(np.zeros((640, 640, 2), np.uint8))  # accepted here: size is checked later
    with pytest.raises(ph.HailoRTInvalidOperationException):
        configured.run_async([bindings])
    # A failed run_async shuts the configured model down, as ConfiguredInferModel::run_async does.
    bindings.input().set_buffer(np.zeros((640, 640, 3), np.uint8))
    with pytest.raises(ph.HailoRTStreamAborted):
        configured.run_async([bindings])


def test_callbacks_run_in_order_on_one_thread(scrfd: tuple[Any, Any], double: Callable[..., None]) -> None:
    _, model = scrfd
    calls: list[tuple[int, int, Any]] = []
    with model.configure() as configured:
        for i in range(6):
            bindings = configured.create_bindings(output_buffers=_buffers(model))
            bindings.input().set_buffer(np.zeros((640, 640, 3), np.uint8))
            configured.wait_for_async_ready(timeout_ms=10000)
            job = configured.run_async(
                [bindings],
                lambda completion_info, i=i: calls.append((i, threading.get_ident(), completion_info)),
            )
        job.wait(10000)
    assert [c[0] for c in calls] == list(range(6))
    assert len({c[1] for c in calls}) == 1 and calls[0][1] != threading.get_ident()
    assert all(c[2].exception is None for c in calls)


def test_wait_for_async_ready_times_out_beyond_the_queue(scrfd: tuple[Any, Any]) -> None:
    _, model = scrfd
    with model.configure() as configured, pytest.raises(ph.HailoRTTimeout):
        configured.wait_for_async_ready(timeout_ms=50, frames_count=configured.get_async_queue_size() + 1)


@pytest.mark.parametrize("batch", [1, 4, 8])
def test_queue_size_per_batch_unit_or_absolute(
    asset: Callable[[str], Path], double: Callable[..., None], batch: int
) -> None:
    """Per batch unit (default, 4 frames per unit) the queue grows with the batch; absolute mode
    (HAILO_DOUBLE_QUEUE_FRAMES) reports the same number of frames whatever the batch."""
    for settings, expected in (({}, 4 * batch), ({"queue_frames": "3"}, 3)):
        double(**settings)
        with _vdevice() as vdevice:
            model = vdevice.create_infer_model(str(asset(SCRFD_HEF)))
            model.set_batch_size(batch)
            with model.configure() as configured:
                assert configured.get_async_queue_size() == expected
                configured.wait_for_async_ready(timeout_ms=50, frames_count=expected)
                with pytest.raises(ph.HailoRTTimeout):
                    configured.wait_for_async_ready(timeout_ms=50, frames_count=expected + 1)


def test_device_time_per_network() -> None:
    from hailo_platform.pyhailort._pyhailort import DeviceTimeline, DoubleConfig

    env = {"HAILO_DOUBLE_LATENCY_MS": "2, scrfd_2_5g=1.5, arcface_mobilefacenet=0.25"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        config = DoubleConfig.from_env()
    assert config.latency_for("scrfd_2_5g") == pytest.approx(0.0015)
    assert config.latency_for("arcface_mobilefacenet") == pytest.approx(0.00025)
    assert config.latency_for("mnist") == pytest.approx(0.002)  # the bare number: every other network
    timeline = DeviceTimeline()
    # One chip: a frame starts when the chip is free and the frame has arrived.
    assert timeline.book(10.0, 0.0015) == pytest.approx(10.0015)
    assert timeline.book(10.0, 0.00025) == pytest.approx(10.00175)  # queued behind the first
    assert timeline.book(20.0, 0.00025) == pytest.approx(20.00025)  # the chip was idle meanwhile
    assert timeline.busy_s == pytest.approx(0.002)


def test_slots_free_on_the_chips_timeline_not_when_a_python_thread_runs(
    asset: Callable[[str], Path], double: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HailoRT frees a finished job's queue slots and wakes its callback worker in C. The double's device
    thread is Python and may wait for the GIL; stalled here on purpose, it must not hold the queue full."""
    double(replay="1", latency_ms="20", queue_frames="1")
    from hailo_platform.pyhailort import _runtime

    vdevice = _vdevice()
    model = vdevice.create_infer_model(str(asset(SCRFD_HEF)))
    released = threading.Event()
    stalled: list[float] = []
    real_enqueue = _runtime.SimulatedCore.enqueue_callback

    def stall(core: Any, job: Any, callback: Any, status: int) -> None:
        stalled.append(job.finish_at)
        released.wait(30)  # the device thread cannot go on: as if it never got the GIL
        real_enqueue(core, job, callback, status)

    monkeypatch.setattr(_runtime.SimulatedCore, "enqueue_callback", stall)
    done: list[Any] = []

    def on_done(completion_info: Any) -> None:
        done.append(completion_info)

    with model.configure() as configured:
        assert configured.get_async_queue_size() == 1
        bindings = configured.create_bindings(output_buffers=_buffers(model))
        bindings.input().set_buffer(np.zeros((640, 640, 3), np.uint8))
        job = configured.run_async([bindings], on_done)
        configured.wait_for_async_ready(timeout_ms=10000)  # the job is done on the chip: its slot is free
        try:
            assert stalled and time.perf_counter() >= stalled[0]  # not before the chip finished it
            assert not done  # the stalled device thread has not queued the callback
        finally:
            released.set()
        job.wait(10000)
    vdevice.release()
    assert len(done) == 1 and done[0].exception is None


def test_the_higher_priority_network_goes_first() -> None:
    """HailoRT's scheduler serves the higher priority first while it has frames waiting."""
    from hailo_platform.pyhailort._pyhailort import DeviceTimeline

    timeline = DeviceTimeline()
    timeline.arrive(16, 1)  # an embedder frame (default priority) ...
    timeline.arrive(20, 1)  # ... and a detector frame (priority 20) both waiting
    low: list[float] = []
    embedder = threading.Thread(target=lambda: low.append(timeline.book(0.0, 0.001, 16)))
    embedder.start()
    embedder.join(0.2)
    assert not low  # it waits while the detector's frame has not started
    assert timeline.book(0.0, 0.002, 20) == pytest.approx(0.002)  # the detector's frame runs first
    embedder.join(5)
    assert low == [pytest.approx(0.003)]  # then the embedder's, behind it


def test_reused_bindings_without_set_buffer_leave_the_user_buffer_stale(scrfd: tuple[Any, Any]) -> None:
    _, model = scrfd
    outputs = _buffers(model)
    with model.configure() as configured:
        bindings = configured.create_bindings(output_buffers=outputs)
        bindings.input().set_buffer(np.zeros((640, 640, 3), np.uint8))
        configured.run([bindings], 10000)
        for array in outputs.values():
            array.fill(77)
        configured.run([bindings], 10000)  # pyhailort swapped the outputs for its own DMA buffers
    assert all((array == 77).all() for array in outputs.values())


def test_wrong_chip_and_unsupported_header(
    asset: Callable[[str], Path], double: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    double(arch="hailo8")
    with _vdevice() as vdevice:
        model = vdevice.create_infer_model(str(asset(SCRFD_HEF)))
        with pytest.raises(ph.HailoRTHEFNotCompatibleWithDevice):
            model.configure()
        monkeypatch.setattr(hp, "__version__", "4.20.0")
        with pytest.raises(hp.HailoRTException, match=r"error: 92 \(HAILO_HEF_NOT_SUPPORTED\)"):
            vdevice.create_infer_model(str(asset(SCRFD_HEF)))


def test_no_device_and_busy_device_are_status_74(
    asset: Callable[[str], Path], double: Callable[..., None], tmp_path: Path
) -> None:
    double(devices="0")
    with pytest.raises(hp.HailoRTException, match=r"error: 74 \(HAILO_OUT_OF_PHYSICAL_DEVICES\)"):
        _vdevice()
    assert hp.Device.scan() == []
    double()
    with device_held_by_another_process(tmp_path / "locks"):
        with pytest.raises(hp.HailoRTException, match="74"):
            _vdevice()
        assert hp.Device.scan() == ["0000:01:00.0"]
    _vdevice().release()  # free again once the other process is gone


def test_injected_failure_and_hang(asset: Callable[[str], Path], double: Callable[..., None]) -> None:
    double(replay="1", fail_frames="1", hang_after="3")
    vdevice = _vdevice()
    model = vdevice.create_infer_model(str(asset(SCRFD_HEF)))
    infos: list[Any] = []

    def record(completion_info: Any) -> None:
        infos.append(completion_info)

    configured = model.configure()
    jobs = []
    for _ in range(4):
        bindings = configured.create_bindings(output_buffers=_buffers(model))
        bindings.input().set_buffer(np.zeros((640, 640, 3), np.uint8))
        configured.wait_for_async_ready(timeout_ms=10000)
        jobs.append(configured.run_async([bindings], record))
    jobs[2].wait(10000)
    with pytest.raises(ph.HailoRTTimeout):
        jobs[3].wait(200)  # the chip stopped answering after 3 frames
    assert [i.exception is None for i in infos] == [True, False, True]
    assert "libhailort failed with error: 8" in str(infos[1].exception)
    configured.shutdown()  # aborts the stuck job; its callback still runs
    jobs[3].wait(5000)
    assert isinstance(infos[3].exception, ph.HailoRTStreamAborted)
    vdevice.release()


def test_an_exception_in_a_callback_aborts_the_process(asset: Callable[[str], Path], tmp_path: Path) -> None:
    script = (
        "import numpy as np, hailo_platform as hp\n"
        "p = hp.VDevice.create_params(); p.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN\n"
        f"m = hp.VDevice(p).create_infer_model({str(asset(SCRFD_HEF))!r}); c = m.configure()\n"
        "o = {n: np.empty(m.output(n).shape, np.uint8) for n in m.output_names}\n"
        "b = c.create_bindings(output_buffers=o)\n"
        "b.input().set_buffer(np.zeros((640, 640, 3), np.uint8))\n"
        "def cb(completion_info): raise RuntimeError('boom')\n"
        "c.run_async([b], cb).wait(10000)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=double_subprocess_env(tmp_path, replay="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode < 0 and "terminate called" in done.stderr
