"""`nvr detect IMAGE...`: faces in still images, as JSON lines or a readable summary, optionally drawn."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nvr.cli.draw import save_annotated
from nvr.contracts.imaging import load_rgb
from nvr.detector import open_detector
from nvr.errors import ExitCode, ModelError, NvrError
from nvr.models.resolve import backend_choices, family_choices


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "detect", help="detect faces in image files", description="Detect faces in image files."
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument(
        "--model", help="catalogue name (nvr models list) or model file: .onnx or .tflite (CPU), .hef (Hailo)"
    )
    parser.add_argument("--hef", help="a .hef file or catalogue name; implies --backend hailo unless given")
    parser.add_argument("--backend", choices=backend_choices(), default="auto")
    parser.add_argument(
        "--detector",
        choices=family_choices(),
        default="auto",
        help="detector family (default: from the model)",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold (default 0.5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument(
        "--draw", type=Path, metavar="OUT_DIR",
        help="write a copy of each image with its faces drawn into OUT_DIR (same name and format)",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    model: str | None = args.hef or args.model
    if model is None:
        raise ModelError("no model given: pass --model NAME|FILE.onnx|FILE.hef or --hef FILE.hef")
    backend = "hailo" if args.hef is not None and args.backend == "auto" else args.backend
    if not 0.0 <= args.threshold <= 1.0:
        raise ModelError(f"--threshold must be between 0 and 1, got {args.threshold}")
    exit_code = ExitCode.OK
    with open_detector(
        model, backend=backend, score_threshold=args.threshold, detector=args.detector
    ) as detector:
        for image_path in args.images:
            try:
                image = load_rgb(image_path)
            except NvrError as exc:
                # One bad file does not stop the others; it still decides the exit code.
                print(f"nvr: error: {exc.message}", file=sys.stderr)
                exit_code = exc.exit_code
                continue
            detections = detector.detect(image)
            height, width = image.shape[:2]
            drawing = save_annotated(image, detections, args.draw, image_path) if args.draw else None
            if args.json:
                record: dict[str, Any] = {
                    "image": str(image_path),
                    "width": width,
                    "height": height,
                    "landmark_names": list(detections.landmark_names),  # which points each face carries
                    "faces": [face.to_json() for face in detections],
                }
                if drawing is not None:
                    record["drawing"] = str(drawing)
                print(json.dumps(record), flush=True)
            else:
                print(f"{image_path}: {len(detections)} face(s) in {width}x{height}")
                for face in detections:
                    x1, y1, x2, y2 = face.box
                    print(f"  score {face.score:.3f}  box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")
                if drawing is not None:
                    print(f"  drawn to {drawing}")
    return int(exit_code)
