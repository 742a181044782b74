"""A deliberately plain SCRFD decode, written from the published algorithm, to check the fast one against.

Straight from the description of insightface's SCRFD and the Hailo Model Zoo's postprocessing: dequantize
every output, then per stride build the anchor centres (x·s, y·s) two per cell, turn distances (in units of
the stride) into boxes and landmarks, keep scores >= threshold, map to source pixels, and run the classic
greedy NMS loop with the "+1" area convention. No shortcuts: it is also the baseline of
scripts/bench_postprocess.py.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.contracts.geometry import Letterbox
from nvr.contracts.tensors import RawOutput

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


def dequantized(output: RawOutput) -> npt.NDArray[np.float32]:
    if output.quant is None:
        return np.asarray(output.data, np.float32)
    return output.quant.dequantize(output.data)


def per_anchor_rows(values: npt.NDArray[np.float32]) -> tuple[str, npt.NDArray[np.float32]]:
    """Classify one output by its last dimension and return its values as one row per anchor."""
    last = values.shape[-1]
    kind = {1: "score", 2: "score", 4: "bbox", 8: "bbox", 10: "kps", 20: "kps"}[last]
    per_anchor = {"score": 1, "bbox": 4, "kps": 10}[kind]
    return kind, values.reshape(-1, per_anchor)


@functools.lru_cache(maxsize=16)  # as insightface does: the grid depends on the input size only
def anchor_centres(grid_height: int, grid_width: int, stride: int) -> npt.NDArray[np.float32]:
    ys, xs = np.mgrid[:grid_height, :grid_width]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)


def greedy_nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float, offset: float = 1.0
) -> list[int]:
    """The classic loop: keep the best, drop everything overlapping it by more than `iou`, repeat.

    Widths are x2 - x1 + `offset` (insightface: + 1); equal scores go in index order."""
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        xx1 = np.maximum(x1[best], x1[rest])
        yy1 = np.maximum(y1[best], y1[rest])
        xx2 = np.minimum(x2[best], x2[rest])
        yy2 = np.minimum(y2[best], y2[rest])
        w = np.maximum(np.float32(0.0), xx2 - xx1 + offset)
        h = np.maximum(np.float32(0.0), yy2 - yy1 + offset)
        inter = w * h
        overlap = inter / (areas[best] + areas[rest] - inter)
        order = rest[overlap <= iou]
    return keep


def reference_decode(
    outputs: Sequence[RawOutput],
    letterbox: Letterbox,
    score_threshold: float = 0.5,
    nms_iou: float = 0.4,
) -> Detections:
    input_width, input_height = letterbox.dst_width, letterbox.dst_height
    grids = {s: (input_height // s, input_width // s) for s in STRIDES}
    by_stride: dict[int, dict[str, npt.NDArray[np.float32]]] = {s: {} for s in STRIDES}
    for output in outputs:
        kind, rows = per_anchor_rows(dequantized(output))
        stride = next(s for s, (gh, gw) in grids.items() if rows.shape[0] == gh * gw * ANCHORS_PER_CELL)
        by_stride[stride][kind] = rows

    all_scores, all_boxes, all_kps = [], [], []
    for stride in STRIDES:
        maps = by_stride[stride]
        centres = anchor_centres(*grids[stride], stride)
        scores = maps["score"][:, 0]
        distances = maps["bbox"] * stride
        boxes = np.stack(
            [
                centres[:, 0] - distances[:, 0],
                centres[:, 1] - distances[:, 1],
                centres[:, 0] + distances[:, 2],
                centres[:, 1] + distances[:, 3],
            ],
            axis=-1,
        )
        kps_distances = maps["kps"] * stride
        kps = np.empty_like(kps_distances)
        for k in range(10):
            kps[:, k] = centres[:, k % 2] + kps_distances[:, k]
        selected = scores >= score_threshold
        all_scores.append(scores[selected])
        all_boxes.append(boxes[selected])
        all_kps.append(kps[selected])

    scores = np.concatenate(all_scores)
    boxes = np.concatenate(all_boxes)
    kps = np.concatenate(all_kps)
    # Back to source pixels: the image occupies resized_width x resized_height at the input's top-left.
    scale_x = letterbox.resized_width / letterbox.src_width
    scale_y = letterbox.resized_height / letterbox.src_height
    boxes[:, 0::2] /= scale_x
    boxes[:, 1::2] /= scale_y
    kps[:, 0::2] /= scale_x
    kps[:, 1::2] /= scale_y

    keep = greedy_nms(boxes, scores, nms_iou)
    return Detections(
        boxes=boxes[keep].astype(np.float32),
        scores=scores[keep].astype(np.float32),
        landmarks=kps[keep].reshape(-1, 5, 2).astype(np.float32),
        landmark_names=SCRFD_LANDMARKS,
    )
