"""Predictions in the standard WIDER FACE txt format, which the official toolkit and its ports read.

One file per image, `<out>/<event>/<image name>.txt`:
    line 1: the image name (without extension)
    line 2: the number of faces
    then one face per line: `x y w h score` (left, top, width, height in original pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nvr.contracts.arrays import Float64Array
from nvr.contracts.faces import Detections
from nvr.errors import InputFileError


def detections_to_wider(detections: Detections) -> Float64Array:
    """(N, 5) x, y, w, h, score from corner boxes (w = x2 - x1, as insightface writes them)."""
    out = np.empty((len(detections), 5), np.float64)
    out[:, :2] = detections.boxes[:, :2]
    out[:, 2:4] = detections.boxes[:, 2:4] - detections.boxes[:, :2]
    out[:, 4] = detections.scores
    return out


def write_prediction(out_dir: Path, event: str, name: str, faces: Float64Array) -> Path:
    folder = out_dir / event
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.txt"
    lines = [name, str(len(faces))]
    lines += [f"{x:.1f} {y:.1f} {w:.1f} {h:.1f} {s:.5f}" for x, y, w, h, s in faces.tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_prediction(path: Path) -> Float64Array:
    """Read one prediction file; a malformed one raises InputFileError naming the file and line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from None
    if len(lines) < 2:
        raise InputFileError(f"{path}: expected the image name and a face count on the first two lines")
    try:
        count = int(lines[1].strip())
    except ValueError:
        raise InputFileError(f"{path}:2: face count {lines[1].strip()!r} is not an integer") from None
    rows = [line for line in lines[2:] if line.strip()]
    if len(rows) < count:
        raise InputFileError(f"{path}: says {count} faces but lists {len(rows)}")
    faces = np.zeros((count, 5), np.float64)
    for i, line in enumerate(rows[:count]):
        fields = line.split()
        try:
            faces[i] = [float(v) for v in fields[:5]]
        except ValueError:
            raise InputFileError(f"{path}:{i + 3}: expected 'x y w h score', got {line.strip()!r}") from None
        if len(fields) < 5:
            raise InputFileError(f"{path}:{i + 3}: expected 'x y w h score', got {line.strip()!r}")
    return faces


def read_predictions(pred_dir: Path) -> dict[str, Float64Array]:
    """All `<event>/<name>.txt` files under `pred_dir`, keyed by image name."""
    files = sorted(pred_dir.glob("*/*.txt"))
    if not files:
        raise InputFileError(f"{pred_dir}: no prediction files (<event>/<image>.txt) found")
    return {path.stem: read_prediction(path) for path in files}
