"""`nvr eval widerface`: easy/medium/hard AP of a model and backend on WIDER FACE validation images."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from nvr.cli import eval_faces
from nvr.detector import open_detector
from nvr.errors import ModelError
from nvr.evaluation.groundtruth import SETTINGS, load_ground_truth
from nvr.evaluation.plot import save_pr_curves
from nvr.evaluation.predictions import read_predictions
from nvr.evaluation.protocol import EvaluationResult, evaluate
from nvr.evaluation.widerface import EVAL_SCORE_THRESHOLD, find_images, predict
from nvr.models.resolve import backend_choices, family_choices, resolve_model

NO_FACES = np.zeros((0, 5), np.float64)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "eval", help="measure detection accuracy", description="Measure detection accuracy on a benchmark."
    )
    benchmarks = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    wider: argparse.ArgumentParser = benchmarks.add_parser(
        "widerface",
        help="WIDER FACE validation: easy/medium/hard AP (official protocol)",
        description="Run a model over WIDER FACE validation images (<images>/<event>/<image>.jpg, any "
        "subset) and score it with the official protocol: IoU 0.5, 1000 thresholds, easy/medium/hard AP.",
    )
    wider.add_argument("--images", type=Path, required=True, help="folder of <event>/<image>.jpg")
    wider.add_argument(
        "--gt", type=Path, required=True, help="folder with wider_face_val.mat and wider_*_val.mat"
    )
    source = wider.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        help="model to run: catalogue name (nvr models list), or a .onnx/.tflite (CPU) or .hef file",
    )
    source.add_argument(
        "--predictions", type=Path, metavar="DIR", help="score existing WIDER txt predictions instead"
    )
    wider.add_argument("--backend", choices=backend_choices(), default="auto")
    wider.add_argument(
        "--detector",
        choices=family_choices(),
        default="auto",
        help="detector family (default: from the model)",
    )
    wider.add_argument(
        "--input-size", type=int, default=640, metavar="N", help="model input N x N (default 640)"
    )
    wider.add_argument("--out", type=Path, help="output folder (default: widerface-eval/<model name>)")
    wider.set_defaults(handler=run_widerface)
    eval_faces.register(benchmarks)


def run_widerface(args: argparse.Namespace) -> int:
    ground_truth = load_ground_truth(args.gt)
    images = find_images(args.images, ground_truth)
    if args.predictions is not None:
        label = str(args.predictions)
        out_dir: Path = args.out or Path("widerface-eval") / args.predictions.name
        written = read_predictions(args.predictions)
        # The image tree decides what is scored; an image without a prediction file has no faces.
        predictions = {image.name: written.get(image.name, NO_FACES) for image in images}
    else:
        if args.input_size <= 0 or args.input_size % 32:
            raise ModelError(f"--input-size must be a positive multiple of 32, got {args.input_size}")
        model = resolve_model(args.model, backend=args.backend, family=args.detector)
        out_dir = args.out or Path("widerface-eval") / model.path.stem
        size = args.input_size
        with open_detector(
            model, score_threshold=EVAL_SCORE_THRESHOLD, input_width=size, input_height=size
        ) as detector:
            name = (detector.path or model.path).name  # the CPU model's, after a fallback
            label = f"{name} ({detector.backend.name})"
            predictions = predict(detector.detect, images, out_dir / "predictions", name)
    result = evaluate(ground_truth, predictions)
    events = sorted({image.event for image in images})
    title = f"WIDER FACE val, {result.image_count} images: {label}"
    curves = save_pr_curves(result, out_dir / "pr_curves.png", title)
    _write_json(out_dir / "results.json", result, label, events)
    print(f"WIDER FACE validation: {result.image_count} images in {len(events)} event(s); {label}")
    print(f"{'setting':<8} {'faces':>6} {'AP':>7}")
    for setting in SETTINGS:
        curve = result.settings[setting]
        ap = "n/a" if math.isnan(curve.ap) else f"{curve.ap * 100:.2f}"
        print(f"{setting:<8} {curve.face_count:>6} {ap:>7}")
    if args.predictions is None:
        print(f"predictions: {out_dir / 'predictions'}")
    print(f"PR curves: {curves}")
    return 0


def _write_json(path: Path, result: EvaluationResult, label: str, events: list[str]) -> None:
    record = {
        "source": label,
        "images": result.image_count,
        "events": events,
        "ap": {s: None if math.isnan(result.ap(s)) else result.ap(s) for s in SETTINGS},  # JSON has no NaN
        "faces": {s: result.settings[s].face_count for s in SETTINGS},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
