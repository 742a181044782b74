#!/usr/bin/env python3
"""Per-image detection time of the BlazeFace models against SCRFD-500M on the CPU, measured in the same run.

Each detector runs the daemon's whole per-image path (`FaceDetector.detect`: letterbox, inference,
postprocessing) on the same images. Calls interleave the detectors image by image, and each (detector, image)
keeps its fastest of the rounds, so load from other processes hurts all alike and mostly drops out; the
ratio column (SCRFD-500M time / model time) is the portable figure.

    .venv/bin/python scripts/bench_blazeface.py [--rounds 20] [--onnx-dir DIR] [--scrfd-size 640]

The ONNX BlazeFace models come from scripts/export_blazeface_onnx.py: pass --onnx-dir where they are, or
leave it out to export them into a temporary folder first (needs PyTorch).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from nvr.assets import assets_dir  # noqa: E402 - after the path set-up for running from a checkout
from nvr.contracts.arrays import RgbImage  # noqa: E402
from nvr.contracts.imaging import letterbox_into, load_rgb  # noqa: E402
from nvr.detector import FaceDetector, open_detector  # noqa: E402

IMAGES = (
    "insightface_t1.jpg", "face_recognition_two_people.jpg", "cospectrum_newton.png", "hollance_3faces.png"
)  # fmt: skip
BASELINE = "SCRFD-500M onnx"


def models(onnx_dir: Path, scrfd_size: int) -> dict[str, tuple[Path, int]]:
    """Label -> (model file, input size passed to open_detector; BlazeFace models fix their own)."""
    assets = assets_dir() / "models"
    return {
        BASELINE: (assets / "scrfd" / "det_500m.onnx", scrfd_size),
        "BlazeFace short-range tflite": (assets / "mediapipe" / "face_detection_short_range.tflite", 0),
        "BlazeFace full-range tflite": (assets / "mediapipe" / "face_detection_full_range.tflite", 0),
        "BlazeFace front onnx": (onnx_dir / "blazeface_front.onnx", 0),
        "BlazeFace back onnx": (onnx_dir / "blazeface_back.onnx", 0),
    }


def call_ms(detector: FaceDetector, image: RgbImage) -> float:
    start = time.perf_counter()
    detector.detect(image)
    return (time.perf_counter() - start) * 1e3


def letterbox_ms(detector: FaceDetector, image: RgbImage) -> float:
    """The resize into the model input alone: the part of detect() every detector pays alike."""
    buffer = np.zeros((detector.backend.input_height, detector.backend.input_width, 3), np.uint8)
    start = time.perf_counter()
    letterbox_into(image, buffer)
    return (time.perf_counter() - start) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per detector and image")
    parser.add_argument("--onnx-dir", type=Path, help="folder with blazeface_{front,back}.onnx")
    parser.add_argument("--scrfd-size", type=int, default=640, help="SCRFD input size (default 640)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        onnx_dir: Path = args.onnx_dir or Path(scratch)
        if args.onnx_dir is None:
            exporter = PROJECT_ROOT / "scripts" / "export_blazeface_onnx.py"
            command = [sys.executable, str(exporter), "--out-dir", scratch]
            subprocess.run(command, check=True, capture_output=True)
        images = [load_rgb(assets_dir() / "images" / name) for name in IMAGES]
        detectors: dict[str, FaceDetector] = {}
        for label, (path, size) in models(onnx_dir, args.scrfd_size).items():
            detector = open_detector(path, input_width=size or 640, input_height=size or 640)
            for image in images:  # warm-up: first-run allocations and kernel selection
                detector.detect(image)
            detectors[label] = detector
        fastest = {label: [float("inf")] * len(images) for label in detectors}
        resize = {label: [float("inf")] * len(images) for label in detectors}
        for _ in range(args.rounds):
            for i, image in enumerate(images):
                for label, detector in detectors.items():
                    fastest[label][i] = min(fastest[label][i], call_ms(detector, image))
                    resize[label][i] = min(resize[label][i], letterbox_ms(detector, image))
        best = {label: sum(times) / len(times) for label, times in fastest.items()}
        resize_mean = {label: sum(times) / len(times) for label, times in resize.items()}
        for detector in detectors.values():
            detector.close()

    print(f"detect() ms per image: fastest of {args.rounds} calls, averaged over {len(IMAGES)} images")
    header = f"{'model':<30} {'input':>9} {'ms/image':>9} {'of which resize':>16}"
    print(f"{header} {'× faster than SCRFD-500M':>26}")
    for label, detector in detectors.items():
        shape = f"{detector.backend.input_width}x{detector.backend.input_height}"
        ratio = best[BASELINE] / best[label]
        print(f"{label:<30} {shape:>9} {best[label]:>9.2f} {resize_mean[label]:>16.2f} {ratio:>26.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
