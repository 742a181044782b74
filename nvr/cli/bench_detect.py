"""`nvr bench detect`: images per second and host CPU per image, for each model and backend here.

Each image goes through the whole `nvr detect` path (letterbox with the one resizer, inference,
postprocessing); decoding the image files is done beforehand and not counted. CPU time is the process's
(all threads: ONNX Runtime's pool, HailoRT's), so "cores" shows how much of the machine a model takes.
Models are catalogue names or files. With no --model, every catalogue model in the model store is
measured: ONNX models on the CPU, HEFs on the Hailo (reported as unavailable when there is no HailoRT or
device: a HEF is never measured on the CPU stand-in `auto` would fall back to). A model named with
--model that cannot be measured is an error: the others are still measured, and the exit code is the first
failure's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nvr.contracts.arrays import RgbImage
from nvr.contracts.imaging import load_rgb
from nvr.errors import ModelError, NvrError
from nvr.models.resolve import ResolvedModel, resolve_model
from nvr.progress import Progress

DEFAULT_SECONDS = 5.0
WARMUP_IMAGES = 3


@dataclass(frozen=True, slots=True)
class DetectBench:
    model: str
    backend: str
    images: int
    seconds: float
    images_per_second: float
    cpu_ms_per_image: float
    cpu_cores: float
    faces_per_image: float


def register_detect(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "detect",
        help="images per second and CPU per image of each model and backend on this machine",
        description=(__doc__ or "").split("\n\n", 1)[1].replace("\n", " "),
    )
    parser.add_argument(
        "--model",
        action="append",
        help="catalogue name or model file (repeatable; default: all in the store)",
    )
    parser.add_argument("--images", type=Path, nargs="+", help="images or folders (default: a test pattern)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="time per model (default 5)")
    parser.add_argument("--count", type=int, help="images per model instead of --seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")
    parser.set_defaults(handler=run_detect)


def run_detect(args: argparse.Namespace) -> int:
    from nvr.models.verify import image_files

    if args.seconds <= 0 or (args.count is not None and args.count <= 0):
        raise ModelError("--seconds and --count must be positive")
    images = [load_rgb(p) for p in image_files(args.images)] if args.images else [_pattern()]
    if not images:
        raise ModelError(f"no images in {', '.join(map(str, args.images))}")
    names = args.model or _catalogue_models()
    if not names:
        raise ModelError(
            "no models here to measure: pass --model NAME|FILE, or fetch one with nvr models pull"
        )
    if not args.json:
        print(f"{'model':<34} {'backend':<8} {'images/s':>9} {'CPU ms/image':>13} {'cores':>6} {'faces':>6}")
    failed: NvrError | None = None
    for name in names:
        try:
            # Resolved one by one: a name missing from the store is reported like any unusable model.
            model = resolve_model(name).pinned()
            result = bench_model(model, images, seconds=args.seconds, count=args.count)
        except NvrError as exc:  # one unusable model (no Hailo here, wrong chip) does not stop the others
            if args.json:
                print(json.dumps({"model": str(name), "error": exc.message}), flush=True)
            print(f"nvr: error: {exc.message}", file=sys.stderr, flush=True)
            # A model the user named must be measured; the catalogue sweep only reports what is absent.
            if args.model and failed is None:
                failed = exc
            continue
        if args.json:
            print(json.dumps(asdict(result)))
        else:
            print(
                f"{Path(result.model).name:<34} {result.backend:<8} {result.images_per_second:>9.1f} "
                f"{result.cpu_ms_per_image:>13.1f} {result.cpu_cores:>6.2f} {result.faces_per_image:>6.1f}"
            )
    return int(failed.exit_code) if failed is not None else 0


def bench_model(
    model: ResolvedModel, images: list[RgbImage], *, seconds: float, count: int | None
) -> DetectBench:
    from nvr.detector import open_detector

    with open_detector(model) as detector:
        for i in range(WARMUP_IMAGES):
            detector.detect(images[i % len(images)])
        progress = Progress(f"{model.path.name} ({detector.backend.name})", count, "images")
        done = faces = 0
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        while (done < count) if count is not None else (time.perf_counter() - start_wall < seconds):
            faces += len(detector.detect(images[done % len(images)]))
            done += 1
            progress.advance()
        wall = time.perf_counter() - start_wall
        cpu = time.process_time() - start_cpu
        progress.close()
        return DetectBench(
            model=str(model.path),
            backend=detector.backend.name,
            images=done,
            seconds=wall,
            images_per_second=done / wall,
            cpu_ms_per_image=1000.0 * cpu / done,
            cpu_cores=cpu / wall,
            faces_per_image=faces / done,
        )


def _catalogue_models() -> list[str]:
    from nvr.models.catalogue import load_catalogue

    return [str(entry.local_path) for entry in load_catalogue() if entry.local_path.is_file()]


def _pattern() -> RgbImage:
    """A 1280x720 frame with some structure (outputs do not matter for speed; sizes do)."""
    y, x = np.mgrid[:720, :1280]
    return np.stack([x % 256, y % 256, (x // 5 + y // 3) % 256], axis=-1).astype(np.uint8)
