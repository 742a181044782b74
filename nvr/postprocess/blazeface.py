"""BlazeFace postprocessing, as MediaPipe's face-detection graph does it.

MediaPipe's models (and the PyTorch port's exports) output `regressors` (N, 16) and `classificators` (N, 1)
over N SSD anchors. Per anchor: box centre, width and height, then 6 keypoints, all in input pixels relative
to the anchor centre (MediaPipe: `x_scale = y_scale = w_scale = h_scale = input size`, `reverse_output_order`,
`fixed_anchor_size`). Scores are logits, clipped to ±100 before the sigmoid. Overlapping boxes are merged by
weighted (blending) non-maximum suppression: each cluster's box and keypoints are the score-weighted mean of
its members, its score that of its best member.

Anchors are generated from the SSD anchor options in MediaPipe's graphs (`SsdAnchorsCalculator`) for each
model; the model is recognised from its input size and anchor count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from nvr.contracts.arrays import FloatArray
from nvr.contracts.faces import BLAZEFACE_LANDMARKS, Detections
from nvr.contracts.geometry import Letterbox
from nvr.contracts.tensors import RawOutput
from nvr.errors import ModelError
from nvr.postprocess.nms import nms

NUM_COORDS = 16  # 4 box values + 6 keypoints × (x, y)
NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0  # MediaPipe's score_clipping_thresh
MIN_SUPPRESSION_IOU = 0.3  # MediaPipe's min_suppression_threshold for face detection


@dataclass(frozen=True, slots=True)
class SsdAnchorOptions:
    """The fields of MediaPipe's SsdAnchorsCalculatorOptions that BlazeFace's graphs set."""

    input_size: int
    strides: tuple[int, ...]
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True

    @property
    def num_layers(self) -> int:
        return len(self.strides)


# MediaPipe's face_detection graphs. The back-camera model (the port's 256×256 weights) has the short-range
# layout at twice the strides, so its normalised anchors are the same 896.
SHORT_RANGE = SsdAnchorOptions(input_size=128, strides=(8, 16, 16, 16))
BACK_CAMERA = SsdAnchorOptions(input_size=256, strides=(16, 32, 32, 32))
FULL_RANGE = SsdAnchorOptions(input_size=192, strides=(4,), interpolated_scale_aspect_ratio=0.0)
KNOWN_MODELS = (SHORT_RANGE, BACK_CAMERA, FULL_RANGE)


def _layer_scale(options: SsdAnchorOptions, layer: int) -> float:
    if options.num_layers == 1:
        return (options.min_scale + options.max_scale) * 0.5
    return options.min_scale + (options.max_scale - options.min_scale) * layer / (options.num_layers - 1)


def generate_anchors(options: SsdAnchorOptions) -> FloatArray:
    """Anchors (N, 4) as normalised (x_centre, y_centre, width, height), in the models' output order.

    Consecutive layers with the same stride share one feature map; every cell of it gets one anchor per
    (layer, aspect ratio), plus one interpolated-scale anchor per layer when that option is set.
    """
    groups: list[FloatArray] = []
    layer = 0
    while layer < options.num_layers:
        stride = options.strides[layer]
        sizes: list[tuple[float, float]] = []  # (width, height) per anchor of a cell
        last = layer
        while last < options.num_layers and options.strides[last] == stride:
            scale = _layer_scale(options, last)
            for ratio in options.aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if options.interpolated_scale_aspect_ratio > 0.0:
                next_scale = 1.0 if last == options.num_layers - 1 else _layer_scale(options, last + 1)
                interpolated = math.sqrt(scale * next_scale)
                ratio = options.interpolated_scale_aspect_ratio
                sizes.append((interpolated * math.sqrt(ratio), interpolated / math.sqrt(ratio)))
            last += 1
        cells = math.ceil(options.input_size / stride)
        centres = (np.arange(cells, dtype=np.float64) + options.anchor_offset) / cells
        cy, cx = np.meshgrid(centres, centres, indexing="ij")  # row-major cells: y outer, x inner
        per_cell = len(sizes)
        group = np.empty((cells, cells, per_cell, 4), np.float64)
        group[..., 0] = cx[..., None]
        group[..., 1] = cy[..., None]
        if options.fixed_anchor_size:
            group[..., 2:] = 1.0
        else:
            group[..., 2:] = np.asarray(sizes, np.float64)
        groups.append(group.reshape(-1, 4).astype(np.float32))
        layer = last
    return np.concatenate(groups)


def anchor_options_for(input_width: int, input_height: int, num_anchors: int) -> SsdAnchorOptions:
    """The anchor layout of the BlazeFace model with this (square) input size and anchor count."""
    for options in KNOWN_MODELS:
        if input_width == input_height == options.input_size and _anchor_count(options) == num_anchors:
            return options
    known = ", ".join(f"{o.input_size}x{o.input_size} with {_anchor_count(o)} anchors" for o in KNOWN_MODELS)
    raise ModelError(
        f"no BlazeFace anchor layout for a {input_width}x{input_height} input with {num_anchors} anchors "
        f"(known: {known})"
    )


def _anchor_count(options: SsdAnchorOptions) -> int:
    per_cell = len(options.aspect_ratios) + (options.interpolated_scale_aspect_ratio > 0.0)
    return sum(math.ceil(options.input_size / stride) ** 2 * per_cell for stride in options.strides)


def blazeface_anchor_count(shapes: Sequence[Sequence[int | str | None]]) -> int | None:
    """The anchor count N if a model's output shapes are BlazeFace's, (…, N, 16) + (…, N, 1); else None.

    Dimensions of 1 and dynamic ones (names, None) are ignored, so batched and unbatched exports match.
    """
    fixed = sorted(tuple(d for d in shape if isinstance(d, int) and d != 1) for shape in shapes)
    for options in KNOWN_MODELS:
        n = _anchor_count(options)
        if fixed == [(n,), (n, NUM_COORDS)]:
            return n
    return None


def weighted_nms(
    boxes: FloatArray, scores: FloatArray, keypoints: FloatArray, iou_threshold: float = MIN_SUPPRESSION_IOU
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MediaPipe's WEIGHTED non-maximum suppression on candidates already above the score threshold.

    MediaPipe takes the best remaining candidate, gathers every remaining one overlapping it by IoU above
    `iou_threshold`, and outputs the cluster's score-weighted mean box and keypoints with the best score.
    The cluster leaders are exactly greedy NMS's kept boxes, and each candidate belongs to the best-ranked
    leader it overlaps (the one whose turn removes it), so both steps are vectorised: no loop per face.
    """
    leaders = nms(boxes, scores, iou_threshold)  # best first
    lead = boxes[leaders]
    # IoU of every candidate with every leader, in the same float32 arithmetic as `nms`.
    inter_w = np.minimum(boxes[:, None, 2], lead[:, 2]) - np.maximum(boxes[:, None, 0], lead[:, 0])
    inter_h = np.minimum(boxes[:, None, 3], lead[:, 3]) - np.maximum(boxes[:, None, 1], lead[:, 1])
    inter = np.maximum(inter_w, np.float32(0.0)) * np.maximum(inter_h, np.float32(0.0))
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes: 0/0 overlaps nothing
        overlaps = inter / (areas[:, None] + areas[leaders] - inter) > iou_threshold
    overlaps[leaders, np.arange(leaders.size)] = True  # a leader always leads its own cluster
    cluster = overlaps.argmax(axis=1)  # first True: the best-ranked leader overlapping the candidate
    weights = np.zeros(overlaps.shape, np.float32)
    # Floored: a score that underflowed to 0 (threshold 0) still weighs, so no cluster sums to 0/0.
    weights[np.arange(len(scores)), cluster] = np.maximum(scores, np.float32(1e-30))
    weights[~overlaps.any(axis=1)] = 0.0  # unreachable with nms's own arithmetic; never misattribute
    weights /= weights.sum(axis=0)
    merged_boxes = weights.T @ boxes
    merged_points = (weights.T @ keypoints.reshape(len(scores), -1)).reshape(-1, NUM_KEYPOINTS, 2)
    return merged_boxes.astype(np.float32), scores[leaders], merged_points.astype(np.float32)


class BlazeFacePostprocessor:
    """Decodes one image's BlazeFace outputs into faces in source-image pixels."""

    landmark_names = BLAZEFACE_LANDMARKS

    def __init__(
        self,
        input_width: int,
        input_height: int,
        score_threshold: float = 0.5,
        num_anchors: int = 896,
        iou_threshold: float = MIN_SUPPRESSION_IOU,
    ) -> None:
        self.input_width = input_width
        self.input_height = input_height
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.options = anchor_options_for(input_width, input_height, num_anchors)
        anchors = generate_anchors(self.options)
        # MediaPipe decodes offset / scale * anchor size + anchor centre in input-relative units, with
        # scale = input size: in input pixels that is offset * anchor size + centre in pixels.
        self._centres = anchors[:, :2] * np.asarray([input_width, input_height], np.float32)
        self._unit = anchors[:, 2:]  # (N, 2) anchor width, height relative to the input (1 when fixed)

    @property
    def score_threshold(self) -> float:
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, score_threshold: float) -> None:
        # Set again by the detection stage on a reload: the logit threshold must follow.
        self._score_threshold = score_threshold
        # sigmoid(clip(x)) >= t  <=>  x >= logit(t): threshold on the raw logits, decode only survivors.
        # Clipping makes every logit below -100 score as -100, and none score above +100.
        logit = math.log(score_threshold / (1.0 - score_threshold)) if 0.0 < score_threshold < 1.0 else 0.0
        if score_threshold <= 0.0 or logit <= -SCORE_CLIP:
            self._logit_threshold = -math.inf
        elif score_threshold >= 1.0:
            self._logit_threshold = math.inf
        else:
            self._logit_threshold = min(logit, SCORE_CLIP)

    @property
    def num_anchors(self) -> int:
        return int(self._centres.shape[0])

    def _split(self, outputs: Sequence[RawOutput]) -> tuple[RawOutput, RawOutput]:
        """Find the regressors and the scores by shape (names differ between exports)."""
        regressors = [o for o in outputs if o.data.shape[-1] == NUM_COORDS]
        scores = [o for o in outputs if o.data.shape[-1] == 1]
        if len(regressors) != 1 or len(scores) != 1:
            found = ", ".join(f"{o.name} {tuple(o.data.shape)}" for o in outputs)
            raise ModelError(f"expected BlazeFace outputs (N, 16) and (N, 1), got {found}")
        for output in (regressors[0], scores[0]):
            if output.data.size // output.data.shape[-1] != self.num_anchors:
                raise ModelError(
                    f"BlazeFace output {output.name} {tuple(output.data.shape)} does not match "
                    f"{self.num_anchors} anchors"
                )
        return regressors[0], scores[0]

    def decode(self, outputs: Sequence[RawOutput], letterbox: Letterbox) -> Detections:
        regressors, logits = self._split(outputs)
        raw_scores: npt.NDArray[Any] = logits.data.reshape(-1)  # float, or integer when quantized
        if logits.quant is None:
            keep = np.flatnonzero(raw_scores >= self._logit_threshold)
            candidate_logits = raw_scores[keep].astype(np.float32)
        else:
            # Threshold in the quantized domain (scale > 0 keeps the order); dequantize only survivors.
            quant = logits.quant
            q_threshold = self._logit_threshold / float(quant.scale.reshape(-1)[0]) + float(
                quant.zero_point.reshape(-1)[0]
            )
            keep = np.flatnonzero(raw_scores >= q_threshold)
            candidate_logits = quant.dequantize(raw_scores[keep][:, None])[:, 0]
        if keep.size == 0:
            return Detections.empty(BLAZEFACE_LANDMARKS)
        rows = regressors.data.reshape(-1, NUM_COORDS)[keep]
        raw = rows.astype(np.float32) if regressors.quant is None else regressors.quant.dequantize(rows)
        clipped = np.clip(candidate_logits, -SCORE_CLIP, SCORE_CLIP).astype(np.float32)
        scores = (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)

        # Offsets are in input pixels times the anchor's relative size; centres are anchor centres.
        unit = self._unit[keep]  # (M, 2)
        centres = self._centres[keep]  # (M, 2)
        xy = raw.reshape(-1, NUM_COORDS // 2, 2) * unit[:, None, :]  # (M, 8, 2): centre, size, 6 points
        centre = xy[:, 0] + centres
        half = xy[:, 1] * 0.5
        boxes = np.concatenate((centre - half, centre + half), axis=1)
        keypoints = xy[:, 2:] + centres[:, None, :]

        boxes, scores, keypoints = weighted_nms(boxes, scores, keypoints, self.iou_threshold)
        letterbox.points_to_source(boxes)
        letterbox.points_to_source(keypoints.reshape(len(scores), -1))
        return Detections(boxes, scores, keypoints, BLAZEFACE_LANDMARKS)
