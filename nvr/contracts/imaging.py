"""The one resizer: still images and decoded video frames go through the same swscale call.

Using PyAV's scaler (bilinear) for both means `nvr detect` on a frame sees the same model input as the
daemon does, and no Python pixel loop is ever involved.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps, UnidentifiedImageError

from nvr.contracts.arrays import RgbImage
from nvr.contracts.geometry import Letterbox
from nvr.errors import InputFileError


def load_rgb(path: str | Path) -> RgbImage:
    """Read an image file as an RGB array, honouring EXIF orientation."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            upright = ImageOps.exif_transpose(img)
            return np.asarray(upright.convert("RGB"))
    except FileNotFoundError:
        raise InputFileError(f"{path}: no such image file") from None
    except IsADirectoryError:
        raise InputFileError(f"{path}: is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable image ({exc})") from None


def letterbox_into(
    frame: av.VideoFrame | RgbImage,
    out: RgbImage,
    letterbox: Letterbox | None = None,
    reformatter: VideoReformatter | None = None,
    interpolation: str = "BILINEAR",
) -> Letterbox:
    """Resize `frame` into the top-left of `out` (H x W x 3 uint8), aspect kept, zero padding elsewhere.

    `frame` is a decoded `av.VideoFrame` in any pixel format, or an RGB array. `out` is written in place
    (a model input buffer or a shared-memory slot), so nothing is allocated here beyond swscale's output.
    A video loop passes one `reformatter` per output size so swscale's context is set up once, not per
    frame; the scaling is the same either way. Model inputs always use the default bilinear filter (what
    stills and frames must share); `interpolation="AREA"` is for pictures no model sees (event
    snapshots), where it is cheaper when shrinking a large frame and no worse to look at.
    """
    if isinstance(frame, np.ndarray):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
    dst_height, dst_width = out.shape[0], out.shape[1]
    if letterbox is None:
        letterbox = Letterbox.fit(frame.width, frame.height, dst_width, dst_height)
    if reformatter is None:
        reformatter = VideoReformatter()  # what VideoFrame.reformat does on each call
    resized = reformatter.reformat(
        frame,
        width=letterbox.resized_width,
        height=letterbox.resized_height,
        format="rgb24",
        interpolation=interpolation,
    )
    out[: letterbox.resized_height, : letterbox.resized_width] = resized.to_ndarray()
    if letterbox.resized_height < dst_height:
        out[letterbox.resized_height :] = 0
    if letterbox.resized_width < dst_width:
        out[: letterbox.resized_height, letterbox.resized_width :] = 0
    return letterbox
