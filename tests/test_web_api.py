"""The web UI's JSON API with real parts: events through the recent-events sink, real snapshots and
thumbnails, the real face library, and enrolment of real photos with the real detector and embedder."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from web_support import PASSWORD, Client, face_event, jpeg_of, multipart, open_enroller, web_server

from nvr.contracts.identity import Identity
from nvr.events.config import EventFileConfig
from nvr.events.sink import JsonLinesSink
from nvr.recognition.enrolment import encode_crop, enrolment_face
from nvr.recognition.library import FaceLibrary
from nvr.recognition.strangers import StrangerEvent, StrangerStore
from nvr.web.faces import LibraryStrangers
from nvr.web.images import decode_photo
from nvr.web.recent import RecentEvents

AUTH = {"Authorization": f"Bearer {PASSWORD}"}


@pytest.fixture(scope="module")
def enroller():  # type: ignore[no-untyped-def]
    return open_enroller()


def test_recent_events_sink_forwards_and_keeps_the_latest_message(tmp_path: Path) -> None:
    inner = JsonLinesSink(EventFileConfig(path=tmp_path / "events.jsonl"))
    recent = RecentEvents(capacity=3)
    sink = recent.wrap(inner)
    first = face_event("door", event_id="1763683200.000000-aaaaaa", snapshot=b"jpeg-1")
    sink.publish_events([first])
    sink.publish_events([face_event("door", event_id=first.id, kind="update")])
    sink.publish_face_count("door", 1)
    inner.flush()  # the file is written on its own thread
    assert len(tmp_path.joinpath("events.jsonl").read_text().splitlines()) == 2  # the real sink got both
    entry = recent.get(first.id)
    assert entry is not None and entry.payload["type"] == "update" and entry.snapshot == b"jpeg-1"
    assert recent.face_counts() == {"door": 1}
    sink.enable_strangers("door")
    sink.publish_stranger(StrangerEvent(first.id, "door", first.start_time, "unknown_7", True))
    assert entry.stranger_group == "unknown_7"
    inner.flush()
    assert "stranger" in tmp_path.joinpath("events.jsonl").read_text().splitlines()[-1]  # forwarded
    for n in range(4):  # bounded: the oldest events go
        sink.publish_events([face_event("yard", event_id=f"17636832{n:02d}.000000-bbbbbb")])
    assert recent.get(first.id) is None and len(recent.page(limit=10)[0]) == 3
    sink.close()


def test_events_are_paginated_newest_first_and_filtered(tmp_path: Path) -> None:
    with web_server(tmp_path, recent_events=5000) as (server, recent, _):
        for n in range(3000):
            recent.record(
                [face_event("door" if n % 3 else "yard", event_id=f"{1763683200 + n}.000000-{n:06d}")]
            )
        client = Client(server.url)
        seen: list[str] = []
        cursor = None
        while True:
            query = "/api/events?limit=200&camera=yard" + (f"&before={cursor}" if cursor else "")
            page = client.get(query, **AUTH).json()
            seen += [e["id"] for e in page["events"]]
            assert all(e["camera"] == "yard" for e in page["events"])
            cursor = page["next"]
            if cursor is None:
                break
        expected = [f"{1763683200 + n}.000000-{n:06d}" for n in range(2999, -1, -1) if n % 3 == 0]
        assert seen == expected
        # Live updates: what changed after a seq, oldest change first.
        seq = client.get("/api/events?limit=1", **AUTH).json()["seq"]
        recent.record([face_event("door", event_id="1763690000.000000-newnew")])
        changed = client.get(f"/api/events?after={seq}", **AUTH).json()["events"]
        assert [e["id"] for e in changed] == ["1763690000.000000-newnew"]
        assert client.get("/api/events?limit=abc", **AUTH).status == 400


def test_snapshot_thumbnails_are_made_once_and_identity_is_shown(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, recent, _):
        photo = jpeg_of("faces/obama/1.jpg", max_side=320)
        identity = Identity("Barack", 0.71234, "fr512", "p1")
        event = face_event(snapshot=photo, identity=identity)
        recent.record([event])
        client = Client(server.url)
        listed = client.get("/api/events", **AUTH).json()["events"][0]
        assert listed["identity"] == {"name": "Barack", "score": 0.7123, "model": "fr512"}
        first = client.get(listed["snapshot"], **AUTH)
        second = client.get(listed["snapshot"], **AUTH)
        assert first.status == 200 and first.headers["Content-Type"] == "image/jpeg"
        assert first.body == second.body and len(first.body) < len(photo)
        assert server_thumbnails_made(server) == 1
        full = client.get(f"/api/events/{event.id}/snapshot?size=full", **AUTH)
        assert full.body == photo


def server_thumbnails_made(server) -> int:  # type: ignore[no-untyped-def]
    events_api = next(r.handler for r in server._routes if r.handler and r.handler.__name__ == "snapshot")
    return int(events_api.__self__.thumbnails.made)


def test_live_updates_arrive_as_server_sent_events(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, recent, library):
        host = server.url.split("//")[1]
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("GET", "/api/events/stream?after=0", headers=AUTH)
        response = connection.getresponse()
        assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
        recent.record([face_event("door", event_id="1763683200.000000-stream")])
        library.add_person("Grace")

        def next_message() -> tuple[str, dict]:  # type: ignore[type-arg]
            kind, data = "", ""
            while True:
                line = response.fp.readline().decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line == "" and kind:
                    return kind, json.loads(data)

        messages = dict([next_message(), next_message()])
        assert [e["id"] for e in messages["events"]["events"]] == ["1763683200.000000-stream"]
        assert messages["library"]["version"] == library.version()
        connection.close()
        # A reconnecting browser sends the last id it saw: it gets what came after it, not the URL's `after`.
        seen = recent.seq
        recent.record([face_event("door", event_id="1763683201.000000-missed")])
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request("GET", "/api/events/stream?after=0", headers={**AUTH, "Last-Event-ID": str(seen)})
        response = connection.getresponse()
        kind, data = next_message()
        assert kind == "events" and [e["id"] for e in data["events"]] == ["1763683201.000000-missed"]
        connection.close()


def test_people_upload_rename_and_remove_in_the_shared_library(tmp_path: Path, enroller) -> None:  # type: ignore[no-untyped-def]
    with web_server(tmp_path, enroller=enroller) as (server, _, library):
        client = Client(server.url)
        client.login()
        other_process = FaceLibrary(library.path)  # as the daemon or `nvr faces` would see it
        version = other_process.version()
        files = [
            ("biden1.jpg", (tmp_assets := jpeg_of("faces/biden/1.jpg", 1024))),
            ("notes.txt", b"not a photo"),
            ("biden2.jpg", jpeg_of("faces/biden/2.jpg", 1024)),
            ("tiny.jpg", jpeg_of("faces/biden/2.jpg", 60)),
        ]
        body, content_type = multipart({"person": "Joe Biden"}, files)
        reply = client.request(
            "POST", "/api/photos", body, {"Content-Type": content_type, "X-CSRF-Token": client.csrf or ""}
        ).json()
        assert [a["file"] for a in reply["accepted"]] == ["biden1.jpg", "biden2.jpg"]
        rejected = {r["file"]: r["error"] for r in reply["rejected"]}
        assert rejected["notes.txt"].startswith("not an image")
        assert "too small" in rejected["tiny.jpg"] or "no face" in rejected["tiny.jpg"]
        person = reply["person"]
        assert person["name"] == "Joe Biden" and person["samples"] == 2
        assert other_process.version() != version  # the running daemon's watcher sees the change
        assert [p.name for p in other_process.people()] == ["Joe Biden"]
        samples = other_process.samples(person["id"])
        assert len(samples) == 2 and len(other_process.models()) == 1

        crop = client.get(f"/api/samples/{samples[0].id}/crop")
        assert crop.status == 200 and crop.body == other_process.sample_crop(samples[0].id)
        detail = client.get(f"/api/people/{person['id']}").json()
        assert [s["id"] for s in detail["sample_list"]] == [s.id for s in samples]

        # An existing person by id: more photos; a no-face photo is refused with its own message.
        body, content_type = multipart(
            {"person": person["id"]}, [("blank.png", blank_png()), ("b.jpg", tmp_assets)]
        )
        reply = client.request(
            "POST", "/api/photos", body, {"Content-Type": content_type, "X-CSRF-Token": client.csrf or ""}
        ).json()
        assert reply["rejected"] == [{"file": "blank.png", "error": "no face found"}]
        assert reply["person"]["samples"] == 3

        renamed = client.send("POST", f"/api/people/{person['id']}/rename", {"name": "Joseph Biden"})
        assert renamed.status == 200 and renamed.json()["slug"] == "joseph_biden"
        clash = client.send("POST", "/api/people", {"name": "joseph biden"})
        assert clash.status == 400 and str(library.path) not in clash.json()["error"]
        assert client.send("DELETE", f"/api/samples/{samples[0].id}").status == 200
        assert len(other_process.samples(person["id"])) == 2
        assert client.send("DELETE", f"/api/samples/{samples[0].id}").status == 404
        assert client.send("DELETE", f"/api/people/{person['id']}").status == 200
        assert other_process.people() == []
        assert client.get(f"/api/people/{person['id']}").status == 404
        other_process.close()


def blank_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (320, 240), (200, 200, 200)).save(out, "PNG")
    return out.getvalue()


def test_without_an_enroller_or_strangers_the_api_says_so(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, _, _):
        client = Client(server.url)
        client.login()
        body, content_type = multipart({"person": "x"}, [("a.jpg", b"x")])
        reply = client.request(
            "POST", "/api/photos", body, {"Content-Type": content_type, "X-CSRF-Token": client.csrf or ""}
        )
        assert reply.status == 503 and "embedder" in reply.json()["error"]
        assert client.get("/api/strangers").json() == {
            "groups": [],
            "total": 0,
            "offset": 0,
            "available": False,
        }
        assert client.send("DELETE", "/api/strangers/unknown_1").status == 503


def test_stranger_groups_name_merge_and_remove(tmp_path: Path, enroller) -> None:  # type: ignore[no-untyped-def]
    library = FaceLibrary(tmp_path / "faces.sqlite3")
    store = StrangerStore(library.path)
    detector, embedder = enroller._open_models()
    faces = {}
    for photo in ("obama/1.jpg", "obama/2.jpg", "biden/1.jpg", "kit_harington/1.jpeg"):
        pixels = decode_photo(jpeg_of(f"faces/{photo}", 1024))
        aligned = enrolment_face(detector, pixels)
        faces[photo] = (aligned, embedder.embed(aligned[None])[0])
    groups = {}
    for n, (photo, (aligned, vector)) in enumerate(faces.items()):
        group = store.record(
            vector, embedder.model_id, encode_crop(aligned), camera="door" if n else "yard",
            event_id=f"176368320{n}.000000-abcdef", time=1763683200.0 + n, join_threshold=0.4,
        )  # fmt: skip
        groups[photo] = group.name
    assert (
        groups["obama/1.jpg"]
        == groups["obama/2.jpg"]
        != groups["biden/1.jpg"]
        != groups["kit_harington/1.jpeg"]
    )
    obama, biden, kit = groups["obama/1.jpg"], groups["biden/1.jpg"], groups["kit_harington/1.jpeg"]
    with web_server(tmp_path, library=library, strangers=LibraryStrangers(store, library)) as (server, _, _):
        client = Client(server.url)
        client.login()
        listed = {g["name"]: g for g in client.get("/api/strangers").json()["groups"]}
        assert listed[obama]["count"] == 2 and listed[obama]["cameras"] == ["door", "yard"]
        assert len(listed[obama]["crops"]) == 2
        crop = client.get(f"/api/strangers/{obama}/crops/{listed[obama]['crops'][0]}")
        assert crop.status == 200 and crop.body[:2] == b"\xff\xd8"
        # A crop id that belongs to another group is not served under this one.
        assert client.get(f"/api/strangers/{obama}/crops/{listed[biden]['crops'][0]}").status == 404
        assert client.send("POST", f"/api/strangers/{obama}/merge", {"into": "../people"}).status == 400
        merged = client.send("POST", f"/api/strangers/{kit}/merge", {"into": biden})
        into = store.group(biden)
        assert merged.status == 200 and store.group(kit) is None and into is not None and into.sightings == 2
        named = client.send("POST", f"/api/strangers/{obama}/name", {"name": "Barack Obama"})
        assert named.status == 200 and named.json()["person"]["name"] == "Barack Obama"
        person = library.person("Barack Obama")
        assert person is not None and len(library.samples(person)) == 2 and store.group(obama) is None
        assert client.send("DELETE", f"/api/strangers/{biden}").status == 200
        assert client.get("/api/strangers").json()["groups"] == []
        assert client.send("DELETE", f"/api/strangers/{biden}").status == 404
    store.close()
