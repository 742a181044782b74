"""Precision-recall curves as a PNG, drawn with Pillow (no plotting library on a Pi)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nvr.evaluation.protocol import EvaluationResult

COLOURS = {"easy": (31, 119, 180), "medium": (44, 160, 44), "hard": (214, 39, 40)}
WIDTH, HEIGHT = 800, 640
LEFT, RIGHT, TOP, BOTTOM = 80, 30, 50, 70  # margins around the plot area


def save_pr_curves(result: EvaluationResult, path: Path, title: str) -> Path:
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=16)
    small = ImageFont.load_default(size=13)
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM

    def to_px(recall: float, precision: float) -> tuple[float, float]:
        return x0 + recall * (x1 - x0), y1 - precision * (y1 - y0)

    for tick in np.linspace(0.0, 1.0, 11):
        gx, gy = to_px(float(tick), float(tick))
        draw.line([(gx, y0), (gx, y1)], fill=(225, 225, 225))
        draw.line([(x0, gy), (x1, gy)], fill=(225, 225, 225))
        draw.text((gx, y1 + 6), f"{tick:.1f}", fill="black", font=small, anchor="mt")
        draw.text((x0 - 8, gy), f"{tick:.1f}", fill="black", font=small, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline="black")
    draw.text(((x0 + x1) / 2, HEIGHT - 22), "recall", fill="black", font=font, anchor="mm")
    # The y label reads bottom to top: draw it on its own strip, rotate, paste.
    label = Image.new("RGB", (120, 24), "white")
    ImageDraw.Draw(label).text((60, 12), "precision", fill="black", font=font, anchor="mm")
    rotated = label.rotate(90, expand=True)
    image.paste(rotated, (8, int((y0 + y1) / 2 - rotated.height / 2)))
    draw.text(((x0 + x1) / 2, 22), title, fill="black", font=font, anchor="mm")

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
