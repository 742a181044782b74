"""Run a face detector over a WIDER FACE image tree and score it with the official protocol.

The tree is `<images>/<event>/<image>.jpg`, any subset of the validation set. Detection runs at the
evaluation threshold (0.02, as SCRFD and the Model Zoo evaluate), predictions are written in the WIDER
txt format, then scored; only the images present count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections
from nvr.contracts.imaging import load_rgb
from nvr.errors import InputFileError
from nvr.evaluation.groundtruth import WiderGroundTruth
from nvr.evaluation.predictions import detections_to_wider, write_prediction
from nvr.progress import Progress

EVAL_SCORE_THRESHOLD = 0.02
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})

Detect = Callable[[RgbImage], Detections]


@dataclass(frozen=True, slots=True)
class WiderImage:
    event: str
    name: str
    path: Path


def find_images(images_dir: Path, ground_truth: WiderGroundTruth) -> list[WiderImage]:
    """The `<event>/<image>` files under `images_dir`, each checked against the ground truth."""
    if not images_dir.is_dir():
        raise InputFileError(f"{images_dir}: no such image folder (expected <event>/<image>.jpg inside)")
    found: list[WiderImage] = []
    for path in sorted(images_dir.glob("*/*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        image = ground_truth.get(path.stem)
        if image is None:
            raise InputFileError(f"{path}: not an image of the WIDER FACE validation set (no ground truth)")
        if image.event != path.parent.name:
            raise InputFileError(f"{path}: the ground truth puts this image in event {image.event!r}")
        found.append(WiderImage(image.event, image.name, path))
    if not found:
        raise InputFileError(f"{images_dir}: no images found (expected <event>/<image>.jpg inside)")
    return found


def predict(
    detect: Detect, images: list[WiderImage], out_dir: Path | None, label: str = "detecting"
) -> dict[str, npt.NDArray[np.float64]]:
    """Detections of every image as (N, 5) x, y, w, h, score; also written to `out_dir` when given."""
    progress = Progress(label, len(images), "images")
    predictions: dict[str, npt.NDArray[np.float64]] = {}
    for image in images:
        faces = detections_to_wider(detect(load_rgb(image.path)))
        predictions[image.name] = faces
        if out_dir is not None:
            write_prediction(out_dir, image.event, image.name, faces)
        progress.advance(note=image.name)
    progress.close()
    return predictions
