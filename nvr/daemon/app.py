"""`Daemon`: starts the stages, keeps them running, reloads the camera list, and shuts everything down.

Threads: the main thread runs the control loop below (signals, reload, watchdog, decoder supervision);
the detection pipeline's two threads feed the shared inference engine (the Hailo engine has its own thread)
and run postprocessing -> events; the metrics server and the MQTT client have their own. Processes: one
decoder per enabled camera, spawned (never forked).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import structlog

from nvr.capture import CaptureState, FrameFeed
from nvr.config import ConfigFileError, NvrConfig, load_config
from nvr.contracts.frameslots import RingLayout, remove_stale_segments, segments
from nvr.daemon.cameras import CameraSet
from nvr.daemon.events import EventOutput, open_event_output
from nvr.daemon.instance_lock import InstanceLock
from nvr.daemon.model import DetectionModel, open_configured_model
from nvr.daemon.recognition import hailo_embedder_hef
from nvr.daemon.sdnotify import SystemdNotifier
from nvr.daemon.stats import STALL_AFTER, DaemonStats
from nvr.daemon.watch import FileWatcher
from nvr.daemon.web import DaemonWeb
from nvr.detection.pipeline import DetectionPipeline, per_camera_limit
from nvr.errors import ExitCode
from nvr.logsetup import configure_logging, set_level
from nvr.metrics import MetricsServer
from nvr.wakeup import Wakeup

# Sections a reload does not apply (a warning says so); the rest, and cameras[], apply at once.
RESTART_SECTIONS = (
    "detector", "mqtt", "events", "event_file", "metrics", "instance", "state_dir", "recognition", "web",
)  # fmt: skip
log = structlog.get_logger(__name__)

SHUTDOWN_BUDGET = 10.0  # seconds from SIGTERM to exit, all included (systemd's TimeoutStopSec is 15)


def min_threshold(config: NvrConfig) -> float:
    """The postprocessor keeps faces down to the lowest threshold any camera asks for; cameras filter up."""
    thresholds = [c.threshold for c in config.enabled_cameras if c.threshold is not None]
    return min([config.detector.threshold, *thresholds])


class Daemon:
    def __init__(self, config_path: Path, config: NvrConfig, watch_file: bool = True) -> None:
        self.config_path = config_path
        self.config = config
        self._watch = FileWatcher(config_path) if watch_file else None
        self._wake = Wakeup()  # set by signal handlers: threading.Event would deadlock there
        self._stop_requested: str | None = None
        self._reload_requested = False
        self._notifier = SystemdNotifier()
        self._status = ""
        self._started = time.monotonic()
        self._ready_queue: FrameFeed | None = None
        self._cameras: CameraSet | None = None
        self._pipeline: DetectionPipeline | None = None
        self._events: EventOutput | None = None
        self._metrics: MetricsServer | None = None
        self._web: DaemonWeb | None = None
        self._model: DetectionModel | None = None
        self.stats: DaemonStats | None = None

    # -- signals: handlers only set flags; the control loop acts on them ------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        elif self._stop_requested is None:
            self._stop_requested = signal.Signals(signum).name
        self._wake.set()

    def _install_signals(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self._wake.wake_on_signals()  # a signal landing on a worker thread still wakes the control loop

    # -- lifetime -----------------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        self._install_signals()
        try:
            self._start()
            self._loop()
        finally:
            self._shutdown()
        return int(ExitCode.OK)

    def _start(self) -> None:
        config = self.config
        self._notifier.status("starting")
        removed = remove_stale_segments(config.instance)
        if removed:
            log.warning("removed shared memory left by a previous run", segments=removed)
        # The web UI binds its port and reads its password first: a problem is exit 3 before models load.
        self._web = DaemonWeb(config, self.config_path) if config.web.enabled else None
        config_dir = self.config_path.parent
        # Recognition's embedder HEF goes on the detector's VDevice: both networks on the one Hailo.
        embedder_hef = hailo_embedder_hef(config, config_dir)
        model = open_configured_model(config.detector, config_dir, min_threshold(config), embedder_hef)
        self._model = model
        engine_embedder = getattr(model.engine, "embedder", None)
        hailo_embedder = engine_embedder() if callable(engine_embedder) else None
        recent = self._web.recent.wrap if self._web is not None else None  # the web UI's view of events
        self._events = open_event_output(
            config, [c.name for c in config.enabled_cameras], config_dir, hailo_embedder, wrap=recent
        )
        self._ready_queue = FrameFeed()
        capture = config.capture
        pipeline = DetectionPipeline(
            model.engine, model.postprocessor, self._events.stage, self._ready_queue,
            max_in_flight=model.max_in_flight, per_camera=per_camera_limit(capture.ring_slots),
        )  # fmt: skip
        self._pipeline = pipeline
        layout = RingLayout(
            capture.ring_slots, model.input_width, model.input_height,
            capture.snapshot_width, capture.snapshot_height,
        )  # fmt: skip
        level, format_ = config.logging.level, config.logging.format
        self._cameras = CameraSet(
            pipeline, self._ready_queue, layout, config.instance,
            default_threshold=config.detector.threshold,
            log_setup=_LogSetup(level, format_),
        )  # fmt: skip
        self.stats = DaemonStats(pipeline, self._cameras, self._events)
        if config.metrics.enabled:
            self._metrics = MetricsServer(
                config.metrics.host, config.metrics.port, self.stats.collect, self.stats.health
            )
            self._metrics.start()
        if self._web is not None:
            self._web.start(self.stats, self._events, model.backend)
        pipeline.start()
        self._cameras.apply(config.cameras, config.capture, config.detector.threshold)
        self._notifier.ready(self._describe_status())
        log.info(
            "nvr running", cameras=len(self._cameras.names), backend=model.backend,
            config=str(self.config_path),
        )  # fmt: skip

    def _loop(self) -> None:
        assert self._cameras is not None and self.stats is not None
        watchdog_every = self._notifier.watchdog_interval
        next_watchdog = 0.0
        next_check = 0.0
        while self._stop_requested is None:
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stop_requested is not None:
                break
            now = time.monotonic()
            if self._reload_requested:
                self._reload_requested = False
                self.reload("SIGHUP")
            if self._watch is not None and self._watch.changed():
                self.reload("file changed")
            if now >= next_check:
                next_check = now + 1.0
                self._cameras.check()
                self.stats.tick()
                if self._events is not None and self._events.wants_stats:
                    self._events.push_stats(self.stats.summary())
                self._update_status()
            if watchdog_every is not None and now >= next_watchdog and self._flowing():
                self._notifier.watchdog()
                next_watchdog = now + watchdog_every

    def _flowing(self) -> bool:
        """Frames are flowing, or nothing is expected to flow (no camera is streaming): not stuck."""
        assert self._cameras is not None and self._pipeline is not None
        streaming = [s for s in self._cameras.stats().values() if s.state == CaptureState.STREAMING]
        if not streaming:
            return True
        last = self._pipeline.counters.last_frame
        return last > 0 and time.monotonic() - last < STALL_AFTER

    def reload(self, reason: str) -> bool:
        """Re-read the file and apply camera changes; an invalid file keeps the running configuration."""
        assert self._cameras is not None
        self._notifier.reloading()
        if self._watch is not None:
            self._watch.mark_seen()
        if self._web is not None:
            self._web.reload_certificate()  # a renewal hook's `systemctl reload`, whatever the file says
        try:
            config = load_config(self.config_path)
        except ConfigFileError as exc:
            for problem in exc.problems:
                log.error("configuration not reloaded", problem=problem, reason=reason)
            self._notifier.status(f"reload failed, running the previous configuration: {exc.problems[0]}")
            self._notifier.ready(self._describe_status())
            return False
        ignored = [
            section
            for section in RESTART_SECTIONS
            if getattr(config, section) != getattr(self.config, section)
        ]
        layout = ("ring_slots", "snapshot_width", "snapshot_height")
        if any(getattr(config.capture, f) != getattr(self.config.capture, f) for f in layout):
            ignored.append("capture (" + ", ".join(layout) + ")")
        if ignored:
            log.warning("these sections change only on restart", sections=ignored)
        if config.logging != self.config.logging:
            set_level(config.logging.level)
        if self._events is not None:
            # cameras[].recognition takes effect at once (the recognition section itself on restart).
            wanted = {c.name for c in config.cameras if c.recognition}
            enabled = self._events.recognition.cameras  # read by the results thread: never empty it midway
            enabled.intersection_update(wanted)
            enabled.update(wanted)
        plan = self._cameras.apply(config.cameras, config.capture, config.detector.threshold)
        if self._pipeline is not None and config.detector == self.config.detector:
            self._pipeline.set_threshold(min_threshold(config))
        self.config = config
        log.info("configuration reloaded", reason=reason, changes=plan.describe())
        self._notifier.ready(self._describe_status())
        return True

    def _shutdown(self) -> None:
        deadline = time.monotonic() + SHUTDOWN_BUDGET
        why = self._stop_requested or "error"
        log.info("stopping", reason=why)
        self._notifier.stopping(f"stopping ({why})")
        # Decoders first (in parallel: each may take a moment), so no new frames arrive.
        if self._cameras is not None:
            self._cameras.stop_all(parallel=True)
        in_time = self._pipeline is None or self._pipeline.stop(max(0.5, deadline - time.monotonic() - 4))
        if not in_time:
            log.warning("detection did not finish its frame in time; dropping it")
        if self._events is not None:
            # Open events end; the outbox flushes what it can in the time left and keeps the rest on disk.
            self._events.close(timeout=max(0.5, deadline - time.monotonic() - 1.5))
        if self._metrics is not None:
            self._metrics.stop()
        if self._web is not None:
            self._web.stop()
        if self._model is not None:
            # The engine lets its jobs in flight finish (within the budget), then frees the device.
            self._model.close(timeout=max(0.5, deadline - time.monotonic() - 0.5))
        if self._ready_queue is not None and in_time:  # else the frames thread may still be reading it
            self._ready_queue.close()
        left = remove_stale_segments(self.config.instance)
        if left:
            log.warning("removed leftover shared memory", segments=left)
        still = [path.name for path in segments(self.config.instance)]
        if still:
            log.error("shared memory still in use at exit", segments=still)
        self._notifier.close()
        log.info("stopped", seconds=round(SHUTDOWN_BUDGET - (deadline - time.monotonic()), 2))

    # -- status ---------------------------------------------------------------------------------------------

    def _describe_status(self) -> str:
        if self._cameras is None:
            return "starting"
        stats = self._cameras.stats()
        up = sum(1 for s in stats.values() if s.state == CaptureState.STREAMING)
        fps = self.stats.inference_fps if self.stats is not None else 0.0
        return f"{up}/{len(stats)} cameras streaming, {fps:.1f} frames/s detected"

    def _update_status(self) -> None:
        status = self._describe_status()
        if status != self._status:
            self._status = status
            self._notifier.status(status)


class _LogSetup:
    """Picklable: configures logging the same way in each spawned decoder process."""

    def __init__(self, level: str, format_: str) -> None:
        self.level = level
        self.format = format_

    def __call__(self) -> None:
        configure_logging(self.level, self.format)


def run_daemon(config_path: Path, config: NvrConfig, watch_file: bool = True) -> int:
    # Before anything is created: a second daemon with this instance name stops here, touching nothing.
    with InstanceLock(config.instance):
        return Daemon(config_path, config, watch_file).run()
