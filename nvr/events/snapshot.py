"""Face snapshots: a JPEG crop of the best face with a margin, and the ArcFace-aligned 112x112 crop.

The frame image is only valid while its frame is being handled (it may be a reused shared-memory slot), so
`capture` copies the small region around a face right away; encoding happens later, only for the crops that
are actually published.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from nvr.contracts.alignment import ARCFACE_SIZE, align_face
from nvr.contracts.arrays import FloatArray, RgbImage
from nvr.events.config import SnapshotConfig


@dataclass(frozen=True, slots=True)
class FaceCrop:
    """A copy of the image region around one face, with its landmarks in the crop's pixels."""

    pixels: RgbImage  # h x w x 3, owned (not a view into the frame)
    landmarks: FloatArray  # (K, 2)
    landmark_names: tuple[str, ...]
    snapshot_region: tuple[
        int, int, int, int
    ]  # left, top, right, bottom of the JPEG snapshot within `pixels`

    @property
    def snapshot_pixels(self) -> RgbImage:
        left, top, right, bottom = self.snapshot_region
        return self.pixels[top:bottom, left:right]


def _region(
    box: tuple[float, float, float, float], margin: float, width: int, height: int
) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    pad_x, pad_y = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int(np.floor(x1 - pad_x))), max(0, int(np.floor(y1 - pad_y)))
    right, bottom = min(width, int(np.ceil(x2 + pad_x))), min(height, int(np.ceil(y2 + pad_y)))
    return left, top, right, bottom


def crop_face(
    image: RgbImage,
    scale: float,
    box: FloatArray,
    landmarks: FloatArray,
    landmark_names: tuple[str, ...],
    *,
    margin: float,
    copy_margin: float | None = None,
) -> FaceCrop | None:
    """Copy the region of `image` around `box` (frame pixels; `scale` maps them to image pixels).

    The snapshot keeps `margin` around the box; `copy_margin` (at least `margin`) is what is copied, so an
    aligned crop, which needs more context than a tight snapshot, can be cut from the same copy later.
    """
    scaled = (float(box[0]) * scale, float(box[1]) * scale, float(box[2]) * scale, float(box[3]) * scale)
    height, width = image.shape[0], image.shape[1]
    left, top, right, bottom = _region(scaled, max(margin, copy_margin or 0.0), width, height)
    inner = _region(scaled, margin, width, height)
    if inner[2] - inner[0] < 2 or inner[3] - inner[1] < 2:
        return None  # the face lies outside the snapshot image
    points = landmarks.astype(np.float32) * np.float32(scale) - np.array([left, top], np.float32)
    snapshot_region = (inner[0] - left, inner[1] - top, inner[2] - left, inner[3] - top)
    return FaceCrop(image[top:bottom, left:right].copy(), points, landmark_names, snapshot_region)


def encode_jpeg(pixels: RgbImage, max_size: int, quality: int) -> bytes:
    """JPEG of `pixels`, downscaled (never upscaled) so that its longest side is at most `max_size`."""
    img = Image.fromarray(pixels, "RGB")
    longest = max(img.width, img.height)
    if longest > max_size:
        factor = max_size / longest
        size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


# Context an aligned crop needs around the detector's box: the template puts the eyes at a third of the crop.
ALIGN_MARGIN = 0.35


class SnapshotMaker:
    """Applies the snapshot settings: what to copy from a frame, and how to encode it."""

    def __init__(self, config: SnapshotConfig, keep_aligned: bool = False) -> None:
        self.config = config
        self._copy_margin = ALIGN_MARGIN if config.aligned or keep_aligned else None

    def capture(
        self, image: RgbImage, scale: float, box: FloatArray, landmarks: FloatArray, names: tuple[str, ...]
    ) -> FaceCrop | None:
        if not self.config.enabled:
            return None
        return crop_face(
            image, scale, box, landmarks, names, margin=self.config.margin, copy_margin=self._copy_margin
        )

    def encode(self, crop: FaceCrop) -> bytes:
        return encode_jpeg(crop.snapshot_pixels, self.config.max_size, self.config.quality)

    def encode_aligned(self, crop: FaceCrop) -> bytes | None:
        if not self.config.aligned:
            return None
        aligned = align_face(crop.pixels, crop.landmarks, crop.landmark_names)
        return None if aligned is None else encode_jpeg(aligned, ARCFACE_SIZE, self.config.quality)
