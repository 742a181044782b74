"""`nvr eval faces DIR --enroll K`: rank-1, TAR/FAR at the threshold, the threshold for 1 % FAR, a ROC PNG.

How users pick a threshold for their embedder on photos of their own household, and how we prove accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from nvr.cli.faces import IMAGE_SUFFIXES, load_image
from nvr.cli.recognition_setup import DETECT_THRESHOLD, add_common_options, open_embedder_for, settings_from
from nvr.contracts.arrays import FloatArray, RgbImage
from nvr.detector import open_detector
from nvr.errors import InputFileError, ModelError, NvrError
from nvr.evaluation.faces import evaluate_faces, person_folders
from nvr.evaluation.plot import save_roc
from nvr.progress import Progress
from nvr.recognition.enrolment import align, largest


def register(benchmarks: Any) -> None:
    parser: argparse.ArgumentParser = benchmarks.add_parser(
        "faces",
        help="face recognition: rank-1, TAR/FAR, the threshold for 1%% false accepts, ROC",
        description="Enrol the first K photos of each person (DIR/<person>/<photo>), identify the others, "
        "and report rank-1 accuracy, true/false-accept rates at the threshold, the threshold that keeps "
        "false accepts at 1%%, and a ROC plot.",
    )
    parser.add_argument("folder", type=Path, metavar="DIR", help="one sub-folder of photos per person")
    parser.add_argument("--enroll", type=int, default=1, metavar="K", help="photos enrolled per person (1)")
    parser.add_argument("--out", type=Path, help="output folder (default: faces-eval/<embedder name>)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    add_common_options(parser, library=False)
    parser.set_defaults(handler=run_faces)


def run_faces(args: argparse.Namespace) -> int:
    if args.enroll < 1:
        raise ModelError(f"--enroll must be at least 1, got {args.enroll}")
    if not args.folder.is_dir():
        raise InputFileError(f"{args.folder}: not a folder (expected one sub-folder of photos per person)")
    folders = person_folders(args.folder, IMAGE_SUFFIXES)
    if not folders:
        raise InputFileError(f"{args.folder}: no person folders with photos")
    settings = settings_from(args)
    crops: dict[str, list[RgbImage]] = {}
    refused: list[str] = []
    with (
        open_detector(settings.detector, score_threshold=DETECT_THRESHOLD) as detector,
        open_embedder_for(settings) as embedder,
    ):
        progress = Progress("faces", sum(map(len, folders.values())), "photos")
        for person, photos in folders.items():
            crops[person] = []
            for photo in photos:
                progress.advance(note=person)
                try:
                    image = load_image(photo)
                except NvrError as exc:
                    refused.append(f"{photo}: {exc.message}")
                    continue
                detections = detector.detect(image)
                face = largest(detections)
                aligned = align(image, face, detections.landmark_names) if face is not None else None
                if aligned is None:
                    refused.append(f"{photo}: no usable face")
                    continue
                crops[person].append(aligned)
        progress.close()

        def embed(faces: list[RgbImage]) -> FloatArray:
            return embedder.embed(np.stack(faces))

        result = evaluate_faces(
            crops, embed, enroll=args.enroll, threshold=settings.threshold, margin=settings.margin,
            model_id=embedder.model_id, refused=tuple(refused),
        )  # fmt: skip
    for line in refused:
        print(f"nvr: skipped {line}", file=sys.stderr)
    if result.probes == 0:
        raise InputFileError(f"{args.folder}: nobody has more than {args.enroll} usable photo(s) to identify")
    out_dir: Path = args.out or Path("faces-eval") / settings.embedder.stem
    far, tar = result.roc()
    marks = [(result.far, result.tar, f"threshold {result.threshold:.2f}")]
    if not math.isnan(result.threshold_at_target):
        label = f"threshold {result.threshold_at_target:.2f}: FAR <= 1 %"
        marks.append((result.far_at_target, result.tar_at_target, label))
    title = f"{settings.embedder.name}: {result.people} people, {result.probes} probes, enrol {args.enroll}"
    roc = save_roc(far, tar, marks, out_dir / "roc.png", title)
    figures = {k: v for k, v in asdict(result).items() if k not in ("genuine", "impostor", "refused")}
    figures = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}
    figures.update(embedder=str(settings.embedder), model=embedder.model_id, roc=str(roc))
    (out_dir / "results.json").write_text(json.dumps(figures, indent=2) + "\n")
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{settings.embedder.name}: {result.people} people enrolled ({result.enrolled} photos), "
          f"{result.probes} probe photos")  # fmt: skip
    print(f"rank-1 accuracy:        {result.rank1 * 100:6.2f} %")
    print(f"at threshold {result.threshold:.3f} (margin {result.margin:.3f}):")
    print(f"  accepted and right:   {result.accepted_right * 100:6.2f} % of probes")
    print(f"  accepted and wrong:   {result.accepted_wrong * 100:6.2f} % of probes")
    print(f"  TAR / FAR (pairs):    {result.tar * 100:6.2f} % / {result.far * 100:.2f} %")
    if math.isnan(result.threshold_at_target):
        print("threshold for 1 % FAR: n/a (only one person: no impostor pairs)")
    else:
        at_target = result.tar_at_target * 100
        print(f"threshold for 1 % FAR: {result.threshold_at_target:.4f} (TAR there {at_target:.2f} %)")
    print(f"ROC: {roc}")
    return 0
