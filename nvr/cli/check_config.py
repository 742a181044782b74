"""`nvr check-config FILE`: validate a configuration file without running anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nvr.config import ConfigFileError, NvrConfig, load_config
from nvr.errors import ExitCode, NvrError


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Validate a configuration file and make every check `nvr run` makes before it opens a "
        "device or a camera (the model is in the model store, secret files are readable, the state and event "
        "folders are writable): every problem is listed on one line.",
    )
    parser.add_argument("config", type=Path, metavar="FILE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigFileError as exc:
        for problem in exc.problems:
            print(f"nvr: error: {problem}", file=sys.stderr)
        return int(ExitCode.CONFIG)
    from nvr.daemon.preflight import preflight  # loads the registries; keep `nvr --help` light

    found = preflight(config, args.config.resolve())
    for error in found:
        print(f"nvr: error: {args.config}: {error.message}", file=sys.stderr)
    if found:
        return int(ExitCode.CONFIG)
    recognition = "recognition off"
    if config.recognition.enabled:
        try:
            recognition = _check_recognition(config, args.config.resolve().parent)
        except NvrError as exc:
            print(f"nvr: error: {args.config}: recognition: {exc.message}", file=sys.stderr)
            return int(exc.exit_code)
    enabled = len(config.enabled_cameras)
    has_broker = getattr(config, "mqtt", None) is not None
    broker = "MQTT configured" if has_broker else "no MQTT broker (events to the log)"
    print(
        f"{args.config}: OK: {len(config.cameras)} camera(s), {enabled} enabled; "
        f"detector {config.detector.backend}/{config.detector.model}; {broker}; {recognition}"
    )
    hailort = _hailort_line(config, args.config.resolve())
    if hailort is not None:
        print(f"{args.config}: {hailort}")
    return int(ExitCode.OK)


def _check_recognition(config: NvrConfig, config_dir: Path) -> str:
    """Open the embedder and the library the daemon would use; NvrError names what is wrong."""
    from nvr.daemon.events import state_dir
    from nvr.daemon.recognition import HAILO, resolve_embedder
    from nvr.families.arcface import open_embedder
    from nvr.recognition.library import FaceLibrary

    choice = resolve_embedder(config.recognition, config_dir)
    threshold = choice.threshold
    if choice.model.backend == HAILO:
        from nvr.backends.hailo_embedder import check_embedder
        from nvr.hef import read_hef

        dim = check_embedder(read_hef(choice.model.path))  # the device is checked when the daemon opens it
        model = f"{choice.model.path.name} ({dim} values, on the Hailo)"
    else:
        with open_embedder(choice.model.path, mean=choice.mean, std=choice.std) as embedder:
            model = embedder.model_id
    path = config.recognition.library_path(state_dir(config), config_dir)
    if not path.exists():
        return f"recognition with {model} (threshold {threshold:g}); library {path} not created yet"
    with FaceLibrary(path, create=False) as library:
        people = len(library.people())
    return f"recognition with {model} (threshold {threshold:g}); library {path}: {people} people"


def _hailort_line(config: Any, config_path: Path) -> str | None:
    """For a HEF: which HailoRT it needs versus the one installed (driver mismatches show only at run)."""
    from nvr.backends.hailo_diagnostics import hailort_compatibility
    from nvr.hef import read_hef
    from nvr.models.resolve import resolve_configured

    model = resolve_configured(config.detector, config_path.parent)
    if model.path.suffix.lower() != ".hef":
        return None
    return f"detector.model {model.path.name}: {hailort_compatibility(read_hef(model.path)).line()}"
