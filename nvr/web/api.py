"""The JSON API behind the pages (also for Home Assistant and scripts): events, status, the session.

Face-library and stranger routes are in `api_faces.py`. Every list is paginated; images are served from
memory or from files found by a validated id, never by a path taken from the request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nvr.web.faces import GROUP_NAME, PERSON_ID
from nvr.web.http import HttpError, Reply, Request, json_reply
from nvr.web.images import ThumbnailCache
from nvr.web.recent import EVENT_ID, RecentEvent, RecentEvents
from nvr.web.server import Route, Streamer, caller_summary

StatusProvider = Callable[[], dict[str, Any]]
LibraryVersion = Callable[[], int | None]
MAX_STREAMS = 16  # live-update connections at once; more browsers fall back to polling
KEEPALIVE = 15.0
IMAGE_CACHE = "private, max-age=300"


def route(method: str, pattern: str, handler: Any = None, *, streamer: Streamer | None = None,
          max_body: int | None = None) -> Route:  # fmt: skip
    """`pattern` uses {event}, {group}, {person}, {sample}, {n} placeholders with strict shapes."""
    shapes = {
        "event": EVENT_ID.pattern, "group": GROUP_NAME.pattern, "person": PERSON_ID.pattern,
        "sample": "[0-9]{1,12}", "n": "[0-9]{1,9}",
    }  # fmt: skip
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{shapes[m[1]]})", pattern)
    if max_body is None:
        return Route(method, re.compile(regex), handler, streamer)
    return Route(method, re.compile(regex), handler, streamer, max_body)


class EventsApi:
    def __init__(
        self,
        *,
        recent: RecentEvents,
        thumbnails: ThumbnailCache,
        snapshot_dir: Path | None,
        status: StatusProvider | None,
        library_version: LibraryVersion,
        needs_password: bool = False,
    ) -> None:
        self.recent = recent
        self.needs_password = needs_password
        self.thumbnails = thumbnails
        self.snapshot_dir = snapshot_dir.resolve() if snapshot_dir is not None else None
        self.status_provider = status
        self.library_version = library_version
        self._streams = threading.BoundedSemaphore(MAX_STREAMS)

    def routes(self) -> list[Route]:
        return [
            route("GET", "/api/session", self.session),
            route("GET", "/api/status", self.status),
            route("GET", "/api/events", self.events),
            route("GET", "/api/events/stream", streamer=self.stream),
            route("GET", "/api/events/{event}", self.event),
            route("GET", "/api/events/{event}/snapshot", self.snapshot),
        ]

    def session(self, request: Request) -> Reply:
        return json_reply({**caller_summary(request.caller), "password": self.needs_password})

    def status(self, request: Request) -> Reply:
        status: dict[str, Any] = dict(self.status_provider()) if self.status_provider is not None else {}
        status["faces_in_view"] = self.recent.face_counts()
        status["library_version"] = self.library_version()
        return json_reply(status)

    def events(self, request: Request) -> Reply:
        limit = request.int_query("limit", 50, 1, 200)
        camera = request.query.get("camera") or None
        if "after" in request.query:  # live updates: what changed since a seq, oldest change first
            changed = self.recent.changed_since(request.int_query("after", 0), limit)
            return json_reply({"events": [self._event_dict(e) for e in changed], "seq": self.recent.seq})
        before = request.int_query("before", 0) or None
        entries, cursor = self.recent.page(camera=camera, before=before, limit=limit)
        return json_reply({
            "events": [self._event_dict(e) for e in entries], "next": cursor, "seq": self.recent.seq,
            "cameras": self.recent.cameras(),
        })  # fmt: skip

    def event(self, request: Request) -> Reply:
        entry = self.recent.get(request.params["event"])
        if entry is None:
            raise HttpError(404, "no such event among the recent ones")
        return json_reply(self._event_dict(entry))

    def snapshot(self, request: Request) -> Reply:
        event_id = request.params["event"]
        entry = self.recent.get(event_id)
        if request.query.get("size") == "full":
            body = self._snapshot_bytes(event_id, entry)
        else:
            key = ("event", event_id, entry.snapshot_seq if entry is not None else 0)
            body = self.thumbnails.get(key, lambda: self._snapshot_bytes(event_id, entry))
        if body is None:
            raise HttpError(404, "no snapshot kept for this event")
        return Reply(200, body, "image/jpeg", {"Cache-Control": IMAGE_CACHE})

    def _snapshot_bytes(self, event_id: str, entry: RecentEvent | None) -> bytes | None:
        if entry is not None and entry.snapshot is not None:
            return entry.snapshot
        if self.snapshot_dir is None or not EVENT_ID.fullmatch(event_id):
            return None
        path = (self.snapshot_dir / f"{event_id}.jpg").resolve()
        if path.parent != self.snapshot_dir:  # never leave the snapshot folder, symlinks included
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def _event_dict(self, entry: RecentEvent) -> dict[str, Any]:
        payload = entry.payload
        event_id = str(payload.get("id"))
        has_snapshot = entry.snapshot is not None or bool(payload.get("snapshot")) or self._on_disk(event_id)
        return {
            "seq": entry.seq,
            "id": event_id,
            "camera": payload.get("camera"),
            "type": payload.get("type"),
            "start_time": payload.get("start_time"),
            "end_time": payload.get("end_time"),
            "frame_time": payload.get("frame_time"),
            "score": (payload.get("best") or {}).get("score"),
            "identity": payload.get("identity"),
            "stranger_group": entry.stranger_group,
            "snapshot": f"/api/events/{event_id}/snapshot?v={entry.snapshot_seq}" if has_snapshot else None,
            "payload": payload,
        }

    def _on_disk(self, event_id: str) -> bool:
        return self.snapshot_dir is not None and (self.snapshot_dir / f"{event_id}.jpg").is_file()

    def stream(self, request: Request, write: Callable[[bytes], None], stopping: threading.Event) -> None:
        """Server-sent events: `events` with what changed, `library` when the face library changed."""
        if not self._streams.acquire(blocking=False):
            write(b"retry: 10000\nevent: busy\ndata: {}\n\n")
            return
        try:
            after = request.int_query("after", self.recent.seq)
            resumed = request.headers.get("Last-Event-ID", "")
            if resumed.isdigit():  # a browser reconnecting says what it has already seen
                after = int(resumed)
            version = self.library_version()
            write(b"retry: 3000\n\n")
            last_write = time.monotonic()
            while not stopping.is_set():
                seq = self.recent.wait_for_change(after, 1.0)
                sent = False
                if seq > after:
                    changed = [self._event_dict(e) for e in self.recent.changed_since(after, 200)]
                    after = seq
                    write(_sse("events", {"events": changed, "seq": seq}, seq))
                    sent = True
                current = self.library_version()
                if current != version:
                    version = current
                    write(_sse("library", {"version": current}))
                    sent = True
                if sent:
                    last_write = time.monotonic()
                elif time.monotonic() - last_write > KEEPALIVE:
                    write(b": keep-alive\n\n")  # also notices a browser that went away
                    last_write = time.monotonic()
                stopping.wait(0.25)  # at most four messages a second per browser
        finally:
            self._streams.release()


def _sse(kind: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    text = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return (text + "data: " + json.dumps(data, separators=(",", ":")) + "\n\n").encode()
