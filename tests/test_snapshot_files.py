"""Each event's snapshot kept as `<state dir>/snapshots/<event id>.jpg`: with or without a broker, bounded
in count and age, named in the event file's lines, written off the detection thread."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import jsonschema
import pytest
from mqtt_child import synthetic_event
from PIL import Image
from video_faces import empty_frame, video_frames

from nvr.daemon.stages import FaceStages
from nvr.errors import ConfigError, ExitCode
from nvr.events.config import EventFileConfig, EventsConfig, SnapshotConfig
from nvr.events.payload import SCHEMA_PATH, FaceEvent
from nvr.events.sink import JsonLinesSink, read_event_lines
from nvr.events.snapshot_store import SnapshotFilesSink, SnapshotStore
from nvr.recognition.presence import PeopleChange, PresenceState
from nvr.recognition.strangers import StrangerEvent
from nvr.tracking.config import TrackerConfig


def jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(out, "JPEG")
    return out.getvalue()


def with_snapshot(k: int, shade: int = 128) -> FaceEvent:
    return dataclasses.replace(synthetic_event("cam", k), snapshot=jpeg(shade))


def test_without_a_broker_every_promised_snapshot_is_a_file_named_in_the_event_lines(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snapshots", keep_files=100, keep_days=7)
    sink = JsonLinesSink(EventFileConfig(path=tmp_path / "events.jsonl"), store)
    stage = FaceStages(
        EventsConfig(update_interval=0.3, tracker=TrackerConfig(end_after=0.4)), sink, ["hamilton"]
    )
    clip = video_frames()
    for frame in clip:
        stage.handle(frame.result())
    stage.handle(empty_frame(clip[-1], 1.0))
    sink.close()  # closes the store too: every queued file is written
    events = read_event_lines(tmp_path / "events.jsonl")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    promised = [e for e in events if e["snapshot"]]
    assert promised, "the clip's events carry snapshots"
    for event in events:
        validator.validate(event)
        # Every line of an event whose snapshot was kept names the file, not only the line that wrote it.
        assert event["snapshot_path"] == str(tmp_path / "snapshots" / f"{event['id']}.jpg")
    for event in promised:
        with Image.open(event["snapshot_path"]) as image:
            assert image.format == "JPEG" and min(image.size) > 16
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == sorted(
        {f"{e['id']}.jpg" for e in events}
    ), "one file per event, no temporary files left"


def test_without_a_store_no_line_promises_a_snapshot(tmp_path: Path) -> None:
    sink = JsonLinesSink(EventFileConfig(path=tmp_path / "events.jsonl"))
    sink.publish_event(with_snapshot(0))
    sink.close()
    (line,) = read_event_lines(tmp_path / "events.jsonl")
    assert line["snapshot"] is False and "snapshot_path" not in line


def test_the_newest_snapshot_of_an_event_replaces_the_older_one(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep_files=10, keep_days=7)
    first, second = with_snapshot(0, 10), with_snapshot(1, 240)
    assert first.id == second.id
    store.save(first.id, first.snapshot or b"")
    store.save(second.id, second.snapshot or b"")
    store.close()
    assert [p.name for p in tmp_path.iterdir()] == [f"{first.id}.jpg"]
    assert store.path_for(first.id).read_bytes() == second.snapshot


def test_the_store_keeps_at_most_keep_files_and_removes_the_oldest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep_files=3, keep_days=7)
    ids = [f"17000000{k:02d}.000000-abcdef" for k in range(8)]
    for k, event_id in enumerate(ids):
        assert store.save(event_id, jpeg(k))
        assert store.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i}.jpg" for i in ids[-3:]]
    assert store.written == 8 and store.removed == 5
    assert store.path_of(ids[0]) is None and store.path_of(ids[-1]) == tmp_path / f"{ids[-1]}.jpg"
    store.close()


def test_files_older_than_keep_days_are_removed_also_those_of_a_previous_run(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    old = tmp_path / "1700000000.000000-oldone.jpg"
    old.write_bytes(jpeg(1))
    os.utime(old, (now[0] - 3 * 86400, now[0] - 3 * 86400))  # left by a previous run, 3 days ago
    recent = tmp_path / "1799990000.000000-recent.jpg"
    recent.write_bytes(jpeg(2))
    os.utime(recent, (now[0] - 3600, now[0] - 3600))
    (tmp_path / ".1799990001.000000-broken.jpg.tmp").write_bytes(b"half")  # a write cut by a crash
    store = SnapshotStore(tmp_path, keep_files=100, keep_days=2, clock=lambda: now[0])
    assert store.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == [recent.name]
    store.save("1800000000.000000-fresh1", jpeg(3))
    now[0] += 2 * 86400 - 1800  # the previous run's recent file is now over two days old
    store.save("1800172800.000000-fresh2", jpeg(4))
    store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "1800000000.000000-fresh1.jpg",
        "1800172800.000000-fresh2.jpg",
    ]


def test_a_slow_disk_never_blocks_the_caller_and_the_line_then_promises_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore(tmp_path / "snapshots", keep_files=100, keep_days=7, queue_size=2)
    stuck, release = threading.Event(), threading.Event()
    write = store._write

    def slow_write(event_id: str, data: bytes) -> None:
        stuck.set()
        release.wait(30)
        write(event_id, data)

    monkeypatch.setattr(store, "_write", slow_write)
    sink = JsonLinesSink(EventFileConfig(path=tmp_path / "events.jsonl"), store)
    events = [with_snapshot(k * 5) for k in range(5)]  # five events, one snapshot each
    sink.publish_event(events[0])
    assert stuck.wait(10)  # the writer holds the first; two more fit the queue; the rest are dropped
    for event in events[1:]:
        sink.publish_event(event)
    release.set()
    sink.close()
    lines = read_event_lines(tmp_path / "events.jsonl")
    assert [line["snapshot"] for line in lines] == [True, True, True, False, False]
    assert ["snapshot_path" in line for line in lines] == [True, True, True, False, False]
    assert store.dropped == 2 and len(list((tmp_path / "snapshots").iterdir())) == 3


class Collect:
    def __init__(self) -> None:
        self.events: list[FaceEvent] = []
        self.closed = False

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        self.events += events

    def publish_face_count(self, camera: str, count: int) -> None:
        pass

    def enable_strangers(self, camera: str) -> None:
        pass

    def publish_stranger(self, event: StrangerEvent) -> None:
        pass

    def publish_presence(self, states: Sequence[PresenceState]) -> None:
        pass

    def publish_people(self, change: PeopleChange) -> None:
        pass

    def close(self, timeout: float = 5.0) -> None:
        self.closed = True


def test_with_a_broker_the_snapshots_are_kept_as_files_too(tmp_path: Path) -> None:
    inner = Collect()
    sink = SnapshotFilesSink(inner, SnapshotStore(tmp_path, keep_files=10, keep_days=7))
    events = [with_snapshot(0), synthetic_event("cam", 1)]
    sink.publish_events(events)
    sink.close()
    assert inner.events == events and inner.closed
    assert [p.name for p in tmp_path.iterdir()] == [f"{events[0].id}.jpg"]


def test_the_store_follows_the_snapshot_settings(tmp_path: Path) -> None:
    assert SnapshotStore.for_config(tmp_path, SnapshotConfig(keep_files=0)) is None
    assert SnapshotStore.for_config(tmp_path, SnapshotConfig(enabled=False)) is None
    store = SnapshotStore.for_config(tmp_path, SnapshotConfig(keep_files=5, keep_days=0.5))
    assert store is not None
    assert (store.directory, store.keep_files, store.max_age) == (tmp_path / "snapshots", 5, 43200.0)
    store.close()


def test_a_snapshot_folder_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")
    with pytest.raises(ConfigError) as info:
        SnapshotStore.for_config(blocker, SnapshotConfig())
    assert info.value.exit_code == ExitCode.CONFIG and str(blocker / "snapshots") in info.value.message
