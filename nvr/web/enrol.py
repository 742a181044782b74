"""Enrolling uploaded photos: the checks of `nvr faces add` (largest face, big enough, alignable), then the
aligned crops and their embeddings go into the library for one person in one transaction."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nvr.contracts.arrays import FloatArray, RgbImage, UInt8Array
from nvr.contracts.faces import Detections
from nvr.recognition.enrolment import PhotoRefusedError, encode_crop, enrolment_face
from nvr.recognition.library import FaceLibrary, Person


class Detector(Protocol):
    def detect(self, image: RgbImage) -> Detections: ...


class Embedder(Protocol):
    model_id: str

    def embed(self, aligned: UInt8Array) -> FloatArray: ...


@dataclass(frozen=True, slots=True)
class Photo:
    filename: str  # for messages only
    pixels: RgbImage | None  # None: not decodable (then `error` says why)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class EnrolOutcome:
    person: Person | None  # None when nothing was enrolled
    accepted: list[tuple[str, int]]  # (file name, sample id)
    rejected: list[tuple[str, str]]  # (file name, reason)


class PhotoEnroller:
    """Detector and embedder, opened on first use (they cost memory the daemon need not spend until a user
    uploads a photo) and used by one request at a time."""

    def __init__(self, open_models: Callable[[], tuple[Detector, Embedder]]) -> None:
        self._open_models = open_models
        self._models: tuple[Detector, Embedder] | None = None
        self._lock = threading.Lock()

    def enrol(self, library: FaceLibrary, name: str, photos: Sequence[Photo]) -> EnrolOutcome:
        rejected = [(p.filename, p.error or "not an image") for p in photos if p.pixels is None]
        usable = [p for p in photos if p.pixels is not None]
        with self._lock:
            if self._models is None and usable:
                self._models = self._open_models()
            crops: list[tuple[str, RgbImage]] = []
            for photo in usable:
                assert photo.pixels is not None and self._models is not None
                try:
                    crops.append((photo.filename, enrolment_face(self._models[0], photo.pixels)))
                except PhotoRefusedError as exc:
                    rejected.append((photo.filename, str(exc)))
            if not crops:
                return EnrolOutcome(None, [], rejected)
            assert self._models is not None
            embedder = self._models[1]
            vectors = embedder.embed(np.stack([crop for _, crop in crops]))
        samples = [
            (encode_crop(crop), {embedder.model_id: vector}, f"web upload: {filename}")
            for (filename, crop), vector in zip(crops, vectors, strict=True)
        ]
        person, added = library.enrol(name, samples)
        accepted = [(filename, sample.id) for (filename, _), sample in zip(crops, added, strict=True)]
        return EnrolOutcome(person, accepted, rejected)
