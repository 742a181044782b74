"""Annotated images a person can look at: boxes, scores and landmarks drawn on a copy of the image."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections

# One colour per landmark index, so left/right mix-ups are visible at a glance.
LANDMARK_COLOURS = ((0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 128, 255), (255, 128, 0), (128, 255, 0))


def draw_detections(image: RgbImage, detections: Detections) -> Image.Image:
    canvas = Image.fromarray(image).convert("RGB")
    pen = ImageDraw.Draw(canvas)
    line = max(1, round(min(canvas.size) / 400))
    for face in detections:
        x1, y1, x2, y2 = face.box
        pen.rectangle((x1, y1, x2, y2), outline=(0, 255, 0), width=line)
        pen.text((x1, max(0.0, y1 - 12)), f"{face.score:.2f}", fill=(0, 255, 0))
        radius = max(1.5, (x2 - x1) / 40)
        for index, (x, y) in enumerate(face.landmarks):
            colour = LANDMARK_COLOURS[index % len(LANDMARK_COLOURS)]
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    return canvas


def save_annotated(image: RgbImage, detections: Detections, out_dir: Path, source: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}.jpg"
    draw_detections(image, detections).save(target, quality=90)
    return target


def save_identified(
    image: RgbImage,
    detections: Detections,
    labels: list[tuple[str, float]],
    out_dir: Path,
    source: Path,
) -> Path:
    """Like `save_annotated`, with each face's name (or "unknown") and match score above its box."""
    canvas = draw_detections(image, detections)
    pen = ImageDraw.Draw(canvas)
    for face, (name, score) in zip(detections, labels, strict=True):
        x1, _, _, y2 = face.box
        colour = (255, 64, 64) if name == "unknown" else (64, 255, 64)
        pen.text((x1, y2 + 2), f"{name} {score:.2f}", fill=colour)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{source.stem}.jpg"
    canvas.save(target, quality=90)
    return target
