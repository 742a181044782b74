"""The `nvr` command line. Each sub-command lives in its own module with a `register(subparsers)` function."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import structlog

from nvr import __version__
from nvr.errors import ExitCode, NvrError

# Sub-command modules, in the order `nvr --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("detect", "faces", "models", "run", "check_config", "eval", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nvr", description="Edge face analytics: face detection and MQTT events."
    )
    parser.add_argument("--version", action="version", version=f"nvr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"nvr.cli.{name}").register(subparsers)
    return parser


def _route_structlog_to_stderr() -> None:
    """One-shot commands print their results on stdout: their warnings (a model falling back to the CPU)
    go through stdlib logging to stderr, one readable line each. `nvr run` configures its own logging."""
    if not structlog.is_configured():
        structlog.configure(
            processors=[structlog.stdlib.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )


def main(argv: Sequence[str] | None = None) -> int:
    _route_structlog_to_stderr()
    parser = build_parser()
    args = parser.parse_args(argv)
    # Warnings on stderr, never on stdout (which carries --json output); `nvr run` sets up its own logging.
    # Only when nothing set logging up yet: a program (or a test) calling main() keeps its own handlers.
    import logging

    if not logging.getLogger().handlers:
        from nvr.logsetup import configure_logging

        configure_logging("warning", "console")
    try:
        result: int = args.handler(args)
        return result
    except NvrError as exc:
        print(f"nvr: error: {exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # `nvr detect ... | head`: the reader went away; that is not an error.
        return int(ExitCode.OK)
