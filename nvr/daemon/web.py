"""The daemon's end of the web UI: what the web server is given (recent events, status, the face library).

The web server never reaches into the pipeline: it gets a ring of recent events that the event output
fills (`RecentEvents`, installed in front of the real sink), a status callable built from the same figures
as /metrics and /healthz, and its own connection to the face library file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import structlog

from nvr.config import NvrConfig
from nvr.daemon.events import EventOutput, state_dir
from nvr.daemon.stats import DaemonStats
from nvr.errors import ConfigError
from nvr.recognition.library import FaceLibrary, LibraryError
from nvr.recognition.strangers import StrangerStore
from nvr.web.app import create_web_server
from nvr.web.enrol import Detector, Embedder, PhotoEnroller
from nvr.web.faces import LibraryStrangers
from nvr.web.recent import RecentEvents

log = structlog.get_logger("nvr.daemon")


def library_path(config: NvrConfig) -> Path:
    """The face library the recognition stage and `nvr faces --config` use with this configuration."""
    return config.recognition.library_path(state_dir(config))


def cpu_models(config_path: Path) -> tuple[Detector, Embedder]:
    """The face detector and embedder `nvr faces add --config` would use: on the CPU (the Hailo, if any,
    is the pipeline's; the recognition stage re-embeds the crops with its own model)."""
    from nvr.cli.recognition_setup import DETECT_THRESHOLD, open_embedder_for, settings_from
    from nvr.detector import open_detector

    options = argparse.Namespace(
        config=config_path, library=None, embedder=None, face_detector=None, threshold=None, margin=None
    )
    settings = settings_from(options)
    detector = open_detector(settings.detector, score_threshold=DETECT_THRESHOLD)
    return detector, open_embedder_for(settings)


class DaemonWeb:
    """Made first thing at start (it binds its port and reads its password: a problem is exit 3 before
    any model loads); serves once the stages exist."""

    def __init__(self, config: NvrConfig, config_path: Path) -> None:
        self.recent = RecentEvents(capacity=config.web.recent_events)
        self._config = config
        self._stats: DaemonStats | None = None
        self._events: EventOutput | None = None
        self._backend = ""
        self._library: FaceLibrary | None = None
        self._strangers: StrangerStore | None = None
        try:
            self._library = FaceLibrary(library_path(config))
            self._strangers = StrangerStore(self._library.path)
        except LibraryError as exc:
            log.error("web UI without the face library", error=exc.message)
        strangers = (
            LibraryStrangers(self._strangers, self._library) if self._strangers and self._library else None
        )
        enroller = PhotoEnroller(lambda: cpu_models(config_path))
        self.server = create_web_server(
            config.web, self.recent, library=self._library, enroller=enroller, strangers=strangers,
            status=self.status, snapshot_dir=state_dir(config) / "snapshots",
        )  # fmt: skip

    def start(self, stats: DaemonStats, events: EventOutput, backend: str) -> None:
        self._stats, self._events, self._backend = stats, events, backend
        self.server.start()

    def reload_certificate(self) -> None:
        """On every reload: a renewed `web.tls` certificate is served from the next connection on; one that
        cannot be loaded is logged and the previous one kept."""
        tls = self.server.config.tls
        if tls is None:
            return
        try:
            self.server.reload_certificate()
            log.info("web certificate reloaded", cert_file=str(tls.cert_file))
        except ConfigError as exc:
            log.error("web certificate not reloaded; serving the previous one", problem=exc.message)

    def stop(self) -> None:
        self.server.stop()
        for store in (self._strangers, self._library):
            if store is not None:
                store.close()

    def status(self) -> dict[str, Any]:
        stats, events = self._stats, self._events
        if stats is None or events is None:
            return {"health": {"status": "starting"}}
        healthy, details = stats.health()
        result: dict[str, Any] = {**stats.summary(), "health": {"status": "ok" if healthy else "unhealthy"}}
        result["health"].update(details)
        result["detector"] = {"model": self._config.detector.model, "backend": self._backend}
        result["events"] = events.description
        recognition = self._config.recognition
        result["embedder"] = {
            "model": recognition.embedder if recognition.enabled else "",
            "backend": "CPU" if events.recognition.output is not None else "off",
            "detail": events.recognition.status,
        }
        if events.publisher is not None:
            mqtt: Any = events.publisher.stats()
            result["mqtt"] = {
                "broker": events.description, "connected": bool(mqtt.get("connected")),
                "outbox": mqtt.get("outbox", {}), "delivered": mqtt.get("delivered", 0),
            }  # fmt: skip
        return result
