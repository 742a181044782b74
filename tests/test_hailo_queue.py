"""The engine sizes its jobs from HailoRT's async queue: batch and jobs in flight follow the queue size.

Real HailoRT's `get_async_queue_size()` depends on the device and the model and is not documented, so the
double reports it two ways: per batch unit (queue = N x batch, its default) and absolute (N frames whatever
the batch, HAILO_DOUBLE_QUEUE_FRAMES). Throughput against the device's ceiling is a benchmark
(scripts/bench_hailo_queue.py), not a test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hailo_support import SCRFD_HEF

from nvr.backends.hailo import HailoEngine, HailoSettings, JobPlan, plan_jobs
from nvr.contracts.frameref import ArrayFrame

pytest_plugins = ("hailo_support",)


@pytest.mark.parametrize(
    ("queue_frames", "expected"),
    [
        (1, JobPlan(1, 1)),
        (2, JobPlan(1, 2)),
        (3, JobPlan(1, 3)),
        (4, JobPlan(1, 4)),
        (5, JobPlan(1, 5)),
        (7, JobPlan(2, 3)),
        (8, JobPlan(2, 4)),
        (16, JobPlan(4, 4)),
        (32, JobPlan(4, 8)),
    ],
)
def test_plan_follows_the_queue_with_the_batch_as_upper_bound(queue_frames: int, expected: JobPlan) -> None:
    plan = plan_jobs(queue_frames, max_batch=4)
    assert plan == expected
    assert plan.frames <= queue_frames and plan.batch <= 4
    assert plan.jobs >= min(queue_frames, 3)  # one running, one queued, one being turned around


def test_plan_respects_max_in_flight_and_batch_one() -> None:
    assert plan_jobs(32, max_batch=4, max_in_flight=6) == JobPlan(2, 3)
    assert plan_jobs(16, max_batch=1) == JobPlan(1, 16)
    assert plan_jobs(0, max_batch=4) == JobPlan(1, 1)  # a nonsensical queue still gets one frame through


def _observe(engine: HailoEngine, frame: np.ndarray, frames: int) -> None:
    for i in range(frames):
        engine.submit(ArrayFrame(frame, i))
    got = 0
    while got < frames:
        result = engine.get_result(timeout=60)
        assert result is not None, f"only {got} of {frames} results"
        with result:
            assert result.error is None
        got += 1


@pytest.mark.parametrize("queue_frames", [1, 2, 3, 4, 5, 7, 8, 9, 16])
def test_engine_fills_an_absolute_queue(
    asset: Callable[[str], Path], double: Callable[..., None], queue_frames: int
) -> None:
    """The device is slow (3 ms a frame) and 48 frames wait: the engine keeps the whole planned queue busy."""
    double(replay="1", latency_ms="3", queue_frames=str(queue_frames))
    from hailo_platform.pyhailort import _pyhailort

    frame = np.zeros((640, 640, 3), np.uint8)
    with HailoEngine(asset(SCRFD_HEF), HailoSettings(batch_size=4, input_queue=64)).start() as engine:
        expected = plan_jobs(queue_frames, max_batch=4)
        assert engine.plan == expected
        _observe(engine, frame, 48)
    observed = _pyhailort.REGISTRY.observed["scrfd_2_5g"]
    assert observed.queue_size == queue_frames
    assert max(observed.job_sizes) == expected.batch
    assert observed.max_in_flight == expected.frames  # every planned job was in flight at once
    assert observed.configures[-1] == expected.batch  # the device's burst is the job size


def test_queue_that_shrinks_with_the_batch_keeps_the_larger_configuration(
    asset: Callable[[str], Path], double: Callable[..., None]
) -> None:
    """Per-batch mode at 1 frame per batch unit: batch 4 gives a 4-frame queue, batch 1 only 1 frame. The
    engine tries the smaller burst, sees the queue shrink, and goes back to batch 4 with 1-frame jobs."""
    double(replay="1", latency_ms="3", queue_size="1")
    from hailo_platform.pyhailort import _pyhailort

    frame = np.zeros((640, 640, 3), np.uint8)
    with HailoEngine(asset(SCRFD_HEF), HailoSettings(batch_size=4, input_queue=64)).start() as engine:
        assert engine.plan == JobPlan(1, 4)
        _observe(engine, frame, 24)
    observed = _pyhailort.REGISTRY.observed["scrfd_2_5g"]
    assert observed.configures == [4, 1, 4]
    assert observed.max_in_flight == 4 and max(observed.job_sizes) == 1


def test_default_per_batch_queue_keeps_the_configured_batch(
    asset: Callable[[str], Path], double: Callable[..., None]
) -> None:
    double(replay="1", latency_ms="3")  # 4 frames per batch unit: batch 4 -> 16 frames
    from hailo_platform.pyhailort import _pyhailort

    frame = np.zeros((640, 640, 3), np.uint8)
    with HailoEngine(asset(SCRFD_HEF), HailoSettings(batch_size=4, input_queue=64)).start() as engine:
        assert engine.plan == JobPlan(4, 4)
        _observe(engine, frame, 48)
    observed = _pyhailort.REGISTRY.observed["scrfd_2_5g"]
    assert observed.configures == [4] and observed.max_in_flight == 16


class _CopiedFrame(ArrayFrame):
    """Says when the engine has copied its pixels (released it)."""

    __slots__ = ("copied",)

    def __init__(self, pixels: np.ndarray, tag: object) -> None:
        super().__init__(pixels, tag)
        self.copied = threading.Event()

    def release(self) -> bool:
        self.copied.set()
        return True


def test_next_job_is_copied_and_bound_before_a_device_slot_frees(
    asset: Callable[[str], Path], double: Callable[..., None]
) -> None:
    """With a 2-frame device queue the host has one frame's device time to send the next job once a slot
    frees, so the engine copies and binds it beforehand: here the device hangs with frames 0 and 1 on it,
    no slot ever frees, and frame 2 is copied all the same (frame 3 waits for it to go)."""
    double(replay="1", queue_frames="2", hang_after="0", hangs="2")  # both configure() calls hang
    frame = np.zeros((640, 640, 3), np.uint8)
    frames = [_CopiedFrame(frame, i) for i in range(4)]
    settings = HailoSettings(batch_size=4, input_queue=8, hang_timeout_s=3.0)
    with HailoEngine(asset(SCRFD_HEF), settings).start() as engine:
        assert engine.plan == JobPlan(1, 2)
        for each in frames:
            engine.submit(each)
        assert frames[2].copied.wait(10)
        assert engine.stats.completed == 0  # nothing came back from the device
        assert not frames[3].copied.is_set()
