"""The set of running cameras: a decoder process and ring per enabled camera, changed by configuration diffs.

A reload computes which cameras to add, remove or restart (the ones whose capture settings changed), and
which only need new face filters (threshold, region, masks: applied in place, the stream keeps running).
Nothing here touches inference or MQTT.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from nvr.capture import Backoff, CameraSpec, CaptureProcess, FrameFeed
from nvr.capture.stats import CaptureStats
from nvr.config import CameraConfig
from nvr.config.models import CaptureConfig
from nvr.contracts.frameslots import RingLayout
from nvr.detection.pipeline import DetectionPipeline
from nvr.detection.zones import FaceFilter
from nvr.redact import redact_url, register_secrets_of

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class CameraPlan:
    """What a reload does to the camera set."""

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()
    refilter: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.add or self.remove or self.restart or self.refilter)

    def describe(self) -> str:
        parts = [f"{what} {', '.join(names)}" for what, names in (
            ("added", self.add), ("removed", self.remove), ("restarted", self.restart),
            ("re-filtered", self.refilter),
        ) if names]  # fmt: skip
        return "; ".join(parts) or "no camera changes"


def camera_spec(camera: CameraConfig, capture: CaptureConfig) -> CameraSpec:
    register_secrets_of(camera.url)  # masked in every log line from here on, wherever they appear
    return CameraSpec(
        name=camera.name,
        url=camera.url,
        detect_fps=camera.detect_fps,
        transport=camera.transport,
        open_timeout=capture.open_timeout,
        read_timeout=capture.read_timeout,
        backoff=Backoff(initial=capture.reconnect_initial, cap=capture.reconnect_max),
    )


def plan_changes(
    old: dict[str, tuple[CameraConfig, CameraSpec]], new: list[CameraConfig], capture: CaptureConfig
) -> CameraPlan:
    wanted = {camera.name: camera for camera in new if camera.enabled}
    add = tuple(name for name in wanted if name not in old)
    remove = tuple(name for name in old if name not in wanted)
    restart: list[str] = []
    refilter: list[str] = []
    for name, camera in wanted.items():
        if name not in old:
            continue
        old_camera, old_spec = old[name]
        if camera_spec(camera, capture) != old_spec:
            restart.append(name)
        elif camera != old_camera:
            refilter.append(name)
    return CameraPlan(add, remove, tuple(restart), tuple(refilter))


class CameraSet:
    def __init__(
        self,
        pipeline: DetectionPipeline,
        frames: FrameFeed,
        layout: RingLayout,
        instance: str,
        *,
        default_threshold: float,
        log_setup: Callable[[], None] | None,
    ) -> None:
        self._pipeline = pipeline
        self._frames = frames
        self._layout = layout
        self._instance = instance
        self._threshold = default_threshold
        self._log_setup = log_setup
        self._running: dict[str, tuple[CameraConfig, CameraProcessEntry]] = {}

    @property
    def names(self) -> list[str]:
        return list(self._running)

    def specs(self) -> dict[str, tuple[CameraConfig, CameraSpec]]:
        return {name: (camera, entry.process.spec) for name, (camera, entry) in self._running.items()}

    def stats(self) -> dict[str, CaptureStats]:
        return {name: entry.process.stats() for name, (_, entry) in self._running.items()}

    def pids(self) -> list[int]:
        return [pid for _, entry in self._running.values() if (pid := entry.process.pid) is not None]

    def apply(self, cameras: list[CameraConfig], capture: CaptureConfig, threshold: float) -> CameraPlan:
        """Bring the running set in line with `cameras`; returns what was done."""
        threshold_changed = threshold != self._threshold
        self._threshold = threshold
        plan = plan_changes(self.specs(), cameras, capture)
        by_name = {camera.name: camera for camera in cameras}
        for name in (*plan.remove, *plan.restart):
            self._stop(name)
        for name in (*plan.restart, *plan.add):
            self._start(by_name[name], capture)
        refilter = set(plan.refilter)
        if threshold_changed:
            refilter.update(name for name in by_name if name in self._running)
        for name in refilter:
            camera = by_name[name]
            self._pipeline.set_filter(name, self._filter(camera))
            entry = self._running[name][1]
            self._running[name] = (camera, entry)
        return plan

    def check(self) -> None:
        """Restart a decoder process that died (it should never exit on its own)."""
        for name, (_, entry) in self._running.items():
            if not entry.process.is_alive() and time.monotonic() >= entry.next_restart:
                log.warning("capture process died; restarting it", camera=name)
                entry.restarts += 1
                entry.next_restart = time.monotonic() + min(30.0, 2.0**entry.restarts)
                entry.process.start()

    def stop_all(self, parallel: bool = False) -> None:
        names = list(self._running)
        if not parallel:
            for name in names:
                self._stop(name)
            return
        threads = [threading.Thread(target=self._stop, args=(name,), name=f"stop-{name}") for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _filter(self, camera: CameraConfig) -> FaceFilter:
        threshold = camera.threshold if camera.threshold is not None else self._threshold
        return FaceFilter(threshold, camera.region, camera.masks)

    def _start(self, camera: CameraConfig, capture: CaptureConfig) -> None:
        process = CaptureProcess(
            camera_spec(camera, capture), self._layout, self._frames, self._instance, self._log_setup
        )
        process.start()
        self._pipeline.attach(camera.name, process.ring, self._filter(camera))
        self._running[camera.name] = (camera, CameraProcessEntry(process))
        log.info(
            "camera started", camera=camera.name, url=redact_url(camera.url), detect_fps=camera.detect_fps
        )

    def _stop(self, name: str) -> None:
        _, entry = self._running.pop(name)
        self._pipeline.detach(name)  # the pipeline no longer reads the ring once this returns
        entry.process.stop(timeout=3.0)
        log.info("camera stopped", camera=name)


@dataclass
class CameraProcessEntry:
    process: CaptureProcess
    restarts: int = 0
    next_restart: float = 0.0
