#!/usr/bin/env python3
"""Engine throughput against the simulated Hailo device, as a ratio to the device's own ceiling.

Both figures are measured in this run, on this machine: first the HailoRT double driven by the thinnest
possible loop (no engine, no postprocessing: what the device alone sustains), then `nvr bench inference`
(the daemon's detection path: frame rings -> detection pipeline -> engine -> SCRFD postprocessor -> face
filters, with `--cameras` simulated cameras). The engine issue's bar was a ratio of at least 0.90 with
the device simulated at 1 ms per frame (replay mode), for the engine alone; the daemon's path adds its
per-frame host work (scheduling, slot holds, face filters) on top.

    .venv/bin/python scripts/bench_hailo_engine.py [--frames 3000] [--latency-ms 1] [--batch 4] [--cameras 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOUBLE = ROOT / "tests" / "hailo_double"
sys.path[:0] = [str(DOUBLE), str(ROOT)]

from nvr.assets import assets_dir  # noqa: E402

HEF = assets_dir() / "hef" / "scrfd_2.5g.hailo10h.hef"


def device_ceiling(frames: int, batch: int) -> float:
    import hailo_platform as hp

    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vdevice:
        model = vdevice.create_infer_model(str(HEF))
        model.set_batch_size(batch)
        configured = model.configure()
        outputs = {n: np.empty(model.output(n).shape, np.uint8) for n in model.output_names}
        frame = np.zeros((640, 640, 3), np.uint8)
        bindings = []
        for _ in range(batch):
            b = configured.create_bindings(output_buffers=outputs)
            b.input().set_buffer(frame)
            bindings.append(b)
        job = configured.run_async(bindings)  # the first job computes the replayed outputs
        job.wait(60000)
        start = time.perf_counter()
        for _ in range(frames // batch):
            for b in bindings:  # re-point outputs each time, as pyhailort requires for reused bindings
                for name, array in outputs.items():
                    b.output(name).set_buffer(array)
            configured.wait_for_async_ready(timeout_ms=10000, frames_count=batch)
            job = configured.run_async(bindings)
        job.wait(60000)
        seconds = time.perf_counter() - start
        configured.shutdown()
    return (frames // batch) * batch / seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cameras", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hailo_double_bench") as lock_dir:
        settings = {
            "HAILO_DOUBLE_ARCH": "hailo10h", "HAILO_DOUBLE_REPLAY": "1", "HAILO_DOUBLE_LOCK_DIR": lock_dir,
            "HAILO_DOUBLE_LATENCY_MS": str(args.latency_ms),
        }  # fmt: skip
        os.environ.update(settings)
        ceiling = device_ceiling(args.frames, args.batch)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(DOUBLE), str(ROOT)])}
        image = assets_dir() / "images" / "insightface_t1.jpg"
        command = [sys.executable, "-m", "nvr", "bench", "inference", "--hef", str(HEF), "--frames",
                   str(args.frames), "--batch", str(args.batch), "--cameras", str(args.cameras),
                   "--image", str(image), "--json"]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd=ROOT)
        engine = json.loads(done.stdout)
        print(f"device alone: {ceiling:.0f} fps (simulated {args.latency_ms} ms/frame)")
        cpu_ms = engine["cpu_ms_per_frame"]
        path = f"daemon path, {args.cameras} camera(s)"
        print(f"{path}: {engine['fps']:.0f} fps, host CPU {cpu_ms:.3f} ms/frame")
        print(f"ratio: {engine['fps'] / ceiling:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
