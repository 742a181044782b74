"""`nvr bench ACTION`: measurements on the user's own machine. Each action is one `_register_<action>`.

`nvr bench inference --backend hailo --hef FILE [--frames N]`: frames published into a shared-memory frame
ring go through the asynchronous Hailo engine and the SCRFD postprocessor, as in the daemon; prints the
sustained frames per second and the host CPU time per frame (all threads of the process, HailoRT's too).
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

from nvr.cli import bench_detect, bench_embed
from nvr.contracts.frameref import SlotFrameRef
from nvr.contracts.frameslots import FrameRing, RingLayout
from nvr.contracts.geometry import Letterbox
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.errors import ModelError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench", help="measure throughput on this machine"
    )
    actions = parser.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    for add_action in _ACTIONS:
        add_action(actions)


def _register_inference(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "inference", help="sustained fps of shared-memory frames through the engine and the postprocessor"
    )
    parser.add_argument("--backend", choices=("hailo",), default="hailo")
    parser.add_argument("--hef", type=Path, required=True, help="the .hef to run")
    parser.add_argument("--frames", type=int, default=3000, help="frames to measure (default 3000)")
    parser.add_argument("--warmup", type=int, default=200, help="frames before measuring (default 200)")
    parser.add_argument("--batch", type=int, default=4, help="frames per device job (default 4)")
    parser.add_argument("--slots", type=int, default=32, help="frame-ring slots (default 32)")
    parser.add_argument("--image", type=Path, help="image to put in every frame (default: a test pattern)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.set_defaults(handler=run_inference)


_ACTIONS: tuple[Callable[[Any], None], ...] = (
    _register_inference,
    bench_detect.register_detect,
    bench_embed.register_embed,
)


def run_inference(args: argparse.Namespace) -> int:
    from nvr.backends.hailo import HailoEngine, HailoSettings
    from nvr.postprocess.scrfd import ScrfdPostprocessor

    if args.frames <= 0 or args.warmup < 0 or args.batch <= 0 or args.slots < 2:
        raise ModelError("--frames and --batch must be positive, --warmup non-negative, --slots at least 2")
    settings = HailoSettings(batch_size=args.batch, input_queue=args.slots, result_backlog=2 * args.batch)
    engine = HailoEngine(args.hef, settings).start()
    height, width, _ = engine.input_shape
    ring = FrameRing.create(f"bench{os.getpid()}", "bench", RingLayout(args.slots, width, height, 0, 0))
    try:
        letterbox = _fill_slots(ring, args.image)
        post = ScrfdPostprocessor(width, height, 0.5)
        figures = _measure(engine, ring, letterbox, post, warmup=args.warmup, frames=args.frames)
    finally:
        engine.close()
        ring.close()
    figures.update(
        batch=args.batch, hef=str(args.hef), dropped=engine.stats.dropped, failed=engine.stats.failed
    )
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"inference: {figures['frames']} frames in {figures['seconds']:.2f} s = "
            f"{figures['fps']:.0f} fps; "
            f"host CPU {figures['cpu_ms_per_frame']:.3f} ms/frame ({figures['cpu_cores']:.2f} cores); "
            f"{figures['faces_per_frame']:.1f} faces/frame; dropped {figures['dropped']}, "
            f"failed {figures['failed']}"
        )
    return 0


def _fill_slots(ring: FrameRing, image_path: Path | None) -> Letterbox:
    layout = ring.layout
    if image_path is not None:
        image = load_rgb(image_path)
    else:  # a smooth pattern; outputs do not matter for throughput
        y, x = np.mgrid[: layout.model_height, : layout.model_width]
        image = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.uint8)
    first = np.zeros((layout.model_height, layout.model_width, 3), np.uint8)
    letterbox = letterbox_into(image, first)
    for slot in range(layout.n_slots):
        ring.model_input(slot)[:] = first
    return letterbox


def _measure(
    engine: Any, ring: FrameRing, letterbox: Letterbox, post: Any, *, warmup: int, frames: int
) -> dict[str, Any]:
    total = warmup + frames
    stop = threading.Event()

    def produce() -> None:
        # Publish slots as fast as the consumer frees them; the pixels were written once beforehand.
        index = 0
        while index < total and not stop.is_set():
            slot = ring.begin_write()
            if slot is None:
                time.sleep(0.0002)
                continue
            ring.commit(
                slot, index, pts=0.0, wall_time=0.0, model_letterbox=letterbox, snapshot_letterbox=None
            )
            frame = ring.read(slot)
            if frame is not None:
                engine.submit(SlotFrameRef(ring, frame))
            index += 1

    producer = threading.Thread(target=produce, name="bench-producer", daemon=True)
    producer.start()
    done = faces = 0
    start_wall = start_cpu = 0.0
    try:
        while done < total:
            result = engine.get_result(timeout=30.0)
            if result is None:
                raise ModelError("the engine produced no result for 30 s (see the log above)")
            with result:
                if result.error is None:
                    faces += len(post.decode(result.outputs, letterbox)) if done >= warmup else 0
            done += 1
            if done == warmup:
                start_wall, start_cpu = time.perf_counter(), time.process_time()
            if warmup == 0 and done == 1:
                start_wall, start_cpu = time.perf_counter(), time.process_time()
    finally:
        stop.set()
        producer.join(5.0)
    measured = frames if warmup else frames - 1
    seconds = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    return {
        "frames": measured,
        "seconds": seconds,
        "fps": measured / seconds,
        "cpu_ms_per_frame": 1000.0 * cpu / measured,
        "cpu_cores": cpu / seconds,
        "faces_per_frame": faces / max(1, measured),
    }
