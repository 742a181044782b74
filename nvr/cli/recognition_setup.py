"""What `nvr faces`, `nvr eval faces` and `nvr bench embed` share: the common options and how they become
a library path, a face detector, an embedder, a threshold and a margin.

Precedence for each: the command-line option, then the daemon's configuration (`--config`: `recognition.*`,
`detector.model`, the state folder), then the catalogue's defaults. The CLI always embeds on the CPU: when
the configured embedder is a HEF (the daemon holds the Hailo), it uses the catalogue's CPU model of the same
family, and the daemon re-embeds the stored crops with its own model.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nvr.errors import InputFileError, ModelError
from nvr.families.arcface import DEFAULT_MEAN, DEFAULT_STD, Embedder, open_embedder
from nvr.models.catalogue import CatalogueEntry, cpu_model_for, load_catalogue
from nvr.recognition.matcher import DEFAULT_MARGIN

DEFAULT_EMBEDDER = "arcface_mobilefacenet"  # catalogue family: its CPU model
DEFAULT_DETECTOR = "scrfd_2.5g"
# For embedders the catalogue does not know: the value the outside check uses with a 512-d model.
DEFAULT_THRESHOLD = 0.4
LIBRARY_FILE = "faces.db"
DETECT_THRESHOLD = 0.5
MODEL_SUFFIXES = (".onnx", ".tflite", ".hef")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="take library, embedder, detector from it"
    )
    parser.add_argument("--library", type=Path, metavar="FILE", help="face library file (default: "
                        "recognition.library, else <state dir>/faces.db)")  # fmt: skip
    parser.add_argument("--embedder", metavar="MODEL", help="embedding model: catalogue name or file "
                        f"(.onnx, .tflite; default {DEFAULT_EMBEDDER})")  # fmt: skip
    parser.add_argument("--face-detector", metavar="MODEL", help="face detector: catalogue name or file "
                        f"(default: the config's detector.model, else {DEFAULT_DETECTOR})")  # fmt: skip
    parser.add_argument("--threshold", type=float, metavar="T", help="match score (cosine) a face must reach "
                        "(default: the embedder's catalogue value)")  # fmt: skip
    parser.add_argument("--margin", type=float, metavar="M", help="how much the best person must beat the "
                        f"runner-up by (default {DEFAULT_MARGIN})")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    library: Path
    embedder: Path
    embedder_mean: float
    embedder_std: float
    detector: Path
    threshold: float
    margin: float


def settings_from(args: argparse.Namespace) -> Settings:
    """Resolve the common options (without opening any model)."""
    config: Any = None
    config_dir = Path.cwd()
    if getattr(args, "config", None) is not None:
        from nvr.config import load_config

        config = load_config(args.config)
        config_dir = args.config.resolve().parent
    recognition = getattr(config, "recognition", None)  # the daemon's `recognition:` section, when it has one

    library = args.library or _configured(recognition, "library")
    if library is None:
        library = _state_dir(config) / LIBRARY_FILE
    library = Path(library).expanduser()

    embedder_name = args.embedder or _configured(recognition, "embedder") or DEFAULT_EMBEDDER
    embedder, entry = _resolve(str(embedder_name), "embedder", config_dir if args.embedder is None else None)
    if embedder.suffix.lower() == ".hef":
        embedder, entry = _cpu_stand_in(embedder, entry)
    detector_name = args.face_detector or (config.detector.model if config is not None else DEFAULT_DETECTOR)
    detector, _ = _resolve(
        str(detector_name), "face detector", config_dir if args.face_detector is None else None
    )

    threshold = args.threshold
    if threshold is None:
        threshold = _configured(recognition, "threshold")
    if threshold is None:
        threshold = (
            entry.match_threshold if entry is not None and entry.match_threshold else DEFAULT_THRESHOLD
        )
    margin = args.margin if args.margin is not None else _configured(recognition, "margin")
    margin = DEFAULT_MARGIN if margin is None else margin
    if not -1.0 <= float(threshold) <= 1.0:
        raise ModelError(f"--threshold must be a cosine score between -1 and 1, got {threshold}")
    if not 0.0 <= float(margin) <= 2.0:
        raise ModelError(f"--margin must be between 0 and 2, got {margin}")
    mean = entry.input_mean if entry is not None and entry.input_mean is not None else DEFAULT_MEAN
    std = entry.input_std if entry is not None and entry.input_std is not None else DEFAULT_STD
    return Settings(library, embedder, mean, std, detector, float(threshold), float(margin))


def open_embedder_for(settings: Settings) -> Embedder:
    return open_embedder(settings.embedder, mean=settings.embedder_mean, std=settings.embedder_std)


def _configured(section: Any, name: str) -> Any:
    return getattr(section, name, None) if section is not None else None


def _state_dir(config: Any) -> Path:
    if config is not None:
        from nvr.daemon.events import state_dir

        return state_dir(config)
    systemd_state = os.environ.get("STATE_DIRECTORY")
    if systemd_state:
        return Path(systemd_state.split(":")[0])
    return Path.home() / ".local" / "state" / "nvr"


def _resolve(name: str, what: str, base_dir: Path | None) -> tuple[Path, CatalogueEntry | None]:
    """A file path (relative to `base_dir` for values from a config file), or a catalogue id or family
    (its CPU model, from the model store). Returns the file and its catalogue entry, if it has one."""
    entries = load_catalogue()
    path = Path(name).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if "/" in name or path.suffix.lower() in MODEL_SUFFIXES or path.is_file():
        if not path.is_file():
            raise InputFileError(f"{path}: no such {what} model file")
        entry = next((e for e in entries if e.file_name == path.name), None)
        return path, entry
    entry = next((e for e in entries if e.id == name), None) or cpu_model_for(name, entries)
    if entry is None:
        families = sorted({e.family for e in entries})
        raise ModelError(
            f"unknown {what} model {name!r}: a file, or one of the catalogue's {', '.join(families)}"
        )
    if not entry.local_path.is_file():
        raise ModelError(
            f"{what} model {entry.id} is not in the model store: run `nvr models pull {entry.id}`"
        )
    return entry.local_path, entry


def _cpu_stand_in(hef: Path, entry: CatalogueEntry | None) -> tuple[Path, CatalogueEntry | None]:
    """The CPU model of the HEF's catalogue family: the Hailo belongs to the daemon."""
    cpu = cpu_model_for(entry.family) if entry is not None else None
    if cpu is None:
        raise ModelError(
            f"{hef}: nvr faces embeds on the CPU (the Hailo is the daemon's): pass a CPU model to --embedder"
        )
    if not cpu.local_path.is_file():
        raise ModelError(f"{hef}: nvr faces embeds on the CPU with {cpu.id}: run `nvr models pull {cpu.id}`")
    print(
        f"nvr: note: embedding on the CPU with {cpu.id} ({hef.name} is the daemon's; it re-embeds the crops)",
        file=sys.stderr,
    )
    return cpu.local_path, cpu
