"""`nvr run CONFIG`: the daemon. Runs until SIGTERM/SIGINT; SIGHUP (or editing the file) reloads cameras."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nvr.config import load_config
from nvr.errors import ConfigError
from nvr.logsetup import configure_logging


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run the daemon",
        description="Run the face-event daemon with a configuration file (see config/nvr.example.yml).",
    )
    parser.add_argument("config", type=Path, metavar="CONFIG")
    parser.add_argument(
        "--no-watch", action="store_true", help="reload only on SIGHUP, not when the file changes"
    )
    parser.add_argument("--log-format", choices=("auto", "console", "json"), help="override logging.format")
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), help="override logging.level"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)  # ConfigFileError -> one line, exit code CONFIG
    updates: dict[str, str] = {}
    if args.log_format:
        updates["format"] = args.log_format
    if args.log_level:
        updates["level"] = args.log_level
    if updates:
        config = config.model_copy(update={"logging": config.logging.model_copy(update=updates)})
    configure_logging(config.logging.level, config.logging.format)
    from nvr.daemon.app import run_daemon  # imports the runtimes; keep `nvr --help` light
    from nvr.daemon.preflight import preflight

    problems = preflight(config, args.config.resolve())  # the checks `nvr check-config` makes
    if problems:
        raise ConfigError(problems[0].message)

    return run_daemon(args.config.resolve(), config, watch_file=not args.no_watch)
