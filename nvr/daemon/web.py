"""The daemon's end of the web UI: what the web server is given (recent events, status, the face library).

The web server never reaches into the pipeline: it gets a ring of recent events that the event output
fills (`RecentEvents`, installed in front of the real sink), a status callable built from the same figures
as /metrics and /healthz, and its own connection to the face library file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from nvr.config import NvrConfig
from nvr.daemon.events import EventOutput, state_dir
from nvr.daemon.stats import DaemonStats
from nvr.recognition.library import FaceLibrary, LibraryError
from nvr.web.app import create_web_server
from nvr.web.recent import RecentEvents

log = structlog.get_logger("nvr.daemon")


def library_path(config: NvrConfig) -> Path:
    """The face library `nvr faces` uses with this configuration."""
    recognition: Any = getattr(config, "recognition", None)
    configured = getattr(recognition, "library", None)
    return Path(configured).expanduser() if configured else state_dir(config) / "faces.sqlite3"


class DaemonWeb:
    """Made first thing at start (it binds its port and reads its password: a problem is exit 3 before
    any model loads); serves once the stages exist."""

    def __init__(self, config: NvrConfig) -> None:
        self.recent = RecentEvents(capacity=config.web.recent_events)
        self._config = config
        self._stats: DaemonStats | None = None
        self._events: EventOutput | None = None
        self._backend = ""
        try:
            self._library: FaceLibrary | None = FaceLibrary(library_path(config))
        except LibraryError as exc:
            log.error("web UI without the face library", error=exc.message)
            self._library = None
        self.server = create_web_server(
            config.web, self.recent, library=self._library, status=self.status,
            snapshot_dir=state_dir(config) / "snapshots",
        )  # fmt: skip

    def start(self, stats: DaemonStats, events: EventOutput, backend: str) -> None:
        self._stats, self._events, self._backend = stats, events, backend
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
        if self._library is not None:
            self._library.close()

    def status(self) -> dict[str, Any]:
        stats, events = self._stats, self._events
        if stats is None or events is None:
            return {"health": {"status": "starting"}}
        healthy, details = stats.health()
        result: dict[str, Any] = {**stats.summary(), "health": {"status": "ok" if healthy else "unhealthy"}}
        result["health"].update(details)
        result["detector"] = {"model": self._config.detector.model, "backend": self._backend}
        result["events"] = events.description
        if events.publisher is not None:
            mqtt: Any = events.publisher.stats()
            result["mqtt"] = {
                "broker": events.description, "connected": bool(mqtt.get("connected")),
                "outbox": mqtt.get("outbox", {}), "delivered": mqtt.get("delivered", 0),
            }  # fmt: skip
        return result
