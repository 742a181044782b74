"""`nvr bench embed`: host milliseconds per embedded face, for each face embedder and backend here.

Faces are aligned 112x112 crops (from --image: its largest face, aligned as `nvr faces` does; or a test
pattern), embedded in the model's own batch size (1 for fr_feature_512.onnx, a fixed 2 for
mobilefacenet_192.tflite, 16 for dynamic-batch models). CPU time is the process's (all threads), so it is
what the embedder costs the host. Embedders are catalogue names or files; with none, every CPU embedder of
the catalogue in the model store is measured.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nvr.contracts.arrays import UInt8Array
from nvr.errors import InputFileError, ModelError, NvrError
from nvr.progress import Progress
from nvr.recognition.enrolment import FaceEmbedder

DEFAULT_SECONDS = 5.0
WARMUP_CALLS = 3


@dataclass(frozen=True, slots=True)
class EmbedBench:
    model: str
    backend: str
    batch: int
    faces: int
    seconds: float
    faces_per_second: float
    cpu_ms_per_face: float
    wall_ms_per_face: float


def register_embed(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "embed",
        help="host milliseconds per embedded face of each face embedder on this machine",
        description=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " "),
    )
    parser.add_argument(
        "--embedder", action="append", help="catalogue name or model file (repeatable; default: the store's)"
    )
    parser.add_argument(
        "--image", type=Path, help="a photo whose largest face is embedded (default: a pattern)"
    )
    parser.add_argument("--face-detector", default="scrfd_2.5g", help="detector for --image (scrfd_2.5g)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="time per model (default 5)")
    parser.add_argument("--count", type=int, help="faces per model instead of --seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")
    parser.set_defaults(handler=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from nvr.cli.recognition_setup import embedder_file, open_embedder_for_file

    if args.seconds <= 0 or (args.count is not None and args.count <= 0):
        raise ModelError("--seconds and --count must be positive")
    face = _face(args.image, args.face_detector) if args.image else _pattern()
    names = args.embedder or _catalogue_embedders()
    if not names:
        raise ModelError("no face embedders here to measure: pass --embedder FILE, or `nvr models pull` one")
    if not args.json:
        print(f"{'model':<34} {'backend':<8} {'batch':>5} {'faces/s':>8} {'CPU ms/face':>12} {'ms/face':>8}")
    for name in names:
        try:
            with open_embedder_for_file(*embedder_file(name)) as embedder:
                result = bench_embedder(
                    embedder, embedder.backend, embedder.batch, face, seconds=args.seconds, count=args.count
                )
        except NvrError as exc:  # one unusable model does not stop the others
            print(json.dumps({"model": name, "error": exc.message}) if args.json else f"{name}: {exc}")
            continue
        if args.json:
            print(json.dumps(asdict(result)))
        else:
            print(
                f"{result.model:<34} {result.backend:<8} {result.batch:>5} {result.faces_per_second:>8.1f} "
                f"{result.cpu_ms_per_face:>12.2f} {result.wall_ms_per_face:>8.2f}"
            )
    return 0


def bench_embedder(
    embedder: FaceEmbedder, backend: str, batch: int, face: UInt8Array, *, seconds: float, count: int | None
) -> EmbedBench:
    """Embed `face` in batches of `batch` for `seconds` (or `count` faces); any embedder, Hailo's too."""
    faces = np.repeat(face[None], batch, axis=0)
    for _ in range(WARMUP_CALLS):
        embedder.embed(faces)
    label = embedder.model_id.rsplit("-", 1)[0]
    progress = Progress(f"{label} ({backend})", count, "faces")
    done = 0
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    while (done < count) if count is not None else (time.perf_counter() - start_wall < seconds):
        embedder.embed(faces)
        done += batch
        progress.advance(batch)
    wall = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    progress.close()
    return EmbedBench(
        model=label,
        backend=backend,
        batch=batch,
        faces=done,
        seconds=wall,
        faces_per_second=done / wall,
        cpu_ms_per_face=1000.0 * cpu / done,
        wall_ms_per_face=1000.0 * wall / done,
    )


def _catalogue_embedders() -> list[str]:
    from nvr.models.catalogue import load_catalogue

    return [
        str(entry.local_path)
        for entry in load_catalogue()
        if entry.match_threshold is not None and entry.kind != "hef" and entry.local_path.is_file()
    ]


def _face(image_path: Path, detector_name: str) -> UInt8Array:
    from nvr.cli.faces import load_image
    from nvr.detector import open_detector
    from nvr.recognition.enrolment import align, largest

    image = load_image(image_path)
    with open_detector(detector_name) as detector:
        detections = detector.detect(image)
    face = largest(detections)
    aligned = align(image, face, detections.landmark_names) if face is not None else None
    if aligned is None:
        raise InputFileError(f"{image_path}: no face found")
    return aligned


def _pattern() -> UInt8Array:
    y, x = np.mgrid[:112, :112]
    return np.stack([x * 2, y * 2, (x + y) % 256], axis=-1).astype(np.uint8)
