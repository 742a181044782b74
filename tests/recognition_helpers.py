"""Enrol people into a face library the way `nvr faces add` does: the largest face of a photo, detected by
SCRFD, aligned, embedded with the test embedder, stored with its aligned crop."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from conftest import asset_path
from PIL import Image

from nvr.contracts.alignment import align_face
from nvr.detector import open_detector
from nvr.families.arcface import open_embedder
from nvr.recognition.library import FaceLibrary, Person

EMBEDDER = "models/recognition/fr_feature_512.onnx"
DETECTOR = "models/scrfd/det_2.5g.onnx"


def enrol(library: Path, name: str, *photos: str) -> Person:
    samples = []
    with (
        open_detector(asset_path(DETECTOR), backend="onnx", score_threshold=0.5) as detector,
        open_embedder(asset_path(EMBEDDER)) as embedder,
    ):
        for photo in photos:
            image = np.asarray(Image.open(asset_path(photo)).convert("RGB"))
            found = detector.detect(image)
            largest = int(np.argmax(found.boxes[:, 2] - found.boxes[:, 0]))
            aligned = align_face(image, found.landmarks[largest], found.landmark_names)
            assert aligned is not None, photo
            jpeg = io.BytesIO()
            Image.fromarray(aligned).save(jpeg, "JPEG", quality=90)
            samples.append((jpeg.getvalue(), {embedder.model_id: embedder.embed(aligned[None])[0]}, photo))
    with FaceLibrary(library) as faces:
        person, _ = faces.enrol(name, samples)
    return person
