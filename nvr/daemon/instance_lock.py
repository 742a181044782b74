"""One daemon per instance name on a machine: `/dev/shm/nvr-<instance>.lock`, holding the owner's pid.

Two daemons with one instance name would fight over the same shared-memory frame rings, so the second one
stops before it touches anything and says which process holds the name. The lock is an advisory `flock`
on the file, so it vanishes with its process however that ends (a killed daemon leaves no stale lock).
It lives beside the frame rings in /dev/shm, not in the state directory: the rings' names are machine-wide,
whatever state directory each configuration names.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from nvr.contracts.frameslots import SHM_DIR
from nvr.errors import ConfigError


def lock_path(instance: str) -> Path:
    return SHM_DIR / f"nvr-{instance}.lock"  # the config allows [A-Za-z0-9_-] only: a safe file name


class InstanceLock:
    """Held from `acquire` (or `with`) until `release`; a second taker gets a `ConfigError` with the pid."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.path = lock_path(instance)
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                who = f"pid {pid}" if pid is not None else "pid not yet known: it is starting"
                raise ConfigError(
                    f"another nvr with the instance name {self.instance!r} is running ({who}); stop it, or "
                    "give this one a different `instance:` in its configuration"
                ) from None
            # The previous holder may have removed the file between our open and our lock: then we hold a
            # lock on a file nobody else can find, so start again with the current one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        # Removed while still locked, so no newcomer can lock this file after we let go of it.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
