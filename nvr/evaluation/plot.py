"""Precision-recall curves as a PNG, drawn with Pillow (no plotting library on a Pi)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from nvr.evaluation.protocol import EvaluationResult

COLOURS = {"easy": (31, 119, 180), "medium": (44, 160, 44), "hard": (214, 39, 40)}
WIDTH, HEIGHT = 800, 640
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 50, 70  # margins around the plot area


Canvas = tuple[Image.Image, ImageDraw.ImageDraw, Callable[[float, float], tuple[float, float]]]


ROC_MIN_FAR = 0.001
LINEAR_TICKS = [(float(t), f"{t:.1f}") for t in np.linspace(0.0, 1.0, 11)]


def _axes(
    title: str,
    x_label: str,
    y_label: str,
    x_scale: Callable[[float], float] = float,
    x_ticks: list[tuple[float, str]] | None = None,
) -> Canvas:
    """A white canvas with a unit square plot area, grid, tick labels, axis labels and a title; and the map
    from (x, y) to pixels. y runs over [0, 1]; x is placed at `x_scale(x)` in [0, 1] (linear by default)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=13)
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM

    def to_px(x: float, y: float) -> tuple[float, float]:
        return x0 + x_scale(x) * (x1 - x0), y1 - y * (y1 - y0)

    for tick, text in x_ticks or LINEAR_TICKS:
        gx, _ = to_px(tick, 0.0)
        draw.line([(gx, y0), (gx, y1)], fill=(225, 225, 225))
        draw.text((gx, y1 + 6), text, fill="black", font=small, anchor="mt")
    for tick, text in LINEAR_TICKS:
        _, gy = to_px(0.0, tick)
        draw.line([(x0, gy), (x1, gy)], fill=(225, 225, 225))
        draw.text((x0 - 8, gy), text, fill="black", font=small, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline="black")
    draw.text(((x0 + x1) / 2, HEIGHT - 22), x_label, fill="black", font=font, anchor="mm")
    # The y label reads bottom to top: draw it on its own strip, rotate, paste.
    label = Image.new("RGB", (220, 24), "white")
    ImageDraw.Draw(label).text((110, 12), y_label, fill="black", font=font, anchor="mm")
    rotated = label.rotate(90, expand=True)
    image.paste(rotated, (8, int((y0 + y1) / 2 - rotated.height / 2)))
    draw.text(((x0 + x1) / 2, 22), title, fill="black", font=font, anchor="mm")
    return image, draw, to_px


def save_pr_curves(result: EvaluationResult, path: Path, title: str) -> Path:
    image, draw, to_px = _axes(title, "recall", "precision")
    font = ImageFont.load_default(size=16)
    x0, y1 = LEFT, HEIGHT - BOTTOM

    for row, (setting, curve) in enumerate(result.settings.items()):
        colour = COLOURS.get(setting, (0, 0, 0))
        valid = np.isfinite(curve.precision) & np.isfinite(curve.recall)
        recall, precision = curve.recall[valid].tolist(), curve.precision[valid].tolist()
        points = [to_px(r, p) for r, p in zip(recall, precision, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3)
        ap = "n/a" if np.isnan(curve.ap) else f"{curve.ap * 100:.2f}"
        legend_y = y1 - 24 - 22 * (len(result.settings) - 1 - row)
        draw.line([(x0 + 16, legend_y), (x0 + 44, legend_y)], fill=colour, width=3)
        draw.text(
            (x0 + 52, legend_y),
            f"{setting}: AP {ap} ({curve.face_count} faces)",
            fill="black",
            font=font,
            anchor="lm",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def save_roc(
    far: npt.NDArray[np.float32], tar: npt.NDArray[np.float32], marks: list[tuple[float, float, str]],
    path: Path, title: str,
) -> Path:  # fmt: skip
    """A ROC curve (false-accept rate across on a log scale from 0.1 %, true-accept rate up) with labelled
    operating points: the low false-accept rates are where a threshold is chosen."""

    def log_far(far: float) -> float:
        clamped = min(max(far, ROC_MIN_FAR), 1.0)
        return (math.log10(clamped) - math.log10(ROC_MIN_FAR)) / -math.log10(ROC_MIN_FAR)

    ticks = [(0.001, "0.1 %"), (0.01, "1 %"), (0.1, "10 %"), (1.0, "100 %")]
    image, draw, to_px = _axes(
        title, "false-accept rate (impostor pairs; 0 drawn at the left edge)", "true-accept rate",
        x_scale=log_far, x_ticks=ticks,
    )  # fmt: skip
    font = ImageFont.load_default(size=14)
    points = [to_px(float(x), float(y)) for x, y in zip(far, tar, strict=True)]
    if len(points) > 1:
        draw.line(points, fill=COLOURS["easy"], width=3)
    for row, (x, y, text) in enumerate(marks):
        px, py = to_px(x, y)
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], outline=COLOURS["hard"], width=2)
        # Labels stacked below their points: operating points often sit close together.
        draw.text((px + 10, py + 6 + 20 * row), text, fill="black", font=font, anchor="lt")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
