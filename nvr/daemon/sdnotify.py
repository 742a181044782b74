"""systemd's notification protocol (sd_notify), written here: one datagram per message to $NOTIFY_SOCKET.

Without $NOTIFY_SOCKET (run from a terminal) every call is a no-op. Failures are logged once and never
raised: losing a status line must not take the daemon down.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


class SystemdNotifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._socket: socket.socket | None = None
        self._address = ""
        self._warned = False
        if not address:
            return
        # A leading '@' names a socket in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # WATCHDOG_USEC tells us the period systemd expects; we ping at half of it.
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.watchdog_interval = (
            int(usec) / 2e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        )

    watchdog_interval: float | None = None

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *fields: str) -> None:
        if self._socket is None:
            return
        try:
            self._socket.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd", error=str(exc))
                self._warned = True

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def reloading(self) -> None:
        self.notify("RELOADING=1")

    def stopping(self, status: str = "stopping") -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
