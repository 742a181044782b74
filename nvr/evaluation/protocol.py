"""The WIDER FACE evaluation protocol as the official MATLAB toolkit defines it, written from its description.

For each setting (easy, medium, hard):
1. Scores are normalised over all predictions of all evaluated images: (s - min) / (max - min). (When
   every score is the same the toolkit divides by zero and scores nothing; here they all become 1.)
2. Per image, predictions are taken in descending score order. Each is compared with every ground-truth
   face (boxes as x, y, w, h; corners x2 = x + w; inclusive-pixel IoU with +1 in widths and heights) and
   matched only to its single best-overlapping face. With IoU >= 0.5 on a face the setting ignores, the
   prediction is dropped from the proposals; on a counted face it recalls that face (once).
3. Per image and for each of 1000 thresholds t = 1 - k/1000 (k = 1..1000): the proposals and recalled
   faces among the predictions scoring >= t. Images without ground truth or without predictions
   contribute only their counted faces.
4. Summed over images: precision = recalled / proposals (undefined where nothing is proposed), recall =
   recalled / counted faces; AP is the VOC-style area: precision replaced by its maximum at any higher
   recall (skipping undefined points, as MATLAB's max skips NaN), summed over the recall steps.
Only the images given are evaluated, so any subset of the validation set can be scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from nvr.contracts.arrays import Float64Array
from nvr.errors import InputFileError
from nvr.evaluation.groundtruth import SETTINGS, WiderGroundTruth

IOU_THRESHOLD = 0.5
THRESHOLD_COUNT = 1000


@dataclass(frozen=True, slots=True)
class SettingResult:
    setting: str
    ap: float  # in [0, 1]; NaN when the evaluated images have no face counted in this setting
    precision: Float64Array  # (1000,) at thresholds 0.999 .. 0.0; NaN where nothing is proposed
    recall: Float64Array  # (1000,)
    face_count: int


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    settings: dict[str, SettingResult]
    image_count: int

    def ap(self, setting: str) -> float:
        return self.settings[setting].ap


def box_overlaps(gt_xywh: Float64Array, pred_xywh: Float64Array) -> Float64Array:
    """IoU matrix (P, K) of predictions against ground truth, in the toolkit's inclusive-pixel convention."""
    g1 = gt_xywh[:, :2]
    g2 = g1 + gt_xywh[:, 2:4]
    p1 = pred_xywh[:, None, :2]
    p2 = p1 + pred_xywh[:, None, 2:4]
    size = np.minimum(p2, g2) - np.maximum(p1, g1) + 1.0
    inter = size[..., 0] * size[..., 1]
    gt_area = (g2[:, 0] - g1[:, 0] + 1.0) * (g2[:, 1] - g1[:, 1] + 1.0)
    pred_area = (p2[..., 0] - p1[..., 0] + 1.0) * (p2[..., 1] - p1[..., 1] + 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate pairs are zeroed just below
        iou = inter / (gt_area + pred_area - inter)
    iou[(size[..., 0] <= 0) | (size[..., 1] <= 0)] = 0.0
    return iou


def image_pr(
    pred_xywh: Float64Array,
    scores: Float64Array,
    gt_xywh: Float64Array,
    counted: npt.NDArray[np.bool_],
    *,
    iou_threshold: float = IOU_THRESHOLD,
    threshold_count: int = THRESHOLD_COUNT,
) -> npt.NDArray[np.int64]:
    """(T, 2) proposals and recalled faces of one image at each threshold; scores sorted descending."""
    iou = box_overlaps(gt_xywh, pred_xywh)
    best = np.argmax(iou, axis=1)  # first maximum on ties, as the toolkit takes it
    matched = iou[np.arange(len(best)), best] >= iou_threshold
    on_ignored = matched & ~counted[best]
    on_counted = matched & counted[best]
    is_proposal = ~on_ignored
    # A face is recalled by the first prediction that matches it; later matches add nothing.
    first_hit = np.zeros(len(best), bool)
    hit_index = np.flatnonzero(on_counted)
    _, first = np.unique(best[hit_index], return_index=True)
    first_hit[hit_index[first]] = True
    recalled_so_far = np.cumsum(first_hit)
    proposals_so_far = np.cumsum(is_proposal)

    thresholds = 1.0 - np.arange(1, threshold_count + 1, dtype=np.float64) / threshold_count
    # Number of predictions scoring >= each threshold (scores are descending).
    taken = np.searchsorted(-scores, -thresholds, side="right")
    out = np.zeros((threshold_count, 2), np.int64)
    some = taken > 0
    out[some, 0] = proposals_so_far[taken[some] - 1]
    out[some, 1] = recalled_so_far[taken[some] - 1]
    return out


def voc_ap(recall: Float64Array, precision: Float64Array) -> float:
    """Area under the precision envelope (max precision at any higher recall), summed where recall steps."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    # fmax skips NaN (no proposals at that threshold), as MATLAB's max does.
    mpre = np.fmax.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def normalise_scores(predictions: Mapping[str, Float64Array]) -> dict[str, Float64Array]:
    """Each image's (N, 5) predictions with the score column normalised over the whole set."""
    scored = [pred[:, 4] for pred in predictions.values() if len(pred)]
    low = min((float(s.min()) for s in scored), default=0.0)
    high = max((float(s.max()) for s in scored), default=1.0)
    span = high - low
    out: dict[str, Float64Array] = {}
    for name, pred in predictions.items():
        normalised = np.array(pred, np.float64)
        if len(normalised):
            normalised[:, 4] = (normalised[:, 4] - low) / span if span > 0 else 1.0
        out[name] = normalised
    return out


def evaluate(
    ground_truth: WiderGroundTruth,
    predictions: Mapping[str, Float64Array],
    *,
    iou_threshold: float = IOU_THRESHOLD,
    threshold_count: int = THRESHOLD_COUNT,
) -> EvaluationResult:
    """Score `predictions` {image name: (N, 5) x, y, w, h, score} on exactly the images it names."""
    unknown = sorted(name for name in predictions if name not in ground_truth)
    if unknown:
        raise InputFileError(
            f"image {unknown[0]!r} is not in the WIDER FACE validation ground truth"
            + (f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else "")
        )
    images = ground_truth.subset(set(predictions))
    normalised = normalise_scores(predictions)
    results: dict[str, SettingResult] = {}
    for setting in SETTINGS:
        totals = np.zeros((threshold_count, 2), np.int64)
        face_count = 0
        for image in images:
            counted = image.keep[setting]
            face_count += int(counted.sum())
            pred = normalised[image.name]
            if len(image.boxes) == 0 or len(pred) == 0:
                continue
            pred = pred[np.argsort(-pred[:, 4], kind="stable")]
            totals += image_pr(
                pred[:, :4], pred[:, 4], image.boxes, counted,
                iou_threshold=iou_threshold, threshold_count=threshold_count,
            )  # fmt: skip
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = totals[:, 1] / totals[:, 0]
            recall = totals[:, 1] / face_count if face_count else np.full(threshold_count, np.nan)
        ap = voc_ap(recall, precision) if face_count else float("nan")
        results[setting] = SettingResult(setting, ap, precision, recall, face_count)
    return EvaluationResult(results, len(images))
