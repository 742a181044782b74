"""Enrol people into a face library the way `nvr faces add` does: the largest face of a photo, detected by
SCRFD, aligned, embedded with the test embedder, stored with its aligned crop."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from conftest import asset_path
from PIL import Image

from nvr.contracts.alignment import align_face
from nvr.detector import open_detector
from nvr.families.arcface import open_embedder
from nvr.recognition.library import FaceLibrary, Person
from nvr.recognition.presence import PeopleChange, PresenceState
from nvr.recognition.strangers import StrangerEvent

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


class RecordingSink:
    """A recognition sink that keeps what it is given (what MQTT would publish)."""

    def __init__(self) -> None:
        self.presence: list[PresenceState] = []
        self.people: list[PeopleChange] = []
        self.strangers: list[StrangerEvent] = []
        self.cameras: list[str] = []

    def enable_strangers(self, camera: str) -> None:
        self.cameras.append(camera)

    def publish_stranger(self, event: StrangerEvent) -> None:
        self.strangers.append(event)

    def publish_presence(self, states: Sequence[PresenceState]) -> None:
        self.presence += states

    def publish_people(self, change: PeopleChange) -> None:
        self.people.append(change)
        self.presence += change.states
