"""Annotated images a person can look at: boxes, labels and landmarks drawn on a copy of the image.

Reused by every command with `--draw` (`nvr detect`, and `nvr faces identify`, which labels faces with
names). Lines and labels grow with the image, so they stay readable on a 3000-pixel photo viewed scaled to a
screen as on a 640-pixel frame; labels sit on a filled tag above the box (inside it at the top edge).
The copy keeps the input's format (a .png stays a .png) and is never written over the input.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections

Colour = tuple[int, int, int]
BOX_COLOUR: Colour = (0, 230, 0)
# One colour per landmark index, so left/right mix-ups are visible at a glance.
LANDMARK_COLOURS: tuple[Colour, ...] = (
    (0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 128, 255), (255, 128, 0), (128, 255, 0),
)  # fmt: skip
# Formats Pillow writes that we keep; anything else (a .gif, a .tif) becomes a .png.
KEPT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}


def drawing_scale(width: int, height: int) -> tuple[int, int]:
    """(line width, label font size) in pixels for an image: about 1/500 and 1/60 of its longer side."""
    longest = max(width, height)
    return max(2, round(longest / 500)), max(12, round(longest / 60))


def draw_faces(
    image: RgbImage,
    detections: Detections,
    labels: Sequence[str] | None = None,
    colours: Sequence[Colour] | None = None,
) -> Image.Image:
    """A copy of `image` with each face's box, label and landmarks.

    `labels` (one per face) default to the detector's scores; `nvr faces identify` passes names. `colours`
    (one per face) default to green, e.g. to tell known people from strangers.
    """
    canvas = Image.fromarray(image).convert("RGB")
    pen = ImageDraw.Draw(canvas)
    line, font_size = drawing_scale(canvas.width, canvas.height)
    font = ImageFont.load_default(size=font_size)
    for index, face in enumerate(detections):
        colour = colours[index] if colours is not None else BOX_COLOUR
        x1, y1, x2, y2 = (float(v) for v in face.box)
        pen.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        label = labels[index] if labels is not None else f"{face.score:.2f}"
        _tag(pen, font, label, (x1, y1), colour=colour, line=line)
        radius = max(line * 0.75, (x2 - x1) / 40)
        for point, (x, y) in enumerate(face.landmarks):
            dot = LANDMARK_COLOURS[point % len(LANDMARK_COLOURS)]
            pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=dot)
    return canvas


def _tag(
    pen: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, text: str,
    corner: tuple[float, float], *, colour: Colour, line: int,
) -> None:  # fmt: skip
    """`text` in black on a filled tag of `colour` sitting on the box's top-left corner."""
    x, y = corner
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    pad = max(2, line)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    tag_top = y - height if y - height >= 0 else y  # above the box, or inside it at the image's top
    tag_left = max(0.0, x - line / 2)
    pen.rectangle((tag_left, tag_top, tag_left + width, tag_top + height), fill=colour)
    pen.text((tag_left + pad - left, tag_top + pad - top), text, fill=(0, 0, 0), font=font)


def drawing_path(out_dir: Path, source: Path) -> Path:
    """Where the drawing of `source` goes: same name and format in `out_dir`, never the source itself."""
    suffix = source.suffix.lower() if source.suffix.lower() in KEPT_FORMATS else ".png"
    target = out_dir / f"{source.stem}{suffix}"
    if target.resolve() == source.resolve():
        target = out_dir / f"{source.stem}.faces{suffix}"
    return target


def save_drawing(canvas: Image.Image, out_dir: Path, source: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = drawing_path(out_dir, source)
    image_format = KEPT_FORMATS[target.suffix]
    options = {"quality": 92} if image_format in ("JPEG", "WEBP") else {}
    canvas.save(target, image_format, **options)
    return target


def save_annotated(
    image: RgbImage,
    detections: Detections,
    out_dir: Path,
    source: Path,
    *,
    labels: Sequence[str] | None = None,
    colours: Sequence[Colour] | None = None,
) -> Path:
    """Draw and save in one call; returns the path written (for the command to print)."""
    return save_drawing(draw_faces(image, detections, labels, colours), out_dir, source)


UNKNOWN_COLOUR: Colour = (255, 70, 70)


def save_identified(
    image: RgbImage,
    detections: Detections,
    labels: Sequence[tuple[str, float]],
    out_dir: Path,
    source: Path,
) -> Path:
    """Like `save_annotated`, each face labelled with its name (or "unknown") and match score; strangers
    in red. Used by `nvr faces identify --draw`."""
    texts = [f"{name} {score:.2f}" for name, score in labels]
    colours = [UNKNOWN_COLOUR if name == "unknown" else BOX_COLOUR for name, _ in labels]
    return save_annotated(image, detections, out_dir, source, labels=texts, colours=colours)
