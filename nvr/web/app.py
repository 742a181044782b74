"""Put the web server together from what the daemon (or a test, or a script) hands it."""

from __future__ import annotations

from pathlib import Path

from nvr.recognition.library import FaceLibrary, LibraryError
from nvr.web.api import EventsApi, StatusProvider
from nvr.web.api_faces import FacesApi
from nvr.web.auth import Authenticator
from nvr.web.config import WebConfig, resolve_web_password
from nvr.web.enrol import PhotoEnroller
from nvr.web.faces import StrangerStore
from nvr.web.images import ThumbnailCache
from nvr.web.recent import RecentEvents
from nvr.web.server import WebServer

_UNSET = object()


def create_web_server(
    config: WebConfig,
    recent: RecentEvents,
    *,
    library: FaceLibrary | None = None,
    enroller: PhotoEnroller | None = None,
    strangers: StrangerStore | None = None,
    status: StatusProvider | None = None,
    snapshot_dir: Path | None = None,
    password: str | object | None = _UNSET,
) -> WebServer:
    """The server, not yet started. The password comes from the configuration unless given (tests).
    Raises ConfigError (exit 3) when the address cannot be used or the password cannot be read."""
    secret = resolve_web_password(config) if password is _UNSET else password
    assert secret is None or isinstance(secret, str)
    auth = Authenticator(secret, config.session_hours * 3600)

    def library_version() -> int | None:
        if library is None:
            return None
        try:
            return library.version()
        except LibraryError:
            return None

    thumbnails = ThumbnailCache()
    events = EventsApi(
        recent=recent, thumbnails=thumbnails, snapshot_dir=snapshot_dir, status=status,
        library_version=library_version, needs_password=auth.needs_password,
    )  # fmt: skip
    faces = FacesApi(lambda: library, enroller, strangers, config)
    return WebServer(config, auth, events.routes() + faces.routes())
