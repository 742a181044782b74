"""The accuracy table for the README: WIDER FACE easy/medium/hard AP per model and backend.

    .venv/bin/python scripts/accuracy_table.py [--images DIR] [--gt DIR] > table.md

Runs at 640x640 input and score threshold 0.02 (how SCRFD and the Model Zoo evaluate), scores with
nvr's implementation of the official protocol, and adds, for comparison, the independent insightface-style
reference pipeline of tests/reference_insightface.py. The Hailo row uses the HEF's output quantization on
the ONNX model (what the HailoRT test double computes too); no real Hailo device was used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nvr.assets import assets_dir
from nvr.detector import FaceDetector, open_detector
from nvr.evaluation.groundtruth import SETTINGS, load_ground_truth
from nvr.evaluation.protocol import EvaluationResult, evaluate
from nvr.evaluation.quantized import HefQuantizedOnnx
from nvr.evaluation.widerface import EVAL_SCORE_THRESHOLD, find_images, predict
from nvr.postprocess.scrfd import ScrfdPostprocessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference_insightface import reference_predictions

Predictions = dict[str, np.ndarray]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, default=assets_dir() / "widerface" / "images")
    parser.add_argument("--gt", type=Path, default=assets_dir() / "widerface" / "gt")
    args = parser.parse_args()
    models = assets_dir() / "models" / "scrfd"
    hef = assets_dir() / "hef" / "scrfd_2.5g.hailo10h.hef"
    ground_truth = load_ground_truth(args.gt)
    images = find_images(args.images, ground_truth)

    def nvr_cpu(model: str) -> Callable[[], Predictions]:
        def run() -> Predictions:
            with open_detector(models / model, "onnx", EVAL_SCORE_THRESHOLD) as detector:
                return predict(detector.detect, images, None, model)

        return run

    def hef_quantized() -> Predictions:
        backend = HefQuantizedOnnx(models / "det_2.5g.onnx", hef)
        detector = FaceDetector(backend, ScrfdPostprocessor(640, 640, EVAL_SCORE_THRESHOLD))
        return predict(detector.detect, images, None, "hef-quantized")

    def reference(model: str, resize: str) -> Callable[[], Predictions]:
        return lambda: reference_predictions(models / model, args.images, resize)

    rows: list[tuple[str, str, Callable[[], Predictions]]] = [
        ("SCRFD-500M", "CPU (ONNX Runtime): `nvr`", nvr_cpu("det_500m.onnx")),
        ("SCRFD-500M", "reference pipeline, OpenCV-style resize", reference("det_500m.onnx", "opencv")),
        ("SCRFD-500M", "reference pipeline, Pillow resize", reference("det_500m.onnx", "pillow")),
        ("SCRFD-2.5G", "CPU (ONNX Runtime): `nvr`", nvr_cpu("det_2.5g.onnx")),
        ("SCRFD-2.5G", "reference pipeline, OpenCV-style resize", reference("det_2.5g.onnx", "opencv")),
        ("SCRFD-2.5G", "reference pipeline, Pillow resize", reference("det_2.5g.onnx", "pillow")),
        ("SCRFD-2.5G", f"Hailo path: uint8 outputs with `{hef.name}`'s quantization", hef_quantized),
    ]
    results: list[tuple[str, str, EvaluationResult]] = []
    for model, backend, run in rows:
        print(f"{model} / {backend} ...", file=sys.stderr)
        results.append((model, backend, evaluate(ground_truth, run())))
    first = results[0][2]
    faces = ", ".join(f"{s} {first.settings[s].face_count}" for s in SETTINGS)
    print(f"WIDER FACE validation, {first.image_count} images ({faces} faces counted), 640x640 input:\n")
    print("| model | backend | easy | medium | hard |")
    print("|---|---|---:|---:|---:|")
    for model, backend, result in results:
        cells = " | ".join(f"{result.ap(s) * 100:.2f}" for s in SETTINGS)
        print(f"| {model} | {backend} | {cells} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
