"""Images in and out of the web UI: uploads decoded and checked before anything uses them, thumbnails
made once and cached."""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP

import numpy as np
from PIL import Image, ImageOps

from nvr.contracts.arrays import RgbImage
from nvr.web.http import HttpError

MAX_PIXELS = 40_000_000  # a 40-megapixel photo is the largest we decode (decompression bombs stop here)
THUMBNAIL_SIDE = 192


@dataclass(frozen=True, slots=True)
class UploadedFile:
    filename: str  # as the browser sent it: shown in messages only, never used as a path
    data: bytes


def parse_multipart(
    content_type: str | None, body: bytes, max_files: int
) -> tuple[dict[str, str], list[UploadedFile]]:
    """The text fields and files of a multipart/form-data body; HttpError for anything else or too many
    files."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise HttpError(415, "send the photos as multipart/form-data")
    header = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise HttpError(400, "malformed multipart body")
    fields: dict[str, str] = {}
    files: list[UploadedFile] = []
    for part in message.iter_parts():
        filename = part.get_filename()
        if filename is None:
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str) and name not in fields and len(fields) < 10:
                value = part.get_payload(decode=True)
                fields[name] = value.decode("utf-8", "replace")[:1000] if isinstance(value, bytes) else ""
            continue
        if len(files) >= max_files:
            raise HttpError(413, f"too many photos in one upload: at most {max_files}")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        files.append(UploadedFile(_display_name(filename), data))
    if not files:
        raise HttpError(400, "no photo in the upload (use a form field of type file)")
    return fields, files


def _display_name(filename: str) -> str:
    # Only the last path component, printable, bounded: it is shown back to the user, nothing more.
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:120]
    return name or "photo"


def decode_photo(data: bytes) -> RgbImage:
    """The photo as RGB pixels; ValueError with a user-facing reason when it is not a usable image."""
    if not data:
        raise ValueError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"):
                    raise ValueError(f"{image.format or 'this'} files are not accepted: use JPEG or PNG")
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ValueError(f"the image is too large ({width}x{height} pixels)")
                image.load()
                pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))  # phones rotate by EXIF
    except ValueError:
        raise
    except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning, SyntaxError):
        raise ValueError("not an image (or a damaged one): use a JPEG or PNG photo") from None
    return np.ascontiguousarray(pixels)


def make_thumbnail(jpeg: bytes, side: int = THUMBNAIL_SIDE, quality: int = 80) -> bytes:
    """A JPEG no larger than `side` on its longest side (never upscaled)."""
    with Image.open(io.BytesIO(jpeg)) as original:
        image = original.convert("RGB")
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


class ThumbnailCache:
    """Thumbnails by key, made once: an LRU bounded in total bytes (shared by every request thread)."""

    def __init__(self, max_bytes: int = 16 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.made = 0  # thumbnails computed (a hit costs none)

    def get(self, key: Hashable, source: Callable[[], bytes | None]) -> bytes | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        original = source()
        if original is None:
            return None
        try:
            thumbnail = make_thumbnail(original)
        except (OSError, ValueError):
            return None
        with self._lock:
            if key not in self._items:
                self.made += 1
                self._items[key] = thumbnail
                self._bytes += len(thumbnail)
                while self._bytes > self._max_bytes and self._items:
                    _, dropped = self._items.popitem(last=False)
                    self._bytes -= len(dropped)
        return thumbnail
