#!/usr/bin/env python3
"""Face embedding on the Hailo (double) beside SCRFD on one device: host time per face, combined device rate.

All against the HailoRT double in replay mode (its own ONNX compute runs once, off the host's budget), with a
simulated device time per network on ONE device timeline (defaults: SCRFD 1.0 ms/frame, ArcFace 0.3 ms/face;
assumed figures for a Hailo-8, set them with --det-ms / --emb-ms). SCRFD is the SYNTHETIC Hailo-8 copy of
our Hailo-10H HEF (tests/hef_synth.py): no real chip runs both our SCRFD HEF and the Hailo-8 ArcFace HEF.

  1. host ms per embedded face: process CPU time per face, Hailo path (faces in batches of --faces) versus
     the CPU path (fr_feature_512.onnx on ONNX Runtime, one face per call: the model takes batch 1);
  2. detection alone at an offered rate (--det-fps), then the same with the embedder saturating the device:
     detection keeps its rate, the embedder gets the rest; the device's utilisation is the combined rate.

    .venv/bin/python scripts/bench_hailo_embedder.py [--det-fps 300] [--seconds 4] [--faces 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "hailo_double"), str(ROOT / "tests"), str(ROOT)]

from nvr.assets import assets_dir  # noqa: E402

ASSETS = assets_dir()
ARCFACE = ASSETS / "hef" / "arcface_mobilefacenet.hailo8.hef"
SCRFD = ASSETS / "hef" / "scrfd_2.5g.hailo10h.hef"


def cpu_ms_per_face(faces: np.ndarray, rounds: int) -> float:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(ASSETS / "models/recognition/fr_feature_512.onnx"), options)
    name = session.get_inputs()[0].name
    tensor = ((faces[:1].astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2)
    session.run(None, {name: tensor})
    start = time.process_time()
    for _ in range(rounds):
        session.run(None, {name: tensor})
    return 1000.0 * (time.process_time() - start) / rounds


def run_detection(engine: object, fps: float, seconds: float, stop: threading.Event) -> float:
    """Offer frames at `fps` for `seconds`; returns the detection rate delivered."""
    from nvr.contracts.frameref import ArrayFrame

    frame = np.zeros((640, 640, 3), np.uint8)
    done = [0]
    engine.stats.dropped = 0  # type: ignore[attr-defined]

    def collect() -> None:
        while not stop.is_set():
            result = engine.get_result(timeout=0.2)  # type: ignore[attr-defined]
            if result is not None:
                result.release()
                done[0] += 1

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) * fps)
        while sent < due:
            engine.submit(ArrayFrame(frame, sent))  # type: ignore[attr-defined]
            sent += 1
        time.sleep(0.001)
    deadline = time.perf_counter() + 2.0  # let the frames in flight come back
    while done[0] + engine.stats.dropped < sent and time.perf_counter() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.01)
    elapsed = time.perf_counter() - start  # offering, then the last frames' return
    stop.set()
    collector.join(2)
    return done[0] / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--det-ms", type=float, default=1.0, help="SCRFD device time per frame (default 1.0)")
    parser.add_argument(
        "--emb-ms", type=float, default=0.3, help="ArcFace device time per face (default 0.3)"
    )
    parser.add_argument("--det-fps", type=float, default=300.0, help="detection frames offered per second")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--faces", type=int, default=8, help="faces per embed() call")
    args = parser.parse_args()
    from hef_synth import synthetic_hailo8_scrfd

    from nvr.backends.hailo import HailoEngine, HailoSettings

    with tempfile.TemporaryDirectory(prefix="hailo_double_bench") as scratch:
        os.environ.update({
            "HAILO_DOUBLE_ARCH": "hailo8", "HAILO_DOUBLE_REPLAY": "1", "HAILO_DOUBLE_LOCK_DIR": scratch,
            "HAILO_DOUBLE_LATENCY_MS": f"scrfd_2_5g={args.det_ms},arcface_mobilefacenet={args.emb_ms}",
        })  # fmt: skip
        from hailo_platform.pyhailort import _pyhailort

        scrfd = Path(scratch) / "scrfd_2.5g.hailo8-synthetic.hef"
        synthetic_hailo8_scrfd(SCRFD, scrfd)
        rng = np.random.default_rng(0)
        faces = rng.integers(0, 256, (args.faces, 112, 112, 3), np.uint8)
        settings = HailoSettings(batch_size=4, input_queue=64, embedder_batch=8)
        with HailoEngine(scrfd, settings, embedder_hef=ARCFACE).start() as engine:
            embedder = engine.embedder()
            assert embedder is not None
            embedder.embed(faces)  # replay: the one ONNX run
            rounds = max(1, 400 // args.faces)
            start = time.process_time()
            for _ in range(rounds):
                embedder.embed(faces)
            hailo_ms = 1000.0 * (time.process_time() - start) / (rounds * args.faces)
            cpu_ms = cpu_ms_per_face(faces, 50)
            print(f"host CPU per embedded face: Hailo (double) {hailo_ms:.3f} ms (batches of {args.faces}), "
                  f"CPU path {cpu_ms:.3f} ms (fr_feature_512.onnx, 1 thread)")  # fmt: skip
            timeline = _pyhailort.REGISTRY.timeline
            wall0, busy0, many = time.perf_counter(), timeline.busy_s, np.repeat(faces, 8, axis=0)
            for _ in range(max(1, 4000 // len(many))):
                embedder.embed(many)
            wall, busy = time.perf_counter() - wall0, timeline.busy_s - busy0
            print(f"embedder alone: {busy / args.emb_ms * 1000 / wall:.0f} faces/s ({len(many)} per call); "
                  f"device busy {busy / wall:.3f} of the time")  # fmt: skip

            alone = run_detection(engine, args.det_fps, args.seconds, threading.Event())
            stop, embedded = threading.Event(), [0]

            def embed_loop() -> None:
                while not stop.is_set():
                    embedder.embed(faces)
                    embedded[0] += len(faces)

            busy0, wall0 = timeline.busy_s, time.perf_counter()
            embedding = threading.Thread(target=embed_loop, daemon=True)
            embedding.start()
            shared = run_detection(engine, args.det_fps, args.seconds, stop)
            embedding.join(5)
            wall, busy = time.perf_counter() - wall0, timeline.busy_s - busy0
        faces_per_s = embedded[0] / wall
        print(
            f"device: SCRFD {args.det_ms} ms/frame, ArcFace {args.emb_ms} ms/face, one timeline (simulated)"
        )
        print(f"detection offered {args.det_fps:.0f} fps: alone {alone:.0f} fps, "
              f"with the embedder {shared:.0f} fps ({shared / alone:.3f} of alone)")  # fmt: skip
        print(
            f"embedder beside it: {faces_per_s:.0f} faces/s; device busy {busy / wall:.3f} of the time "
            f"(detection {shared * args.det_ms / 1000:.3f} + embedding "
            f"{faces_per_s * args.emb_ms / 1000:.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
