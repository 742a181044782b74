"""`nvr bench ACTION`: measurements on the user's own machine. Each action is one `_register_<action>`.

`nvr bench inference --model M [--backend B] [--frames N]`: the daemon's detection path, measured. The
model is resolved and opened exactly as `nvr run` opens it (the one resolver, the backend's engine, the
family's postprocessor); frames are published into shared-memory frame rings the way the decoders publish
them, and go through the daemon's `DetectionPipeline` (fair scheduling across cameras, slots held while in
flight, the engine's release protocol, postprocessing, the cameras' face filters) into a sink standing in
for the event stage. Each simulated camera keeps as many frames posted as the pipeline takes (none is
superseded unused). Prints the sustained frames per second and the host CPU time per frame (all threads
of the process: the pipeline's, the engine's, HailoRT's or ONNX Runtime's).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nvr.capture.feed import FrameFeed, FrameNotifier
from nvr.cli import bench_detect, bench_embed
from nvr.contracts.frameresult import FrameResult
from nvr.contracts.frameslots import FrameRing, RingLayout
from nvr.contracts.geometry import Letterbox
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.errors import ModelError

THRESHOLD = 0.5


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="measure throughput on this machine"
    )
    actions = parser.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    for add_action in _ACTIONS:
        add_action(actions)


def _register_inference(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "inference", help="sustained fps of the daemon's detection path: frame rings -> engine -> faces"
    )
    parser.add_argument("--model", help="catalogue name or model file (default: the --hef)")
    parser.add_argument("--hef", help="a .hef to run on the Hailo (same as --model FILE --backend hailo)")
    parser.add_argument("--backend", default="auto", help="auto (as `nvr run`), hailo, onnx or tflite")
    parser.add_argument("--frames", type=int, default=3000, help="frames to measure (default 3000)")
    parser.add_argument("--warmup", type=int, default=200, help="frames before measuring (default 200)")
    parser.add_argument("--batch", type=int, default=4, help="Hailo: frames per device job, at most (4)")
    parser.add_argument("--cameras", type=int, default=1, help="simulated cameras (default 1)")
    parser.add_argument("--slots", type=int, default=4, help="frame-ring slots per camera (default 4)")
    parser.add_argument("--image", type=Path, help="image to put in every frame (default: a test pattern)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.set_defaults(handler=run_inference)


_ACTIONS: tuple[Callable[[Any], None], ...] = (
    _register_inference,
    bench_detect.register_detect,
    bench_embed.register_embed,
)


def run_inference(args: argparse.Namespace) -> int:
    from nvr.backends.hailo import HailoConfig
    from nvr.detector import open_detection_model
    from nvr.models.resolve import resolve_model

    if args.frames <= 0 or args.warmup < 0 or args.batch <= 0 or args.cameras <= 0 or args.slots < 3:
        raise ModelError(
            "--frames, --batch and --cameras must be positive, --warmup non-negative, --slots at least 3"
        )
    name = args.model or args.hef
    if name is None:
        raise ModelError("no model given: pass --model NAME|FILE or --hef FILE.hef")
    backend = "hailo" if args.hef is not None and args.backend == "auto" else args.backend
    resolved = resolve_model(name, backend=backend)
    configs: dict[str, Any] = {"hailo": HailoConfig(batch_size=args.batch)}
    model = open_detection_model(resolved, THRESHOLD, configs=configs)
    rings: list[FrameRing] = []
    try:
        layout = RingLayout(args.slots, model.input_width, model.input_height, 0, 0)
        instance = f"bench{os.getpid()}"
        rings = [FrameRing.create(instance, f"cam{i}", layout) for i in range(args.cameras)]
        letterbox = _fill_slots(rings, args.image)
        figures = _measure(model, rings, letterbox, warmup=args.warmup, frames=args.frames)
    finally:
        model.close()
        for ring in rings:
            ring.close()
    figures.update(model=str(model.path), backend=model.backend, cameras=args.cameras)
    if model.backend == "hailo":
        figures["batch"] = args.batch
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"inference ({model.path.name}, {model.backend}, {args.cameras} camera(s)): "
            f"{figures['frames']} frames in {figures['seconds']:.2f} s = {figures['fps']:.0f} fps; "
            f"host CPU {figures['cpu_ms_per_frame']:.3f} ms/frame ({figures['cpu_cores']:.2f} cores); "
            f"{figures['faces_per_frame']:.1f} faces/frame; in flight at most {figures['in_flight_max']}; "
            f"dropped {figures['dropped']}, failed {figures['failed']}"
        )
    return 0


def _fill_slots(rings: list[FrameRing], image_path: Path | None) -> Letterbox:
    layout = rings[0].layout
    if image_path is not None:
        image = load_rgb(image_path)
    else:  # a smooth pattern; outputs do not matter for throughput
        y, x = np.mgrid[: layout.model_height, : layout.model_width]
        image = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    first = np.zeros((layout.model_height, layout.model_width, 3), np.uint8)
    letterbox = letterbox_into(image, first)
    for ring in rings:
        for slot in range(layout.n_slots):
            ring.model_input(slot)[:] = first
    return letterbox


class _CountingSink:
    """Stands in for the event stage: counts frames and faces, timing frames warmup+1 .. total.

    It wakes only the camera whose frame it handled, and the measuring thread only at the end: the
    decoders it stands in for are processes of their own in the daemon, so the bench must not load the
    pipeline's process with wake-ups the daemon does not have."""

    def __init__(self, warmup: int, total: int, cameras: list[str]) -> None:
        self.frames = self.faces = 0
        self.handled: dict[str, int] = dict.fromkeys(cameras, 0)
        self.first = max(warmup, 1)  # measuring starts when this frame is done
        self.total = total
        self.started: tuple[float, float] = (0.0, 0.0)  # wall, CPU
        self.ended: tuple[float, float] | None = None
        self.finished = threading.Event()
        self.changed = {camera: threading.Condition() for camera in cameras}

    def handle(self, result: FrameResult) -> None:
        self.frames += 1  # only the pipeline's results thread calls this
        if self.first < self.frames <= self.total:
            self.faces += len(result.detections)
        if self.frames in (self.first, self.total):
            now = time.perf_counter(), time.process_time()
            if self.frames == self.first:
                self.started = now
            else:
                self.ended = now
                self.finished.set()
        changed = self.changed[result.camera]
        with changed:
            self.handled[result.camera] += 1
            changed.notify()

    def expire(self) -> None:
        pass


class _Camera(threading.Thread):
    """A decoder stand-in: publishes frames (pixels written once beforehand) as fast as the pipeline
    takes them, keeping `keep_posted` unfinished at a time."""

    def __init__(
        self,
        name: str,
        ring: FrameRing,
        pipeline: Any,
        sink: _CountingSink,
        notify: FrameNotifier,
        *,
        keep_posted: int,
    ) -> None:
        super().__init__(name=f"bench-{name}", daemon=True)
        self.camera, self.ring, self.pipeline, self.notify = name, ring, pipeline, notify
        self.sink = sink  # the pipeline's sink: what it has handled
        self.keep_posted = keep_posted
        self.letterbox: Letterbox | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        assert self.letterbox is not None
        counters = self.pipeline.counters.cameras[self.camera]
        sink, changed = self.sink, self.sink.changed[self.camera]
        index = 0
        while not self.stop.is_set():
            with changed:  # notified per frame of this camera handled: no polling to pay for
                finished = sink.handled[self.camera] + counters.superseded + counters.stale
                finished += counters.torn + counters.dropped + counters.failed
                slot = self.ring.begin_write() if index - finished < self.keep_posted else None
                if slot is None:
                    changed.wait(0.05)  # the timeout covers frames finished without reaching the sink
                    continue
            self.ring.commit(
                slot, index, pts=0.0, wall_time=time.time(), model_letterbox=self.letterbox,
                snapshot_letterbox=None,
            )  # fmt: skip
            self.notify(slot, index)  # as a decoder does: on its own pipe of the daemon's FrameFeed
            index += 1


def _measure(
    model: Any, rings: list[FrameRing], letterbox: Letterbox, *, warmup: int, frames: int
) -> dict[str, Any]:
    from nvr.detection.pipeline import DetectionPipeline, per_camera_limit
    from nvr.detection.zones import FaceFilter

    names = [f"cam{i}" for i in range(len(rings))]
    sink = _CountingSink(warmup, warmup + frames, names)
    ready = FrameFeed()
    per_camera = per_camera_limit(rings[0].layout.n_slots)
    pipeline = DetectionPipeline(
        model.engine, model.postprocessor, sink, ready,
        max_in_flight=model.max_in_flight, per_camera=per_camera,
    )  # fmt: skip
    cameras = []
    for name, ring in zip(names, rings, strict=True):
        pipeline.attach(name, ring, FaceFilter(THRESHOLD))
        # Frames a camera keeps posted: what the pipeline may have in flight for it, plus its mailbox.
        notify = FrameNotifier(ready.connect(name))
        cameras.append(_Camera(name, ring, pipeline, sink, notify, keep_posted=per_camera + 1))
    pipeline.start()
    for camera in cameras:
        camera.letterbox = letterbox
        camera.start()
    try:
        while not sink.finished.is_set():
            seen = sink.frames
            if not sink.finished.wait(30.0) and sink.frames == seen:
                raise ModelError("the detection pipeline produced no result for 30 s (see the log above)")
        assert sink.ended is not None
        (start_wall, start_cpu), (end_wall, end_cpu) = sink.started, sink.ended
    finally:
        for camera in cameras:
            camera.stop.set()
            camera.join(5.0)
            camera.notify.close()
        pipeline.stop()
        ready.close()
    measured = sink.total - sink.first
    seconds, cpu = end_wall - start_wall, end_cpu - start_cpu
    counters = pipeline.counters.cameras.values()
    return {
        "frames": measured,
        "seconds": seconds,
        "fps": measured / seconds,
        "cpu_ms_per_frame": 1000.0 * cpu / measured,
        "cpu_cores": cpu / seconds,
        "faces_per_frame": sink.faces / measured,
        "in_flight_max": pipeline.counters.in_flight_max,
        "dropped": sum(c.dropped + c.torn + c.stale for c in counters),
        "failed": sum(c.failed for c in counters) + pipeline.counters.errors,
    }
