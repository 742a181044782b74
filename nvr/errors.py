"""Errors users see, each with a one-line message and a distinct process exit code.

Anything a user can get wrong (a file, a field, a camera, a device) raises an `NvrError` subclass whose
message names the thing at fault. The CLI prints it on one line and exits with the class's code; no
traceback is shown for these.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # an unexpected internal error (a bug): the only case that prints a traceback
    USAGE = 2  # bad command line (argparse uses 2 as well)
    CONFIG = 3  # invalid configuration file: systemd must not restart-loop on it
    INPUT = 4  # an input file (image, video, model, HEF) is missing, unreadable or malformed
    MODEL = 5  # a model is valid but unusable here (wrong outputs, wrong chip, unsupported version)
    DEVICE = 6  # accelerator missing, busy, or failing
    NETWORK = 7  # a download or a broker connection failed
    INTERRUPTED = 130


class NvrError(Exception):
    """Base class: the message is a single line that names what is at fault."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        # Keep messages on one line whatever the cause text contains.
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self)


class ConfigError(NvrError):
    exit_code = ExitCode.CONFIG


class InputFileError(NvrError):
    exit_code = ExitCode.INPUT


class ModelError(NvrError):
    exit_code = ExitCode.MODEL


class DeviceError(NvrError):
    exit_code = ExitCode.DEVICE


class NetworkError(NvrError):
    exit_code = ExitCode.NETWORK
