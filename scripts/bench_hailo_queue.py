#!/usr/bin/env python3
"""nvr's Hailo engine at several HailoRT async queue sizes, against the device ceiling and a minimal client.

For each queue size (frames, the double's absolute mode HAILO_DOUBLE_QUEUE_FRAMES) three figures, all
measured in this run on this machine against the HailoRT double in replay mode (its ONNX compute done once,
off the host's budget) with a simulated device time per frame:
  - ceiling: what the device can do, 1000 / latency-ms frames per second;
  - minimal client: the thinnest HailoRT loop (one thread submits 1-frame jobs while the queue has room,
    HailoRT's callback only counts), in its own process;
  - nvr: `nvr bench inference` (the daemon's detection path: simulated cameras' frame rings -> detection
    pipeline -> engine -> SCRFD postprocessor -> face filters), in its own process.
The bar (issue 14): nvr >= 90 % of the ceiling and not below the minimal client (within 1 %: two clients at
the ceiling differ by noise), at every queue size.

    .venv/bin/python scripts/bench_hailo_queue.py [--queues 2,4,8,16] [--latency-ms 2] [--frames 2000]
        [--rounds 3]

Each figure is the best of --rounds runs, the two clients interleaved (this machine's load varies).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOUBLE = ROOT / "tests" / "hailo_double"
sys.path[:0] = [str(DOUBLE), str(ROOT)]

from nvr.assets import assets_dir  # noqa: E402

HEF = assets_dir() / "hef" / "scrfd_2.5g.hailo10h.hef"
IMAGE = assets_dir() / "images" / "insightface_t1.jpg"


def minimal_client(frames: int, warmup: int) -> dict[str, float]:
    """Submit-and-collect, nothing else: fps over `frames` after `warmup`."""
    import hailo_platform as hp
    import numpy as np

    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vdevice:
        model = vdevice.create_infer_model(str(HEF))
        model.set_batch_size(1)
        configured = model.configure()
        queue = configured.get_async_queue_size()
        pool = [
            ({n: np.empty(model.output(n).shape, np.uint8) for n in model.output_names},
             np.zeros(model.input().shape, np.uint8))
            for _ in range(queue)
        ]  # fmt: skip
        done = threading.Semaphore(0)
        marks: dict[int, float] = {}
        count = [0]

        def on_done(completion_info: object) -> None:
            count[0] += 1
            if count[0] in (warmup, warmup + frames):
                marks[count[0]] = time.perf_counter()
            done.release()

        total = warmup + frames
        cpu_start = 0.0
        for i in range(total):
            if i == warmup:
                cpu_start = time.process_time()
            if i >= queue:
                done.acquire()  # a job completed: its buffers are free again
            outputs, pixels = pool[i % queue]
            configured.wait_for_async_ready(timeout_ms=10000, frames_count=1)
            bindings = configured.create_bindings(output_buffers=outputs)
            bindings.input().set_buffer(pixels)
            job = configured.run_async([bindings], on_done)
        job.wait(60000)
        cpu = time.process_time() - cpu_start
        configured.shutdown()
    return {"fps": frames / (marks[total] - marks[warmup]), "cpu_ms_per_frame": 1000.0 * cpu / frames}


def run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queues", default="2,4,8,16", help="queue sizes in frames (default 2,4,8,16)")
    parser.add_argument("--latency-ms", type=float, default=2.0, help="device time per frame (default 2)")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=4, help="nvr's configured batch (an upper bound)")
    parser.add_argument("--cameras", type=int, default=4, help="nvr's simulated cameras (default 4)")
    parser.add_argument("--slots", type=int, default=8, help="frame-ring slots per camera (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs each (default 3)")
    parser.add_argument("--minimal-client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warmup = 200
    if args.minimal_client:
        print(json.dumps(minimal_client(args.frames, warmup)))
        return 0
    ceiling = 1000.0 / args.latency_ms
    print(
        f"device ceiling {ceiling:.0f} fps ({args.latency_ms} ms/frame, simulated); {args.frames} frames each"
    )
    print(f"{'queue':>5} {'plan':>9} {'minimal':>8} {'nvr':>6} {'nvr/ceiling':>11} {'nvr/minimal':>11} "
          f"{'CPU ms/frame minimal/nvr':>24}  verdict")  # fmt: skip
    failures = 0
    frames = str(args.frames)
    bench = [
        sys.executable, "-m", "nvr", "bench", "inference", "--hef", str(HEF), "--image", str(IMAGE),
        "--cameras", str(args.cameras), "--slots", str(args.slots),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hailo_double_bench") as lock_dir:
        for queue in (int(q) for q in args.queues.split(",")):
            env = {
                **os.environ, "PYTHONPATH": os.pathsep.join([str(DOUBLE), str(ROOT)]),
                "HAILO_DOUBLE_ARCH": "hailo10h", "HAILO_DOUBLE_REPLAY": "1",
                "HAILO_DOUBLE_LOCK_DIR": lock_dir, "HAILO_DOUBLE_LATENCY_MS": str(args.latency_ms),
                "HAILO_DOUBLE_QUEUE_FRAMES": str(queue),
            }  # fmt: skip
            # Best of --rounds, the two clients interleaved: this machine's load comes and goes.
            mini: dict[str, float] = {"fps": 0.0}
            nvr: dict[str, float] = {"fps": 0.0}
            for _ in range(args.rounds):
                got = json.loads(run([sys.executable, __file__, "--minimal-client", "--frames", frames], env))
                mini = max(mini, got, key=lambda figures: figures["fps"])
                got = json.loads(run([*bench, "--frames", frames, "--batch", str(args.batch), "--json"], env))
                nvr = max(nvr, got, key=lambda figures: figures["fps"])
            from nvr.backends.hailo_device import plan_jobs

            plan = plan_jobs(queue, args.batch)
            # "Not below the minimal client": within 1 %, the resolution of two runs at the ceiling.
            ok = nvr["fps"] >= 0.9 * ceiling and nvr["fps"] >= 0.99 * mini["fps"]
            failures += not ok
            print(
                f"{queue:>5} {f'{plan.jobs}x{plan.batch}':>9} {mini['fps']:>8.0f} {nvr['fps']:>6.0f} "
                f"{nvr['fps'] / ceiling:>11.3f} {nvr['fps'] / mini['fps']:>11.3f} "
                f"{mini['cpu_ms_per_frame']:>15.3f} / {nvr['cpu_ms_per_frame']:.3f}  "
                f"{'ok' if ok else 'BELOW'}"
            )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
