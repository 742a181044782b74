"""Greedy non-maximum suppression, exact and vectorized, for any detector.

The result is exactly that of the classic greedy loop (take the best remaining box, drop every remaining
box whose IoU with it exceeds the threshold, repeat), including its float32 arithmetic and its
tie-breaking (equal scores keep their input order), but without a Python iteration per kept box:

1. Only pairs that can overlap by more than the threshold are examined: all pairs for a few boxes, else
   those found by a sweep along one axis and pruned along the other, so the work follows the number of
   neighbours rather than N².
2. The exact IoU of those pairs gives the suppression edges "higher-ranked box → lower-ranked box".
3. Greedy NMS on that graph is resolved in rounds: a box is kept once every box that could suppress it
   is suppressed, and suppressed once any box that suppresses it is kept. Each round settles at least
   the best unsettled box; in practice a frame needs a handful of rounds (the depth of suppression
   chains).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from nvr.contracts.arrays import FloatArray, IndexArray

# insightface (and the original R-CNN code) measure widths as x2 - x1 + 1; SCRFD's reference NMS does.
INSIGHTFACE_PIXEL_OFFSET = 1.0

# Up to this many boxes, an IoU matrix costs less than sweeping for candidate pairs.
_DENSE_MAX = 64
_ZEROS = np.zeros(2 * _DENSE_MAX**2, np.float32)  # clamping against an array is faster than a scalar
_EVERY = np.ones(_DENSE_MAX, np.bool_)  # "all kept", the fixed-point iteration's start
_EVERY.flags.writeable = False
# Candidate pairs examined at once: keeps temporaries small enough to be reused, not page-faulted.
_CHUNK_PAIRS = 8192
_AXIS_CHOICE_MIN = 1024
_UNSETTLED, _KEPT, _SUPPRESSED = 0, 1, 2


def nms(
    boxes: FloatArray, scores: FloatArray, iou_threshold: float, *, pixel_offset: float = 0.0
) -> IndexArray:
    """Indices of the boxes kept by greedy NMS, best score first.

    `boxes` is (N, 4) float32 x1, y1, x2, y2; a box is suppressed by a better-scored kept box when their
    IoU is strictly above `iou_threshold` (in [0, 1]). `pixel_offset` is added to widths and heights
    (1.0 for insightface's convention, 0.0 for continuous coordinates). Equal scores rank by index.
    One deliberate difference from the classic loop: a pair whose IoU is undefined (0/0, two empty
    boxes) never suppresses, where the loop's `iou <= threshold` test would drop the second box.
    """
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"NMS IoU threshold must be in [0, 1], got {iou_threshold}")
    count = scores.shape[0]
    order = (-scores).argsort(kind="stable")
    if count <= 1:
        return order
    # Per-coordinate contiguous rows in rank order: element r of each is the box ranked r.
    ranked = boxes.T.take(order, axis=1)
    if ranked.dtype != np.float32:
        ranked = ranked.astype(np.float32)
    offset = np.float32(pixel_offset)
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes give 0/0: never suppressing
        if count <= _DENSE_MAX:
            return order[_dense_keep(ranked, offset, iou_threshold)]  # boolean mask
        x1, y1, x2, y2 = ranked
        sides = ranked[2:] - ranked[:2]
        sides += offset
        areas = sides[0] * sides[1]
        winners: list[IndexArray] = []
        losers: list[IndexArray] = []
        for first, second in _candidate_pairs(ranked, pixel_offset, iou_threshold):
            # The same float32 expression as the greedy loop, so edges (and results) are bit-identical.
            inter_w = np.minimum(x2[first], x2[second]) - np.maximum(x1[first], x1[second]) + offset
            inter_h = np.minimum(y2[first], y2[second]) - np.maximum(y1[first], y1[second]) + offset
            inter = np.maximum(np.float32(0.0), inter_w) * np.maximum(np.float32(0.0), inter_h)
            suppressing = inter / (areas[first] + areas[second] - inter) > iou_threshold
            a, b = first[suppressing], second[suppressing]
            winners.append(np.minimum(a, b))
            losers.append(np.maximum(a, b))
    if not winners:
        return order
    return order[_settle(np.concatenate(winners), np.concatenate(losers), count)]


def _dense_keep(ranked: FloatArray, offset: np.float32, iou_threshold: float) -> npt.NDArray[np.bool_]:
    """Which ranks of a few boxes, `ranked` (4, N) in rank order, greedy NMS keeps: IoU matrix, fixed point.

    Every step is one numpy call on the whole (N, N) matrix: for a few dozen boxes the time goes into
    calls, not arithmetic, so there are as few as possible.
    """
    count = ranked.shape[1]
    # min(x2) - max(x1) + offset, exactly as the greedy loop computes it, for both axes and all pairs.
    sides = np.minimum(ranked[2:, :, None], ranked[2:, None, :])
    sides -= np.maximum(ranked[:2, :, None], ranked[:2, None, :])
    sides += offset
    own = sides.diagonal(axis1=1, axis2=2)  # a box with itself: its own width and height
    areas = own[0] * own[1]
    np.maximum(sides, _ZEROS[: sides.size].reshape(sides.shape), out=sides)
    inter = sides[0] * sides[1]
    union = np.add.outer(areas, areas)
    union -= inter
    np.divide(inter, union, out=inter)
    suppresses = inter > _suppression_thresholds(iou_threshold, count)
    # Greedy keeps exactly the boxes no kept box suppresses. Iterating that rule from "all kept" settles
    # at least one more rank each time, and takes two or three iterations in practice. The iterates
    # alternate between supersets and subsets of the answer, each nested in the one before, so equal
    # counts mean equal sets: the fixed point.
    kept = _EVERY[:count]
    while True:
        suppressed = kept @ suppresses  # boolean matmul: suppressed by some kept box
        if np.count_nonzero(suppressed) + np.count_nonzero(kept) == count:
            return kept
        kept = ~suppressed


@functools.lru_cache(maxsize=256)
def _suppression_thresholds(iou_threshold: float, count: int) -> FloatArray:
    """(count, count): `iou_threshold` where rank i can suppress rank j (i < j), +inf where it cannot."""
    thresholds = np.full((count, count), np.inf, np.float32)
    upper = np.triu_indices(count, 1)
    thresholds[upper] = iou_threshold
    thresholds.flags.writeable = False
    return thresholds


def _candidate_pairs(
    ranked: FloatArray, pixel_offset: float, iou_threshold: float
) -> Iterator[tuple[IndexArray, IndexArray]]:
    """Chunks of pairs (i, j), i != j, that may have IoU > threshold: a superset, found without N² work.

    IoU > t needs an overlap longer than t times each box's own extent along both axes (the
    intersection is at most the smaller box, the union at least the larger), so a sweep along one
    axis finds every such pair, and the other axis prunes them before the exact IoU is computed.
    Pairs come in bounded chunks: large temporaries cost page faults on every frame.
    """
    count = ranked.shape[1]
    lows = ranked[:2]  # (axis, box)
    extents = np.maximum(ranked[2:] - lows + np.float32(pixel_offset), np.float32(0.0))
    # Float32 rounding in the IoU must never make a pair the sweep skipped count: widen every bound.
    margin = np.float32(1e-5 * (3.0 * float(np.abs(ranked).max()) + pixel_offset) + 1e-6)
    shrink = np.float32(iou_threshold * (1.0 - 1e-4))
    reaches = lows + extents * (np.float32(1.0) - shrink) + margin  # a partner must start before this
    # Sweep along the axis that yields fewer candidate pairs (x for a row of faces, y for a column);
    # for a few hundred boxes either will do.
    sweeps = []
    for axis in (0, 1) if count >= _AXIS_CHOICE_MIN else (0,):
        by_low = np.argsort(lows[axis], kind="stable")
        ends = np.searchsorted(lows[axis, by_low], reaches[axis, by_low], side="left")
        counts = np.maximum(ends - np.arange(1, count + 1), 0)
        sweeps.append((int(counts.sum()), axis, by_low, counts))
    total, axis, by_low, counts = min(sweeps, key=lambda sweep: sweep[0])
    if total == 0:
        return
    # The other axis, in sweep order: start, end, and the overlap a pair needs there.
    low = lows[1 - axis, by_low]
    high = low + extents[1 - axis, by_low]
    needs = extents[1 - axis, by_low] * shrink - margin
    pairs_before = np.cumsum(counts) - counts
    # Pair k of sweep position p is (p, p + 1 + k - pairs_before[p]); positions fill chunks in turn.
    partner_shift = np.arange(1, count + 1) - pairs_before
    bounds = [0]
    if total > _CHUNK_PAIRS:
        bounds = (np.searchsorted(pairs_before, np.arange(0, total, _CHUNK_PAIRS), side="right") - 1).tolist()
    pending: list[tuple[IndexArray, IndexArray]] = []
    pending_size = 0
    for start, stop in zip(bounds, [*bounds[1:], count], strict=True):
        chunk = counts[start:stop]
        size = int(chunk.sum())
        if size == 0:  # also when one position alone has more pairs than a chunk: the next takes it
            continue
        p = np.repeat(np.arange(start, stop), chunk)
        q = np.arange(pairs_before[start], pairs_before[start] + size)
        q += np.repeat(partner_shift[start:stop], chunk)
        overlap = np.minimum(high[p], high[q])
        overlap -= np.maximum(low[p], low[q])
        close = overlap > np.maximum(needs[p], needs[q])
        pending.append((by_low[p[close]], by_low[q[close]]))
        pending_size += pending[-1][0].shape[0]
        if pending_size >= _CHUNK_PAIRS:
            yield _joined(pending)
            pending, pending_size = [], 0
    if pending:
        yield _joined(pending)


def _joined(pairs: list[tuple[IndexArray, IndexArray]]) -> tuple[IndexArray, IndexArray]:
    if len(pairs) == 1:
        return pairs[0]
    return np.concatenate([first for first, _ in pairs]), np.concatenate([second for _, second in pairs])


def _settle(winner: IndexArray, loser: IndexArray, count: int) -> IndexArray:
    """Ranks kept by greedy NMS given edges winner → loser (winner ranks before loser)."""
    state = np.full(count, _UNSETTLED, np.int8)
    # Boxes nobody can suppress are kept outright; only the contested ones go through rounds.
    state[np.bincount(loser, minlength=count) == 0] = _KEPT
    while True:
        # Only edges into unsettled boxes from boxes not yet suppressed can still decide anything.
        live = (state[loser] == _UNSETTLED) & (state[winner] != _SUPPRESSED)
        winner, loser = winner[live], loser[live]
        if loser.size == 0:
            break
        # Suppressed by any kept winner; kept once no winner is left that is kept or unsettled.
        state[loser[state[winner] == _KEPT]] = _SUPPRESSED
        blocked = np.zeros(count, np.bool_)
        blocked[loser] = True
        state[(state == _UNSETTLED) & ~blocked] = _KEPT
    state[state == _UNSETTLED] = _KEPT
    return np.flatnonzero(state == _KEPT)
