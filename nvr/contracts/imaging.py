"""The one resizer: stills and decoded video frames become model inputs through the same code.

Model inputs are resized with OpenCV's INTER_LINEAR — half-pixel centres, two taps per axis, no low-pass
filter when shrinking — because that is how SCRFD was trained and evaluated (insightface resizes with
`cv2.resize`); a smoothing resampler (swscale's or Pillow's bilinear) costs hard-face AP. OpenCV itself does
it: the same pixels as the published pipeline, bit for bit, and cheaper than the numpy two-tap resize we
measured (see docs/accuracy.md). A video frame is first converted to RGB at its own size by swscale (colour
only, no scaling); `nvr detect` on a still and the daemon on a frame therefore see the same model input.

Pictures no model sees (event snapshots) may use swscale's filters in one pass (`Resizer("AREA")`): cheaper
when shrinking a large frame and nicer to look at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageOps, UnidentifiedImageError

from nvr.contracts.arrays import RgbImage
from nvr.contracts.geometry import Letterbox
from nvr.errors import InputFileError

Filter = Literal["LINEAR", "AREA", "BILINEAR"]  # LINEAR: INTER_LINEAR (model inputs); others: swscale's


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


def resize_linear(image: RgbImage, width: int, height: int) -> RgbImage:
    """`image` resized to `width` x `height` with INTER_LINEAR (what model inputs get)."""
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), np.uint8)


class Resizer:
    """Letterboxes pictures into buffers with one filter, keeping what is costly to set up between calls.

    A video loop keeps one `Resizer` per output (model input, snapshot) so swscale's context is made once
    per stream size, not per frame; the pixels are the same either way.
    """

    def __init__(self, method: Filter = "LINEAR") -> None:
        self.method: Filter = method
        self._reformatter = VideoReformatter()

    def letterbox_into(
        self, frame: av.VideoFrame | RgbImage, out: RgbImage, letterbox: Letterbox | None = None
    ) -> Letterbox:
        """Resize `frame` into the top-left of `out` (H x W x 3 uint8), aspect kept, zero padding elsewhere.

        `frame` is a decoded `av.VideoFrame` in any pixel format, or an RGB array. `out` is written in place
        (a model input buffer or a shared-memory slot).
        """
        dst_height, dst_width = out.shape[0], out.shape[1]
        if letterbox is None:
            if isinstance(frame, av.VideoFrame):
                src_width, src_height = frame.width, frame.height
            else:
                src_width, src_height = frame.shape[1], frame.shape[0]
            letterbox = Letterbox.fit(src_width, src_height, dst_width, dst_height)
        width, height = letterbox.resized_width, letterbox.resized_height
        target = out[:height, :width]
        if self.method == "LINEAR":
            self._linear_into(frame, target)
        else:
            self._swscale_into(frame, target)
        if height < dst_height:
            out[height:] = 0
        if width < dst_width:
            out[:height, width:] = 0
        return letterbox

    def _linear_into(self, frame: av.VideoFrame | RgbImage, target: RgbImage) -> None:
        rgb: RgbImage
        if isinstance(frame, av.VideoFrame):
            if frame.format.name != "rgb24":
                frame = self._reformatter.reformat(frame, format="rgb24")  # colour only, same size
            rgb = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
        else:
            rgb = frame
        if rgb.shape == target.shape:  # e.g. a 640x360 sub-stream into a 640x640 input: nothing to resize
            target[...] = rgb
        else:
            target[...] = resize_linear(rgb, target.shape[1], target.shape[0])

    def _swscale_into(self, frame: av.VideoFrame | RgbImage, target: RgbImage) -> None:
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        resized = self._reformatter.reformat(
            frame, width=target.shape[1], height=target.shape[0], format="rgb24", interpolation=self.method
        )
        target[...] = resized.to_ndarray()


def letterbox_into(
    frame: av.VideoFrame | RgbImage,
    out: RgbImage,
    letterbox: Letterbox | None = None,
    resizer: Resizer | None = None,
) -> Letterbox:
    """`Resizer.letterbox_into` with a model-input (INTER_LINEAR) resizer unless one is given."""
    return (resizer or Resizer()).letterbox_into(frame, out, letterbox)
