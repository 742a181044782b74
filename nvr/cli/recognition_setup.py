"""What `nvr faces`, `nvr eval faces` and `nvr bench embed` share: the common options and how they become
a library path, a face detector, an embedder, a threshold and a margin.

Precedence for each: the command-line option, then the daemon's configuration (`--config`: `recognition.*`,
`detector.model`, the state folder), then the catalogue's defaults. The CLI always embeds on the CPU: when
the configured embedder is a HEF (the daemon holds the Hailo), it uses the catalogue's CPU model of the same
family, and the daemon re-embeds the stored crops with its own model.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nvr.assets import systemd_state_directory
from nvr.errors import ModelError
from nvr.families.arcface import DEFAULT_MEAN, DEFAULT_STD, Embedder, open_embedder
from nvr.models.catalogue import CatalogueEntry, load_catalogue
from nvr.models.resolve import HAILO, ResolvedModel, cpu_counterpart, resolve_configured, resolve_model
from nvr.recognition.matcher import DEFAULT_MARGIN

DEFAULT_EMBEDDER = "arcface_mobilefacenet"  # catalogue family: its CPU model
DEFAULT_DETECTOR = "scrfd_2.5g"
# For embedders the catalogue does not know: the value the outside check uses with a 512-d model.
DEFAULT_THRESHOLD = 0.4
LIBRARY_FILE = "faces.db"
DETECT_THRESHOLD = 0.5


def add_common_options(
    parser: argparse.ArgumentParser, *, library: bool = True, after_action: bool = False
) -> None:
    """The options every face command takes. `nvr faces` takes them before the action as well as after
    it (`nvr faces --config F add ...`): the action's copies then default to "not given" (SUPPRESS), so
    they do not overwrite a value given before the action."""
    default = argparse.SUPPRESS if after_action else None
    add = parser.add_argument
    add(
        "--config",
        type=Path,
        metavar="FILE",
        default=default,
        help="take library, embedder, detector from it",
    )
    if library:
        add("--library", type=Path, metavar="FILE", default=default,
            help="face library file (default: recognition.library, else <state dir>/faces.db)")  # fmt: skip
    add("--embedder", metavar="MODEL", default=default,
        help=f"embedder: catalogue name or .onnx/.tflite file (default {DEFAULT_EMBEDDER})")  # fmt: skip
    add("--face-detector", metavar="MODEL", default=default,
        help=f"detector: catalogue name or file (default detector.model or {DEFAULT_DETECTOR})")  # fmt: skip
    add("--threshold", type=float, metavar="T", default=default,
        help="match score (cosine) a face must reach (default: the embedder's catalogue value)")  # fmt: skip
    add("--margin", type=float, metavar="M", default=default,
        help=f"how much the best person must beat the runner-up by (default {DEFAULT_MARGIN})")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    library: Path
    embedder: Path
    embedder_mean: float
    embedder_std: float
    detector: ResolvedModel
    threshold: float
    margin: float


def _config(args: argparse.Namespace) -> tuple[Any, Path]:
    """The daemon's configuration (`--config`), or None; and the folder its relative paths start from."""
    if getattr(args, "config", None) is None:
        return None, Path.cwd()
    from nvr.config import load_config

    return load_config(args.config), args.config.resolve().parent


def library_from(args: argparse.Namespace) -> Path:
    """The face library file: --library, the config's recognition.library, else <state dir>/faces.db."""
    config, config_dir = _config(args)
    library = getattr(args, "library", None)
    configured = _configured(getattr(config, "recognition", None), "library")
    if library is None and configured is not None:
        library = config_dir / Path(configured).expanduser()  # relative to the config file
    if library is None:
        library = _state_dir(config) / LIBRARY_FILE
    return Path(library).expanduser()


def settings_from(args: argparse.Namespace) -> Settings:
    """Resolve the common options (without opening any model)."""
    config, config_dir = _config(args)
    recognition = getattr(config, "recognition", None)  # the daemon's `recognition:` section, when it has one
    library = library_from(args)

    embedder_name = args.embedder or _configured(recognition, "embedder") or DEFAULT_EMBEDDER
    embedder, entry = embedder_file(str(embedder_name), config_dir if args.embedder is None else None)
    if args.face_detector is not None:
        detector = resolve_model(args.face_detector)
    elif config is not None:
        detector = resolve_configured(config.detector, config_dir)
    else:
        detector = resolve_model(DEFAULT_DETECTOR)

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
    mean, std = normalisation(entry)
    return Settings(library, embedder, mean, std, detector, float(threshold), float(margin))


def open_embedder_for(settings: Settings) -> Embedder:
    return open_embedder(settings.embedder, mean=settings.embedder_mean, std=settings.embedder_std)


def open_embedder_for_file(path: Path, entry: CatalogueEntry | None) -> Embedder:
    mean, std = normalisation(entry)
    return open_embedder(path, mean=mean, std=std)


def normalisation(entry: CatalogueEntry | None) -> tuple[float, float]:
    """(mean, std) of a float embedder: the catalogue's for its models, else the family's default."""
    mean = entry.input_mean if entry is not None and entry.input_mean is not None else DEFAULT_MEAN
    std = entry.input_std if entry is not None and entry.input_std is not None else DEFAULT_STD
    return mean, std


def _configured(section: Any, name: str) -> Any:
    return getattr(section, name, None) if section is not None else None


def _state_dir(config: Any) -> Path:
    if config is not None:
        from nvr.daemon.events import state_dir

        return state_dir(config)
    return systemd_state_directory() or Path.home() / ".local" / "state" / "nvr"


def embedder_file(name: str, base_dir: Path | None = None) -> tuple[Path, CatalogueEntry | None]:
    """The embedder file for a path (relative to `base_dir` for values from a config file), a catalogue id
    or a catalogue family, with its catalogue entry when it has one. A HEF becomes the CPU model of its
    catalogue family: the Hailo is the daemon's."""
    resolved = resolve_model(name, base_dir=base_dir)
    if resolved.backend == HAILO:
        hef = resolved.path
        resolved = cpu_counterpart(resolved, "embed with on the CPU (the Hailo is the daemon's)", ModelError)
        print(
            f"nvr: note: embedding on the CPU with {resolved.path.name} ({hef.name} is the daemon's model; "
            "it re-embeds the stored crops with it)",
            file=sys.stderr,
        )
    entry = next((e for e in load_catalogue() if e.file_name == resolved.path.name), None)
    return resolved.path, entry
