"""The per-camera decoder loop: connect, decode every frame, write the sampled ones into the ring, reconnect.

Runs in its own process (see `nvr.capture.process`), one per camera, so a stuck or crashing stream never
touches the others. Every exception from a stream is caught, logged on a state change, and answered
with a backoff and a new attempt; only a stop request (SIGTERM, or the parent dying) ends the loop.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import av
import structlog

from nvr.capture.feed import FrameNotifier
from nvr.capture.source import OpenSource, SourceError, describe_error, open_source
from nvr.capture.spec import CameraSpec
from nvr.capture.stats import CaptureState, RateMeter, StatsBlock
from nvr.contracts.frameslots import FrameRing
from nvr.contracts.geometry import Letterbox
from nvr.contracts.imaging import Resizer
from nvr.redact import redact_url, register_secrets_of

Notify = Callable[[int, int], None]  # slot, frame index
STOP_GRACE = 1.0  # seconds the loop gets to wind down after a stop request before it is abandoned


class FrameSampler:
    """Picks frames at `fps` by presentation time: every 1/fps seconds of stream time, the first frame."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next: float | None = None

    def reset(self) -> None:
        self._next = None

    def take(self, t: float) -> bool:
        # Half a millisecond of slack absorbs pts rounding (29.97 fps frames land on 0.2002, not 0.2).
        if self._next is None or t < self._next - 2 * self.period:  # first frame, or time went back
            self._next = t
        if t + 5e-4 < self._next:
            return False
        self._next += self.period
        if self._next <= t:  # a gap in the stream: restart the grid rather than catch up
            self._next = t + self.period
        return True


class StreamClock:
    """Continuous stream time: the source's frame intervals, summed.

    Sources restart their timestamps (a reconnect, a looping file) and RTSP's first frame can carry a
    timestamp from before the RTCP sync; a step that is not a plausible frame interval is replaced by
    the nominal one, so the pts written to slots only ever increase.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self._previous: float | None = None
        self._started = False

    def restart(self) -> None:
        """A new connection or a new pass over a file: its first frame follows by one nominal interval."""
        self._previous = None

    def advance(self, source_time: float, nominal: float) -> float:
        step = nominal if self._previous is None else source_time - self._previous
        if not 0.0 < step <= 1.0:
            step = nominal
        self._previous = source_time
        if self._started:
            self.now += step
        self._started = True
        return self.now


class Decoder:
    """One camera's capture loop. `run()` returns when `stop()` was called (e.g. from a signal handler)."""

    def __init__(self, spec: CameraSpec, ring: FrameRing, stats: StatsBlock, notify: Notify | None) -> None:
        self.spec = spec
        self.ring = ring
        self.stats = stats
        self._notify = notify
        self._log = structlog.get_logger(__name__).bind(camera=spec.name, url=redact_url(spec.url))
        self._stopping = False
        self._rng = random.Random()
        self._sampler = FrameSampler(spec.detect_fps)
        self._clock = StreamClock()
        self._rates = RateMeter(stats)
        self._model_resizer = Resizer()  # INTER_LINEAR, as the model was trained
        self._snapshot_resizer = Resizer("AREA")  # for people: smooth, and cheap when shrinking
        self._letterboxes: tuple[int, int, Letterbox, Letterbox | None] | None = None
        self._frame_index = stats.frames_decoded  # continues across decoder restarts
        self._last_error = ""
        self._last_t: float | None = None  # stream time of the current connection's newest frame

    def stop(self) -> None:
        """Ask the loop to end; safe from a signal handler (it only sets a flag)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def abandon(self) -> None:
        """The loop is stuck in a blocking call and the process exits around it: record the stop."""
        self._set_state(CaptureState.STOPPED, abandoned=True)

    def run(self) -> None:
        self._set_state(CaptureState.CONNECTING)
        failures = 0
        while not self._stopping:
            try:
                source = open_source(self.spec)
            except SourceError as exc:
                failures = self._lost(str(exc), failures)
                continue
            reason = "end of stream"
            try:
                self._stream(source)
            except Exception as exc:  # a broken stream must never end the loop
                reason = describe_error(exc)
            finally:
                source.close()
            if self._last_t is not None:
                failures = 0  # frames flowed: the next loss starts the backoff afresh
            if self._stopping:
                break
            if source.is_file and reason == "end of stream" and self._last_t is not None:
                if not self.spec.loop:
                    break
                continue
            failures = self._lost(reason, failures)
        self._set_state(CaptureState.STOPPED)

    def _lost(self, reason: str, failures: int) -> int:
        """Log the failure (once per state or reason), wait out the backoff; returns the new failure count."""
        delay = self.spec.backoff.delay(failures, self._rng)
        if self.stats.state != CaptureState.RECONNECTING or reason != self._last_error:
            self._set_state(CaptureState.RECONNECTING, reason=reason, retry_in=round(delay, 2), force=True)
        self._last_error = reason
        self._rates.reset(time.monotonic())
        self._sleep(delay)
        if not self._stopping:
            self.stats.reconnects += 1
        return failures + 1

    def _stream(self, source: OpenSource) -> None:
        """Demux and decode until the stream ends (returns) or fails (raises); sets `_last_t`."""
        self._sampler.reset()
        self._rates.reset(time.monotonic())
        self._last_t = None
        self._clock.restart()
        stream = source.stream
        nominal = 1.0 / float(stream.average_rate or 25)
        pace_origin: float | None = None  # local files play at their own rate, like a camera
        for packet in source.container.demux(stream):
            if self._stopping:
                return
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError):
                self.stats.decode_errors += 1  # corrupt data: the decoder resyncs on later packets
                continue
            for frame in frames:
                now = time.monotonic()
                source_time = frame.time
                t = self._clock.advance(now if source_time is None else float(source_time), nominal)
                if self._last_t is None:
                    self._set_state(
                        CaptureState.STREAMING, codec=stream.codec_context.name,
                        width=frame.width, height=frame.height, fps=round(float(stream.average_rate or 0), 2),
                    )  # fmt: skip
                    self._last_error = ""
                if source.is_file:
                    pace_origin = self._pace(t, pace_origin, now)
                self._last_t = t
                if frame.is_corrupt:
                    self.stats.decode_errors += 1  # concealed damage: still a usable picture, counted
                self._on_frame(frame, t)
                self._rates.tick(now)

    def _on_frame(self, frame: av.VideoFrame, t: float) -> None:
        stats = self.stats
        index = self._frame_index
        self._frame_index += 1
        stats.frames_decoded = self._frame_index
        stats.last_frame_time = time.time()
        if not self._sampler.take(t):
            return
        stats.frames_sampled += 1
        slot = self.ring.begin_write()
        if slot is None:
            stats.frames_skipped += 1  # the consumer holds every slot: drop, never wait
            return
        try:
            model_lb, snapshot_lb = self._geometry(frame.width, frame.height)
            self._model_resizer.letterbox_into(frame, self.ring.model_input(slot), model_lb)
            if snapshot_lb is not None:
                self._snapshot_resizer.letterbox_into(frame, self.ring.snapshot(slot), snapshot_lb)
        except (av.error.FFmpegError, ValueError):
            self.ring.abort_write(slot)
            stats.decode_errors += 1
            return
        self.ring.commit(
            slot, index, pts=t, wall_time=stats.last_frame_time,
            model_letterbox=model_lb, snapshot_letterbox=snapshot_lb,
        )  # fmt: skip
        if self._notify is not None:
            self._notify(slot, index)

    def _geometry(self, width: int, height: int) -> tuple[Letterbox, Letterbox | None]:
        cached = self._letterboxes
        if cached is None or cached[0] != width or cached[1] != height:
            layout = self.ring.layout
            model = Letterbox.fit(width, height, layout.model_width, layout.model_height)
            snapshot = None
            if layout.snapshot_width:
                snapshot = Letterbox.fit(width, height, layout.snapshot_width, layout.snapshot_height)
                if snapshot.resized_width > width:  # a snapshot is never blown up beyond the source
                    snapshot = Letterbox(
                        width, height, layout.snapshot_width, layout.snapshot_height, width, height
                    )
            self.stats.width, self.stats.height = width, height
            cached = self._letterboxes = (width, height, model, snapshot)
        return cached[2], cached[3]

    def _pace(self, t: float, origin: float | None, now: float) -> float:
        """Sleep until frame time `t` is due on the wall clock; returns the (possibly reset) origin."""
        if origin is None or now - (origin + t) > 1.0:  # first frame, or we fell a second behind
            return now - t
        self._sleep(origin + t - now)
        return origin

    def _sleep(self, seconds: float) -> None:
        """Sleep in short steps so a stop request is honoured within 0.1 s."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.1))

    def _set_state(self, state: CaptureState, force: bool = False, **fields: Any) -> None:
        if state == self.stats.state and not force:
            return
        self.stats.state = state
        if state == CaptureState.RECONNECTING:
            self._log.warning("capture lost", state=state.name.lower(), **fields)
        else:
            self._log.info(f"capture {state.name.lower()}", state=state.name.lower(), **fields)


def run_capture(
    spec: CameraSpec,
    instance: str,
    stats: StatsBlock,
    notices: multiprocessing.connection.Connection | None,
    log_setup: Callable[[], None] | None = None,
) -> None:
    """Entry point of a decoder process: attach the ring, handle SIGTERM, run the loop, detach."""
    register_secrets_of(spec.url)  # this process's log lines mask them wherever they appear
    if log_setup is not None:
        log_setup()
    _exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    ring = FrameRing.attach(instance, spec.name)
    decoder = Decoder(spec, ring, stats, FrameNotifier(notices) if notices is not None else None)
    signal.signal(signal.SIGTERM, lambda _sig, _frame: decoder.stop())
    # The loop runs in a worker thread so this (main) thread stays free to take SIGTERM at once, even
    # while FFmpeg blocks in a connect or a read for up to its timeout.
    failure: list[BaseException] = []
    worker = threading.Thread(target=_guarded, args=(decoder.run, failure), name="decoder", daemon=True)
    worker.start()
    while worker.is_alive() and not decoder.stopping:
        worker.join(0.1)
    worker.join(STOP_GRACE)
    if worker.is_alive():
        # Stuck in FFmpeg: leave it. Exiting unmaps the ring; its owner, the daemon, unlinks it.
        decoder.abandon()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    ring.close()
    if failure:
        raise failure[0]  # a bug, not a stream problem: exit non-zero with the traceback


def _guarded(target: Callable[[], None], failure: list[BaseException]) -> None:
    try:
        target()
    except BaseException as exc:
        failure.append(exc)


def _exit_with_parent() -> None:
    """Have the kernel send us SIGTERM if the daemon dies (even by SIGKILL), so no decoder is orphaned."""
    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the parent's stop() is then the only way out
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
