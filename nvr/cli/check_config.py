"""`nvr check-config FILE`: validate a configuration file without running anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nvr.config import ConfigFileError, load_config
from nvr.errors import ExitCode


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
    enabled = len(config.enabled_cameras)
    has_broker = getattr(config, "mqtt", None) is not None
    broker = "MQTT configured" if has_broker else "no MQTT broker (events to the log)"
    print(
        f"{args.config}: OK: {len(config.cameras)} camera(s), {enabled} enabled; "
        f"detector {config.detector.backend}/{config.detector.model}; {broker}"
    )
    return int(ExitCode.OK)
