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
from nvr.web.server import WebServer

log = structlog.get_logger("nvr.daemon")


def recent_events(config: NvrConfig) -> RecentEvents | None:
    return RecentEvents(capacity=config.web.recent_events) if config.web.enabled else None


def library_path(config: NvrConfig) -> Path:
    """The face library `nvr faces` uses with this configuration."""
    recognition: Any = getattr(config, "recognition", None)
    configured = getattr(recognition, "library", None)
    return Path(configured).expanduser() if configured else state_dir(config) / "faces.sqlite3"


def snapshot_dir(config: NvrConfig) -> Path:
    return state_dir(config) / "snapshots"


def start_web(
    config: NvrConfig, recent: RecentEvents | None, stats: DaemonStats, events: EventOutput, backend: str
) -> WebServer | None:
    """Start the web UI when enabled; ConfigError (exit 3) when it cannot listen or read its password."""
    if recent is None or not config.web.enabled:
        return None
    try:
        library: FaceLibrary | None = FaceLibrary(library_path(config))
    except LibraryError as exc:
        log.error("web UI without the face library", error=exc.message)
        library = None

    def status() -> dict[str, Any]:
        healthy, details = stats.health()
        result: dict[str, Any] = {**stats.summary(), "health": {"status": "ok" if healthy else "unhealthy"}}
        result["health"].update(details)
        result["detector"] = {"model": config.detector.model, "backend": backend}
        result["events"] = events.description
        if events.publisher is not None:
            mqtt: Any = events.publisher.stats()
            result["mqtt"] = {
                "broker": events.description, "connected": bool(mqtt.get("connected")),
                "outbox": mqtt.get("outbox", {}), "delivered": mqtt.get("delivered", 0),
            }  # fmt: skip
        return result

    server = create_web_server(
        config.web, recent, library=library, status=status, snapshot_dir=snapshot_dir(config)
    )
    server.start()
    return server
