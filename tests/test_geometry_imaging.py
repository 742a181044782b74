"""Letterbox geometry and the one resizer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from nvr.contracts.geometry import Letterbox
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.errors import ExitCode, InputFileError


@pytest.mark.parametrize(
    ("src", "dst", "resized"),
    [
        ((1280, 886), (640, 640), (640, 443)),  # wide: width fills
        ((360, 640), (640, 640), (360, 640)),  # tall: height fills
        ((640, 640), (640, 640), (640, 640)),
        ((2048, 1150), (640, 640), (640, 359)),  # int() truncation, as insightface
        ((100, 50), (640, 480), (640, 320)),  # upscale into a non-square input
        ((1, 5000), (640, 640), (1, 640)),  # never a zero-sized image
    ],
)
def test_letterbox_fit(src: tuple[int, int], dst: tuple[int, int], resized: tuple[int, int]) -> None:
    lb = Letterbox.fit(*src, *dst)
    assert (lb.resized_width, lb.resized_height) == resized
    assert lb.resized_width <= dst[0] and lb.resized_height <= dst[1]


def test_letterbox_round_trip() -> None:
    lb = Letterbox.fit(1280, 886, 640, 640)
    points = np.array([[0, 0, 640, 443, 320.5, 100.25]], np.float32)
    original = points.copy()
    lb.points_to_source(points)
    np.testing.assert_allclose(points[0, :4], [0, 0, 1280, 886], rtol=1e-6)
    lb.points_to_input(points)
    np.testing.assert_allclose(points, original, rtol=1e-6)


def test_letterbox_rejects_empty() -> None:
    with pytest.raises(ValueError, match="positive"):
        Letterbox.fit(0, 10, 640, 640)


def test_letterbox_into_pads_bottom_right(asset: Callable[[str], Path]) -> None:
    image = load_rgb(asset("images/insightface_t1.jpg"))
    out = np.full((640, 640, 3), 77, np.uint8)  # stale content must be overwritten by zero padding
    lb = letterbox_into(image, out)
    assert (lb.resized_width, lb.resized_height) == (640, 443)
    assert not out[443:].any()
    assert out[:443].mean() > 40  # the photo is there
    # Downscaled by 2: the content matches a 2x2 box average closely (bilinear swscale anti-aliases).
    box_mean = image[:886, :1280].reshape(443, 2, 640, 2, 3).mean(axis=(1, 3))
    assert np.abs(out[:443].astype(np.float32) - box_mean).mean() < 3.0


def test_video_frame_and_array_take_the_same_path() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    from_array = np.empty((320, 320, 3), np.uint8)
    from_frame = np.empty((320, 320, 3), np.uint8)
    letterbox_into(rgb, from_array)
    letterbox_into(av.VideoFrame.from_ndarray(rgb, format="rgb24"), from_frame)
    np.testing.assert_array_equal(from_array, from_frame)


def test_load_rgb_errors_name_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00not an image at all")
    for path, needle in ((garbage, "not a readable image"), (tmp_path / "nope.png", "no such image file")):
        with pytest.raises(InputFileError) as caught:
            load_rgb(path)
        assert str(path) in caught.value.message and needle in caught.value.message
        assert "\n" not in caught.value.message
        assert caught.value.exit_code == ExitCode.INPUT


def test_load_rgb_converts_grey_and_alpha(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("LA", (8, 4), (200, 100)).save(tmp_path / "grey.png")
    image = load_rgb(tmp_path / "grey.png")
    assert image.shape == (4, 8, 3) and image.dtype == np.uint8 and (image == 200).all()
