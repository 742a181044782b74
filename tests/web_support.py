"""Helpers for the web UI's tests: real face events with real snapshots, an in-process web server with a
real face library (and, where asked, the real detector and embedder), and a small cookie-keeping client."""

from __future__ import annotations

import http.client
import io
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import asset_path
from PIL import Image

from nvr.contracts.identity import Identity
from nvr.events.payload import EventType, FaceEvent, FaceObservation, new_event_id
from nvr.recognition.library import FaceLibrary
from nvr.web.app import create_web_server
from nvr.web.config import WebConfig
from nvr.web.enrol import PhotoEnroller
from nvr.web.faces import StrangerStore
from nvr.web.recent import RecentEvents
from nvr.web.server import WebServer

PASSWORD = "correct horse battery"
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")


def jpeg_of(relative: str, max_side: int = 320) -> bytes:
    """A real photo from the assets as a snapshot-sized JPEG."""
    with Image.open(asset_path(relative)) as image:
        rgb = image.convert("RGB")
    rgb.thumbnail((max_side, max_side))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=85)
    return out.getvalue()


def face_event(
    camera: str = "front",
    *,
    event_id: str | None = None,
    kind: EventType = "new",
    snapshot: bytes | None = None,
    identity: Identity | None = None,
    start: float | None = None,
) -> FaceEvent:
    start = time.time() if start is None else start
    face = FaceObservation(start, (40.0, 30.0, 120.0, 130.0), 0.87, ((60.0, 70.0),) * 5, LANDMARKS)
    return FaceEvent(
        kind, event_id or new_event_id(start), camera, start, start + 1 if kind == "end" else None,
        (640, 360), 3, face, face, snapshot=snapshot, identity=identity,
    )  # fmt: skip


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """HTTP to the server under test; keeps the session cookie like a browser would."""

    base: str
    tls: ssl.SSLContext | None = None  # for an https:// base: what to trust
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str | None = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
        *, cookies: bool = True,
    ) -> Response:  # fmt: skip
        host = self.base.split("//", 1)[1]
        connection = (
            http.client.HTTPSConnection(host, timeout=30, context=self.tls)
            if self.base.startswith("https:")
            else http.client.HTTPConnection(host, timeout=30)
        )
        sent = dict(headers or {})
        if cookies and self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        for value in response.headers.get_all("Set-Cookie") or []:
            name, _, rest = value.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return Response(response.status, response.headers, data)

    def get(self, path: str, **headers: str) -> Response:
        return self.request("GET", path, headers=headers)

    def send(
        self, method: str, path: str, data: Any = None, *, csrf: bool = True, **headers: str
    ) -> Response:
        sent = {"Content-Type": "application/json", **headers}
        if csrf and self.csrf:
            sent["X-CSRF-Token"] = self.csrf
        return self.request(method, path, b"" if data is None else json.dumps(data).encode(), sent)

    def login(self, password: str = PASSWORD) -> Response:
        form = f"password={password}".encode()
        response = self.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        if response.status == 303 and response.headers["Location"] == "/":
            self.csrf = self.get("/api/session").json()["csrf"]
        return response

    def open_session(self) -> None:
        """Without a password: what a browser does (load the page, then ask for the CSRF token)."""
        self.get("/")
        self.csrf = self.get("/api/session").json()["csrf"]


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----nvr" + uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def open_enroller() -> PhotoEnroller:
    """The real models `nvr faces add` uses in the tests: SCRFD-2.5G and the 512-d ArcFace-style embedder."""
    from nvr.detector import open_detector
    from nvr.families.arcface import open_embedder

    def models() -> Any:
        detector = open_detector(asset_path("models/scrfd/det_2.5g.onnx"), score_threshold=0.5)
        return detector, open_embedder(asset_path("models/recognition/fr_feature_512.onnx"))

    return PhotoEnroller(models)


@contextmanager
def web_server(
    tmp_path: Path,
    *,
    password: str | None = PASSWORD,
    enroller: PhotoEnroller | None = None,
    strangers: StrangerStore | None = None,
    library: FaceLibrary | None = None,
    recent: RecentEvents | None = None,
    **config: Any,
) -> Iterator[tuple[WebServer, RecentEvents, FaceLibrary]]:
    recent = recent or RecentEvents(capacity=config.pop("recent_events", 2000))
    library = library or FaceLibrary(tmp_path / "faces.sqlite3")
    server = create_web_server(
        WebConfig(port=0, **config), recent, library=library, enroller=enroller, strangers=strangers,
        snapshot_dir=tmp_path / "snapshots", password=password,
    )  # fmt: skip
    server.start()
    try:
        yield server, recent, library
    finally:
        server.stop()
        library.close()
