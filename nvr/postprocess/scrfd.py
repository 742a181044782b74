"""SCRFD (insightface, Hailo Model Zoo) postprocessing: raw score/box/keypoint maps in, faces out.

Outputs are recognised by shape only, never by name, so every export works: Hailo HEFs give (H, W, C)
maps with C = 2 scores, 8 box distances, 20 keypoint offsets (2 anchors per cell); ONNX exports give
(N, K) or (1, N, K) with K = 1, 4, 10 and N = 2·H·W. The grid size gives the stride (8, 16, 32).
Anchor order is row-major (y, x, anchor) in both, anchor centres are (x·s, y·s), distances are in units
of the stride.

On quantized outputs the score threshold is applied to the integers (the smallest code whose dequantized
value passes, found with the very arithmetic of `QuantInfo.dequantize`, so the survivors are exactly
those of dequantize-then-compare), and only the survivors' boxes and keypoints are dequantized, each
output with its own scale and zero-point: through a table of every code's value (256 entries for uint8),
built once per output. The survivors of all strides are gathered into one block of rows, so mapping to
source pixels and NMS are one pass over few rows. Everything derived from the outputs' layout and
quantization is worked out on the first frame and reused while they stay the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from nvr.contracts.faces import SCRFD_LANDMARKS, Detections
from nvr.contracts.geometry import Letterbox
from nvr.contracts.tensors import QuantInfo, RawOutput
from nvr.errors import ModelError
from nvr.postprocess.nms import INSIGHTFACE_PIXEL_OFFSET, nms

STRIDES: tuple[int, ...] = (8, 16, 32)
ANCHORS_PER_CELL = 2
NUM_LANDMARKS = len(SCRFD_LANDMARKS)
# Values per anchor of each kind of output: score, box distances (l, t, r, b), landmark offsets (x, y)·5.
ROLES: dict[str, int] = {"score": 1, "box": 4, "keypoints": 2 * NUM_LANDMARKS}
_ROLE_BY_ANCHOR_VALUES = {k: role for role, k in ROLES.items()}
_ROLE_BY_CHANNELS = {ANCHORS_PER_CELL * k: role for role, k in ROLES.items()}


@dataclass(frozen=True, slots=True)
class _Output:
    """How to read one output: its anchor rows, and how to turn their raw values into real ones."""

    index: int
    channels: int  # size of the last axis as delivered (A·K for maps, K for flat outputs)
    per_anchor: int  # K
    # Per-tensor quantization: every code's real value, so decoding is one lookup.
    table: npt.NDArray[np.float32] | None = None
    # Per-feature quantization, broadcast to (anchor slot, K) for maps or (K,) for flat outputs.
    scale: npt.NDArray[np.float32] | None = None
    zero_point: npt.NDArray[np.float32] | None = None

    def values(
        self, data: npt.NDArray[np.generic], rows: npt.NDArray[np.intp], out: npt.NDArray[np.float32]
    ) -> None:
        """Real values of the selected anchor rows into `out`, (k, K).

        Bit for bit what dequantizing everything would give: (q as float32 - zero_point) * scale, in
        float32 (the table holds exactly those values). The caller applies the stride to whole rows:
        multiplying into this strided `out` would cost twice as much as assigning.
        """
        picked = data.reshape(-1, self.per_anchor)[rows]
        if self.table is not None:
            out[...] = self.table[picked]
        elif self.scale is None or self.zero_point is None:  # float output
            out[...] = picked
        else:
            scale, zero_point = self.scale, self.zero_point
            if scale.ndim == 2:  # per-feature map: each anchor slot of a cell has its own parameters
                slot = rows % ANCHORS_PER_CELL
                scale, zero_point = scale[slot], zero_point[slot]
            np.subtract(picked, zero_point, out=out, dtype=np.float32)
            out *= scale


@dataclass(frozen=True, slots=True)
class _ScoreGate:
    """The score threshold for one score output, in that output's own domain."""

    # 0-d for one value (a 0-d array compares faster than a scalar), or one per channel of the last axis.
    minimum: npt.NDArray[np.generic]
    possible: npt.NDArray[np.bool_] | None  # channels where some code passes; None when all can
    uniform: bool  # one threshold, passable, for every channel: a single comparison does


@dataclass(frozen=True, slots=True)
class _Level:
    """One stride's outputs, score threshold, anchor centres and score mask buffer."""

    stride: int
    score: _Output
    box: _Output
    keypoints: _Output
    gate: _ScoreGate
    centres: npt.NDArray[np.float32]  # (anchors, 14): x, y repeated for each point of a decoded row
    # Turns a decoded row's values into input pixels: the stride, negated for the left and top distances
    # so every point is its anchor centre plus its value (c + -(d·s) is exactly c - d·s).
    scales: npt.NDArray[np.float32]  # (14,)
    mask: npt.NDArray[np.bool_]  # (anchors,), rewritten every frame


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything derived from the outputs' shapes, dtypes and quantization; reused while they repeat."""

    shapes: tuple[tuple[tuple[int, ...], np.dtype[np.generic]], ...]
    quants: tuple[QuantInfo | None, ...]  # checked against each frame's: identity first, then value
    levels: tuple[_Level, ...]  # strides 8, 16, 32


class ScrfdPostprocessor:
    """Decodes SCRFD outputs (any export: HEF maps or ONNX tensors) into faces in source pixels.

    It keeps work buffers between frames, so use one instance per thread.
    """

    landmark_names = SCRFD_LANDMARKS

    def __init__(
        self,
        input_width: int = 640,
        input_height: int = 640,
        score_threshold: float = 0.5,
        nms_iou: float = 0.4,
        max_faces: int | None = None,
    ) -> None:
        if input_width <= 0 or input_height <= 0:
            raise ValueError(f"input size must be positive, got {input_width}x{input_height}")
        if not 0.0 <= nms_iou <= 1.0:
            raise ValueError(f"NMS IoU threshold must be in [0, 1], got {nms_iou}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {max_faces}")
        self.input_width = input_width
        self.input_height = input_height
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_faces = max_faces
        self._grids = {s: (math.ceil(input_height / s), math.ceil(input_width / s)) for s in STRIDES}
        self._centres = {s: _anchor_centres(gh, gw, s) for s, (gh, gw) in self._grids.items()}
        capacity = sum(c.shape[0] for c in self._centres.values())
        # Work buffers for the surviving anchors of all strides; results are copied out of them. Each row
        # of points ends up as x1, y1, x2, y2 and the landmarks' x, y: one letterbox mapping for them all.
        self._scores = np.empty((capacity, 1), np.float32)
        self._points = np.empty((capacity, 4 + 2 * NUM_LANDMARKS), np.float32)
        self._masks = {s: np.empty(c.shape[0], np.bool_) for s, c in self._centres.items()}
        self._plan: _Plan | None = None
        self._plan_threshold = self.score_threshold
        self._letterbox: Letterbox | None = None
        self._factors = np.ones(self._points.shape[1], np.float32)

    def decode(self, outputs: Sequence[RawOutput], letterbox: Letterbox) -> Detections:
        if (letterbox.dst_width, letterbox.dst_height) != (self.input_width, self.input_height):
            raise ValueError(
                f"letterbox is for a {letterbox.dst_width}x{letterbox.dst_height} input, "
                f"this postprocessor for {self.input_width}x{self.input_height}"
            )
        plan = self._plan_for(outputs)
        count = 0
        for level in plan.levels:
            score_map = outputs[level.score.index].data
            gate = level.gate
            if gate.uniform:  # the usual case: one comparison in the output's own dtype
                np.greater_equal(score_map.reshape(level.mask.shape), gate.minimum, out=level.mask)
                survivors = level.mask.nonzero()[0]
            else:
                survivors = _survivors_by_channel(score_map, level)
            end = count + survivors.shape[0]
            if end == count:
                continue
            # Rows of distances l, t, r, b and landmark offsets, in strides, become input-pixel points.
            level.score.values(score_map, survivors, out=self._scores[count:end])
            rows = self._points[count:end]
            level.box.values(outputs[level.box.index].data, survivors, out=rows[:, :4])
            level.keypoints.values(outputs[level.keypoints.index].data, survivors, out=rows[:, 4:])
            rows *= level.scales
            rows += level.centres[survivors]
            count = end
        if count == 0:
            return Detections.empty(self.landmark_names)

        points, scores = self._points[:count], self._scores[:count, 0]
        points *= self._to_source(letterbox)
        keep = nms(points[:, :4], scores, self.nms_iou, pixel_offset=INSIGHTFACE_PIXEL_OFFSET)
        if self.max_faces is not None:
            keep = keep[: self.max_faces]
        kept = points[keep]
        return Detections(
            boxes=kept[:, :4],
            scores=scores[keep],
            landmarks=kept[:, 4:].reshape(-1, NUM_LANDMARKS, 2),
            landmark_names=self.landmark_names,
        )

    def _to_source(self, letterbox: Letterbox) -> npt.NDArray[np.float32]:
        """Per-column factors of a points row that map it to source pixels, as the letterbox does."""
        if letterbox is not self._letterbox and letterbox != self._letterbox:
            factors = np.ones((1, self._points.shape[1]), np.float32)
            letterbox.points_to_source(factors)
            self._letterbox, self._factors = letterbox, factors[0]
        return self._factors

    def _plan_for(self, outputs: Sequence[RawOutput]) -> _Plan:
        plan = self._plan
        same_threshold = self._plan_threshold == self.score_threshold
        if plan is not None and same_threshold and len(outputs) == len(plan.quants):
            for output, quant, (shape, dtype) in zip(outputs, plan.quants, plan.shapes, strict=True):
                data = output.data
                if data.shape != shape or data.dtype != dtype or not _same_quant(output.quant, quant):
                    break
            else:
                return plan
        plan = self._make_plan(outputs)
        self._plan, self._plan_threshold = plan, self.score_threshold
        return plan

    def _make_plan(self, outputs: Sequence[RawOutput]) -> _Plan:
        shapes = [tuple(o.data.shape) for o in outputs]
        expected = (
            f"expected {3 * len(STRIDES)} SCRFD outputs (score/box/keypoints for strides "
            + ", ".join(str(s) for s in STRIDES)
            + ")"
        )
        found: dict[tuple[str, int], _Output] = {}
        for index, output in enumerate(outputs):
            role_stride = self._identify(output.data.shape)
            if role_stride is None:
                raise ModelError(
                    f"SCRFD output {output.name!r} has shape {tuple(output.data.shape)}: not a score, box or "
                    f"keypoint map of a {self.input_width}x{self.input_height} input ({expected}, "
                    f"got shapes {shapes})"
                )
            role, stride = role_stride
            if (role, stride) in found:
                other = outputs[found[role, stride].index].name
                raise ModelError(
                    f"two SCRFD {role} outputs for stride {stride}: {other!r} and {output.name!r} "
                    f"({expected}, got {len(outputs)} with shapes {shapes})"
                )
            found[role, stride] = self._describe(index, output, role)
        missing = [f"{role} for stride {s}" for s in STRIDES for role in ROLES if (role, s) not in found]
        if missing:
            raise ModelError(
                f"{expected}, got {len(outputs)} with shapes {shapes}; missing: {', '.join(missing)}"
            )
        levels = []
        for s in STRIDES:
            score = found["score", s]
            gate = _score_gate(outputs[score.index], score, self.score_threshold)
            centres, mask = self._centres[s], self._masks[s]
            scales = np.full(self._points.shape[1], s, np.float32)
            scales[:2] *= -1
            box, keypoints = found["box", s], found["keypoints", s]
            levels.append(_Level(s, score, box, keypoints, gate, centres, scales, mask))
        return _Plan(
            shapes=tuple((tuple(o.data.shape), o.data.dtype) for o in outputs),
            quants=tuple(o.quant for o in outputs),
            levels=tuple(levels),
        )

    def _identify(self, shape: tuple[int, ...]) -> tuple[str, int] | None:
        """(role, stride) of an output from its shape alone, or None if it is not an SCRFD output."""
        dims = tuple(shape)
        # Flat ONNX tensors: (N, K) or (1, N, K) with N = anchors per cell x grid cells.
        if len(dims) == 2 or (len(dims) == 3 and dims[0] == 1 and dims[-1] in _ROLE_BY_ANCHOR_VALUES):
            role = _ROLE_BY_ANCHOR_VALUES.get(dims[-1])
            for stride, (gh, gw) in self._grids.items():
                if role is not None and dims[-2] == ANCHORS_PER_CELL * gh * gw:
                    return role, stride
            return None
        # Maps: (H, W, C) or (1, H, W, C), with the anchors of a cell side by side in C.
        if len(dims) == 3 or (len(dims) == 4 and dims[0] == 1):
            role = _ROLE_BY_CHANNELS.get(dims[-1])
            for stride, grid in self._grids.items():
                if role is not None and dims[-3:-1] == grid:
                    return role, stride
        return None

    @staticmethod
    def _describe(index: int, output: RawOutput, role: str) -> _Output:
        per_anchor = ROLES[role]
        channels = int(output.data.shape[-1])
        dtype = output.data.dtype
        quant = output.quant
        if quant is None:
            if not np.issubdtype(dtype, np.floating):
                raise ModelError(f"SCRFD output {output.name!r} is {dtype} without quantization parameters")
            return _Output(index, channels, per_anchor)
        if not np.issubdtype(dtype, np.integer):
            raise ModelError(f"SCRFD output {output.name!r} is {dtype} but has quantization parameters")
        if quant.scale.size not in (1, channels) or quant.zero_point.size not in (1, channels):
            raise ModelError(
                f"SCRFD output {output.name!r} has {quant.scale.size} quantization scales "
                f"for {channels} features"
            )
        if not np.all(quant.scale > 0):
            raise ModelError(f"SCRFD output {output.name!r} has a non-positive quantization scale")
        if quant.scale.size == 1 and quant.zero_point.size == 1 and dtype.kind == "u" and dtype.itemsize <= 2:
            top = np.iinfo(cast("np.dtype[np.unsignedinteger[Any]]", dtype)).max
            codes = np.arange(top + 1).astype(dtype)
            single = QuantInfo(quant.scale.reshape(()), quant.zero_point.reshape(()))
            return _Output(index, channels, per_anchor, table=single.dequantize(codes))
        # (channels,) -> (anchor slot, value): channel c of a map is slot c // K, value c % K.
        scale = np.broadcast_to(quant.scale, (channels,)).reshape(-1, per_anchor)
        zero_point = np.broadcast_to(quant.zero_point, (channels,)).reshape(-1, per_anchor)
        if scale.shape[0] == 1:
            scale, zero_point = scale[0], zero_point[0]
        return _Output(index, channels, per_anchor, scale=scale, zero_point=zero_point)


def _survivors_by_channel(scores: npt.NDArray[np.generic], level: _Level) -> npt.NDArray[np.intp]:
    """Anchor rows passing a per-channel threshold (per-feature quantization), channels that cannot pass
    excluded."""
    gate, channels = level.gate, level.score.channels
    if gate.possible is not None and not gate.possible.any():
        return np.zeros(0, np.intp)
    by_channel = level.mask.reshape(-1, channels)
    np.greater_equal(scores.reshape(by_channel.shape), gate.minimum, out=by_channel)
    if gate.possible is not None:
        by_channel[:, ~gate.possible] = False
    return np.flatnonzero(level.mask)


def _same_quant(new: QuantInfo | None, old: QuantInfo | None) -> bool:
    """The same parameters: by identity (a backend hands over its HEF's objects), else by value."""
    if new is old:
        return True
    return (
        new is not None
        and old is not None
        and np.array_equal(new.scale, old.scale)
        and np.array_equal(new.zero_point, old.zero_point)
    )


def _anchor_centres(grid_height: int, grid_width: int, stride: int) -> npt.NDArray[np.float32]:
    """(grid cells x anchors, 14) centres (x·s, y·s), row-major, each repeated for the cell's anchors.

    Each row repeats its centre for the 7 points (2 box corners, 5 landmarks) of a decoded row, so
    adding centres is one contiguous addition (about 1 MB at 640x640 for all strides).
    """
    xs = np.arange(grid_width, dtype=np.float32) * np.float32(stride)
    ys = np.arange(grid_height, dtype=np.float32) * np.float32(stride)
    centres = np.empty((grid_height, grid_width, ANCHORS_PER_CELL, 2), np.float32)
    centres[..., 0] = xs[None, :, None]
    centres[..., 1] = ys[:, None, None]
    return np.tile(centres.reshape(-1, 2), 2 + NUM_LANDMARKS)


def _score_gate(output: RawOutput, score: _Output, threshold: float) -> _ScoreGate:
    """The threshold as the smallest passing value per channel, in the output's dtype."""
    data = output.data
    quant = output.quant
    if quant is None:
        return _ScoreGate(np.array(threshold, data.dtype), None, uniform=True)
    info = np.iinfo(cast("np.dtype[np.integer[Any]]", data.dtype))
    codes = np.arange(info.min, info.max + 1, dtype=np.int64).astype(data.dtype)
    # Every code dequantized exactly as QuantInfo.dequantize would (feature axis last), then compared.
    scale = np.broadcast_to(quant.scale, (score.channels,))
    zero_point = np.broadcast_to(quant.zero_point, (score.channels,))
    real = QuantInfo(scale, zero_point).dequantize(codes[:, None])  # (codes, channels)
    passes: npt.NDArray[np.bool_] = real >= threshold
    possible: npt.NDArray[np.bool_] = np.logical_or.reduce(passes, axis=0)
    # Dequantization is monotonic (positive scale), so passing codes are exactly those >= the first.
    minimum = codes[np.where(possible, passes.argmax(axis=0), 0)]
    if bool(np.all(minimum == minimum[0])) and bool(np.all(possible == possible[0])):
        if possible[0]:
            return _ScoreGate(minimum[0, ...], None, uniform=True)
        return _ScoreGate(minimum[0, ...], possible[:1], uniform=False)  # nothing can pass
    return _ScoreGate(minimum, None if possible.all() else possible, uniform=False)
