"""The JSON API of the face library and the stranger groups: people, samples, photos, strangers.

Every change goes straight into the library file the daemon watches, so it takes effect in the running
daemon within its watch interval, exactly as `nvr faces ...` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import structlog

from nvr.errors import NvrError
from nvr.recognition.library import FaceLibrary, LibraryError, Person, PersonError
from nvr.web.api import IMAGE_CACHE, route
from nvr.web.config import WebConfig
from nvr.web.enrol import Photo, PhotoEnroller
from nvr.web.faces import StrangerStore, person_dict, sample_dict
from nvr.web.http import HttpError, Reply, Request, json_reply
from nvr.web.images import decode_photo, parse_multipart
from nvr.web.server import Route

log = structlog.get_logger("nvr.web")


class FacesApi:
    def __init__(
        self,
        library: Callable[[], FaceLibrary | None],
        enroller: PhotoEnroller | None,
        strangers: StrangerStore | None,
        config: WebConfig,
    ) -> None:
        self._library = library
        self._enroller = enroller
        self._strangers = strangers
        self._config = config

    def routes(self) -> list[Route]:
        upload = self._config.max_upload_bytes
        return [
            route("GET", "/api/people", self.people),
            route("POST", "/api/people", self.add_person),
            route("GET", "/api/people/{person}", self.person),
            route("POST", "/api/people/{person}/rename", self.rename),
            route("DELETE", "/api/people/{person}", self.remove_person),
            route("POST", "/api/photos", self.upload, max_body=upload),
            route("GET", "/api/samples/{sample}/crop", self.sample_crop),
            route("DELETE", "/api/samples/{sample}", self.remove_sample),
            route("GET", "/api/strangers", self.groups),
            route("GET", "/api/strangers/{group}/crops/{n}", self.group_crop),
            route("POST", "/api/strangers/{group}/name", self.name_group),
            route("POST", "/api/strangers/{group}/merge", self.merge_groups),
            route("DELETE", "/api/strangers/{group}", self.remove_group),
        ]

    # -- people -----------------------------------------------------------------------------------------

    def people(self, request: Request) -> Reply:
        offset, limit = request.int_query("offset", 0), request.int_query("limit", 100, 1, 500)
        with self._open() as library:
            everyone = library.people()
            page = [person_dict(p, library.samples(p)) for p in everyone[offset : offset + limit]]
            version = library.version()
        return json_reply({"people": page, "total": len(everyone), "offset": offset, "version": version,
                           "enrol": self._enroller is not None})  # fmt: skip

    def person(self, request: Request) -> Reply:
        offset, limit = request.int_query("offset", 0), request.int_query("limit", 200, 1, 1000)
        with self._open() as library:
            person = self._find(library, request.params["person"])
            samples = library.samples(person)
        return json_reply({
            **person_dict(person, samples),
            "sample_list": [sample_dict(s) for s in samples[offset : offset + limit]], "offset": offset,
        })  # fmt: skip

    def add_person(self, request: Request) -> Reply:
        name = request.text_field(request.json(), "name")
        with self._open() as library:
            person = library.add_person(name)
        log.info("web: person added", person=person.id)
        return json_reply(person_dict(person, []), 201)

    def rename(self, request: Request) -> Reply:
        name = request.text_field(request.json(), "name")
        with self._open() as library:
            person = library.rename_person(self._find(library, request.params["person"]), name)
            samples = library.samples(person)
        log.info("web: person renamed", person=person.id)
        return json_reply(person_dict(person, samples))

    def remove_person(self, request: Request) -> Reply:
        with self._open() as library:
            person = self._find(library, request.params["person"])
            library.remove_person(person)
        log.info("web: person removed", person=person.id)
        return json_reply({"removed": person.id})

    def upload(self, request: Request) -> Reply:
        """Photos for a person (by name or id; created when new, if at least one photo is accepted)."""
        if self._enroller is None:
            raise HttpError(503, "enrolling photos needs the face detector and the embedder: not loaded")
        fields, files = parse_multipart(
            request.headers.get("Content-Type"), request.body, self._config.max_upload_files
        )
        key = fields.get("person", "").strip()
        if not key:
            raise HttpError(400, "'person' is required: the name of a new person or an existing one")
        photos = []
        for upload in files:
            try:  # decoded here, before anything else looks at the bytes
                photos.append(Photo(upload.filename, decode_photo(upload.data)))
            except ValueError as exc:
                photos.append(Photo(upload.filename, None, str(exc)))
        with self._open() as library:
            existing = library.person(key)
            outcome = self._enroller.enrol(library, existing.name if existing else key, photos)
            person = outcome.person or existing
            samples = library.samples(person) if person is not None else []
        log.info("web: photos enrolled", accepted=len(outcome.accepted), rejected=len(outcome.rejected))
        return json_reply({
            "person": person_dict(person, samples) if person is not None else None,
            "accepted": [{"file": name, "sample": sample} for name, sample in outcome.accepted],
            "rejected": [{"file": name, "error": reason} for name, reason in outcome.rejected],
        })  # fmt: skip

    def sample_crop(self, request: Request) -> Reply:
        with self._open() as library:
            crop = library.sample_crop(int(request.params["sample"]))
        return Reply(200, crop, "image/jpeg", {"Cache-Control": IMAGE_CACHE})

    def remove_sample(self, request: Request) -> Reply:
        sample_id = int(request.params["sample"])
        with self._open() as library:
            library.remove_sample(sample_id)
        log.info("web: sample removed", sample=sample_id)
        return json_reply({"removed": sample_id})

    # -- strangers --------------------------------------------------------------------------------------

    def groups(self, request: Request) -> Reply:
        offset, limit = request.int_query("offset", 0), request.int_query("limit", 50, 1, 200)
        if self._strangers is None:
            return json_reply({"groups": [], "total": 0, "offset": 0, "available": False})
        with self._errors():
            groups = sorted(self._strangers.groups(), key=lambda g: g.last_seen, reverse=True)
        page = [g.to_dict() for g in groups[offset : offset + limit]]
        return json_reply({"groups": page, "total": len(groups), "offset": offset, "available": True})

    def group_crop(self, request: Request) -> Reply:
        with self._errors():
            crop = self._stranger_store().crop(request.params["group"], int(request.params["n"]))
        if crop is None:
            raise HttpError(404, "no such crop")
        return Reply(200, crop, "image/jpeg", {"Cache-Control": IMAGE_CACHE})

    def name_group(self, request: Request) -> Reply:
        name = request.text_field(request.json(), "name")
        with self._errors():
            person = self._stranger_store().name_group(request.params["group"], name)
        log.info("web: stranger group named", group=request.params["group"], person=person.id)
        return json_reply({"person": {"id": person.id, "name": person.name, "slug": person.slug}})

    def merge_groups(self, request: Request) -> Reply:
        into = request.text_field(request.json(), "into")
        with self._errors():
            self._stranger_store().merge(request.params["group"], into)
        return json_reply({"merged": request.params["group"], "into": into})

    def remove_group(self, request: Request) -> Reply:
        with self._errors():
            self._stranger_store().remove(request.params["group"])
        return json_reply({"removed": request.params["group"]})

    # -- helpers ----------------------------------------------------------------------------------------

    def _stranger_store(self) -> StrangerStore:
        if self._strangers is None:
            raise HttpError(503, "stranger groups need face recognition, which is not running")
        return self._strangers

    @staticmethod
    def _find(library: FaceLibrary, key: str) -> Person:
        person = library.person(key)
        if person is None:
            raise HttpError(404, "no such person")
        return person

    @contextmanager
    def _open(self) -> Iterator[FaceLibrary]:
        library = self._library()
        if library is None:
            raise HttpError(503, "no face library is configured")
        with self._errors(str(library.path)):
            yield library

    @contextmanager
    def _errors(self, path: str | None = None) -> Iterator[None]:
        """Library problems as one-line messages for the user (without the file's path)."""
        try:
            yield
        except PersonError as exc:
            status = 404 if exc.message.startswith("no ") else 400
            raise HttpError(status, _without(exc.message, path)) from None
        except LibraryError as exc:
            log.error("web: face library error", error=exc.message)
            raise HttpError(503, "the face library cannot be used now (see the daemon's log)") from None
        except (NvrError, ValueError) as exc:
            raise HttpError(400, _without(str(exc), path)) from None


def _without(message: str, path: str | None) -> str:
    return message.replace(f" in {path}", "").replace(path, "the face library") if path else message
