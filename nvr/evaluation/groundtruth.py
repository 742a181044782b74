"""WIDER FACE validation ground truth, read from the official `.mat` files.

`wider_face_val.mat` lists every event, image and face box; `wider_{easy,medium,hard}_val.mat` list, per
image, the 1-based indexes of the faces that count in that setting. Faces outside a setting's list are
*ignored* there: a detection on one is neither a hit nor a false positive (the toolkit's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from nvr.errors import InputFileError
from nvr.evaluation.matfile import load_mat

SETTINGS: tuple[str, ...] = ("easy", "medium", "hard")
FACE_FILE = "wider_face_val.mat"
SETTING_FILES: dict[str, str] = {setting: f"wider_{setting}_val.mat" for setting in SETTINGS}


@dataclass(frozen=True, slots=True)
class GroundTruthImage:
    event: str  # e.g. "19--Couple"
    name: str  # image file name without extension, e.g. "19_Couple_Couple_19_106"
    boxes: npt.NDArray[np.float64]  # (K, 4) x, y, w, h as the toolkit stores them
    keep: dict[str, npt.NDArray[np.bool_]]  # setting -> (K,) which faces count in that setting


class WiderGroundTruth:
    """All validation images, in the toolkit's event/file order, looked up by image name."""

    def __init__(self, images: list[GroundTruthImage]) -> None:
        self.images = images
        self._by_name = {image.name: image for image in images}

    def __len__(self) -> int:
        return len(self.images)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, name: str) -> GroundTruthImage | None:
        return self._by_name.get(name)

    def subset(self, names: set[str]) -> list[GroundTruthImage]:
        """The images named in `names`, in the toolkit's order."""
        return [image for image in self.images if image.name in names]


def load_ground_truth(gt_dir: str | Path) -> WiderGroundTruth:
    """Read the four official validation `.mat` files from `gt_dir`."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise InputFileError(
            f"{gt_dir}: no such ground-truth folder (expected {FACE_FILE} and the setting files)"
        )
    faces = _load(gt_dir / FACE_FILE, ("event_list", "file_list", "face_bbx_list"))
    keep_lists = {s: _load(gt_dir / f, ("gt_list",))["gt_list"] for s, f in SETTING_FILES.items()}
    events = faces["event_list"].ravel()
    images: list[GroundTruthImage] = []
    for e, event_cell in enumerate(events):
        event = str(event_cell)
        files = faces["file_list"].ravel()[e].ravel()
        boxes = faces["face_bbx_list"].ravel()[e].ravel()
        per_setting = {s: keep_lists[s].ravel()[e].ravel() for s in SETTINGS}
        for i, name in enumerate(files):
            image_boxes = np.asarray(boxes[i], np.float64).reshape(-1, 4)
            keep: dict[str, npt.NDArray[np.bool_]] = {}
            for setting in SETTINGS:
                mask = np.zeros(len(image_boxes), bool)
                indexes = np.asarray(per_setting[setting][i], np.int64).ravel() - 1  # MATLAB is 1-based
                if indexes.size and (indexes.min() < 0 or indexes.max() >= len(image_boxes)):
                    raise InputFileError(
                        f"{gt_dir / SETTING_FILES[setting]}: face index out of range for image {name}"
                    )
                mask[indexes] = True
                keep[setting] = mask
            images.append(GroundTruthImage(event, str(name), image_boxes, keep))
    return WiderGroundTruth(images)


def _load(path: Path, names: tuple[str, ...]) -> dict[str, Any]:
    variables = load_mat(path)
    missing = [n for n in names if n not in variables]
    if missing:
        raise InputFileError(f"{path}: not a WIDER FACE ground-truth file (no {', '.join(missing)})")
    return variables
