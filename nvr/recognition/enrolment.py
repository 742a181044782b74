"""From detected faces to library samples and matches: alignment from the original pixels, crops, embedding.

Shared by `nvr faces`, `nvr eval faces` and the daemon's recognition stage, so all of them align, encode
and embed a face the same way.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Protocol

import numpy as np
from PIL import Image

from nvr.contracts.alignment import ARCFACE_SIZE, align_face
from nvr.contracts.arrays import FloatArray, RgbImage, UInt8Array
from nvr.contracts.faces import Detections, Face
from nvr.recognition.library import FaceLibrary
from nvr.recognition.matcher import DEFAULT_MARGIN, Matcher

# A face smaller than this (shorter box side, source pixels) is not enrolled: too little detail to trust.
MIN_ENROL_SIZE = 40
CROP_QUALITY = 95


class FaceEmbedder(Protocol):
    """What recognition needs of an embedder (CPU: nvr.families.arcface.Embedder; Hailo: its engine's)."""

    model_id: str
    dim: int

    def embed(self, aligned: UInt8Array) -> FloatArray:
        """uint8 [N, 112, 112, 3] RGB ArcFace-aligned faces -> float32 [N, D], L2-normalised."""
        ...


def align(image: RgbImage, face: Face, names: tuple[str, ...]) -> RgbImage | None:
    """The face cut from `image` (the original, full-resolution pixels) and aligned to 112x112."""
    return align_face(image, np.asarray(face.landmarks, np.float32), names)


def largest(detections: Detections) -> Face | None:
    faces = list(detections)
    return max(faces, key=lambda face: face.area) if faces else None


def too_small(face: Face) -> bool:
    x1, y1, x2, y2 = face.box
    return min(x2 - x1, y2 - y1) < MIN_ENROL_SIZE


class PhotoRefusedError(ValueError):
    """Why a photo gives no sample (no face, face too small, landmarks that cannot be aligned); the caller
    names the photo."""


class DetectsFaces(Protocol):
    def detect(self, image: RgbImage) -> Detections: ...


def enrolment_face(detector: DetectsFaces, image: RgbImage) -> RgbImage:
    """The aligned crop of the image's largest face: what `nvr faces add` and a web upload enrol."""
    detections = detector.detect(image)
    face = largest(detections)
    if face is None:
        raise PhotoRefusedError("no face found")
    if too_small(face):
        x1, y1, x2, y2 = face.box
        raise PhotoRefusedError(
            f"face too small to trust ({x2 - x1:.0f}x{y2 - y1:.0f} px; at least {MIN_ENROL_SIZE} px a side)"
        )
    aligned = align(image, face, detections.landmark_names)
    if aligned is None:
        raise PhotoRefusedError("the face's landmarks cannot be aligned")
    return aligned


def encode_crop(aligned: RgbImage) -> bytes:
    out = io.BytesIO()
    Image.fromarray(aligned, "RGB").save(out, "JPEG", quality=CROP_QUALITY)
    return out.getvalue()


def decode_crop(jpeg: bytes) -> RgbImage:
    with Image.open(io.BytesIO(jpeg)) as image:
        pixels = np.asarray(image.convert("RGB"))
    if pixels.shape != (ARCFACE_SIZE, ARCFACE_SIZE, 3):
        # An older or foreign crop: bring it to the embedder's input size.
        pixels = np.asarray(
            Image.fromarray(pixels).resize((ARCFACE_SIZE, ARCFACE_SIZE), Image.Resampling.BILINEAR)
        )
    return pixels


def sync_embeddings(
    library: FaceLibrary,
    embedder: FaceEmbedder,
    on_progress: Callable[[int, int], None] | None = None,
    batch: int = 16,
) -> int:
    """Embed, from their stored crops, the samples that have no embedding of `embedder`'s model yet (after
    a model switch, or samples enrolled by another model). Returns how many were embedded."""
    missing = library.samples_missing(embedder.model_id)
    for start in range(0, len(missing), batch):
        chunk = missing[start : start + batch]
        crops = np.stack([decode_crop(library.sample_crop(sample.id)) for sample in chunk])
        for sample, vector in zip(chunk, embedder.embed(crops), strict=True):
            library.set_embedding(sample.id, embedder.model_id, vector)
        if on_progress is not None:
            on_progress(start + len(chunk), len(missing))
    return len(missing)


def load_matcher(
    library: FaceLibrary, model_id: str, *, threshold: float, margin: float = DEFAULT_MARGIN
) -> Matcher:
    """A matcher over the library's current embeddings of `model_id`."""
    embeddings, owners = library.embedding_matrix(model_id)
    names = {person.id: person.name for person in library.people()}
    return Matcher(embeddings, owners, names, model_id, threshold=threshold, margin=margin)
