"""Without a broker: events go to the log and a rotated JSON-lines file, and nothing is queued."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import jsonschema
import pytest
from mqtt_child import synthetic_event
from structlog.testing import capture_logs
from video_faces import empty_frame, video_frames

from nvr.daemon.stages import FaceStages
from nvr.errors import ConfigError, ExitCode
from nvr.events.config import EventFileConfig, EventsConfig
from nvr.events.payload import SCHEMA_PATH
from nvr.events.sink import JsonLinesSink, read_event_lines
from nvr.tracking.config import TrackerConfig


def test_video_events_go_to_the_log_and_the_event_file(tmp_path: Path) -> None:
    sink = JsonLinesSink(EventFileConfig(path=tmp_path / "events.jsonl"))
    stage = FaceStages(
        EventsConfig(update_interval=0.3, tracker=TrackerConfig(end_after=0.4)), sink, ["hamilton"]
    )
    clip = video_frames()
    with capture_logs() as logs:
        for frame in clip:
            stage.handle(frame.result())
        stage.handle(empty_frame(clip[-1], 1.0))
        sink.close()  # lines are written (and then logged) on the file's own thread: all of them by now
    events = read_event_lines(tmp_path / "events.jsonl")
    assert len(events) == stage.events_out == sink.events_written >= 6
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    for event in events:
        validator.validate(event)
    assert {e["type"] for e in events} == {"new", "update", "end"}
    logged = [e for e in logs if e["event"].startswith("face ")]
    assert [(e["event"], e["event_id"]) for e in logged] == [(f"face {e['type']}", e["id"]) for e in events]
    assert all(e["camera"] == "hamilton" and e["log_level"] == "info" for e in logged)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"], "no outbox without a broker"


def test_the_event_file_rotates_and_keeps_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink(EventFileConfig(path=path, max_bytes=4096, backups=2))
    for k in range(40):  # about 700 bytes each: several rotations
        sink.publish_event(synthetic_event("cam", k))
    sink.close()
    files = [path.with_name("events.jsonl.2"), path.with_name("events.jsonl.1"), path]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
    assert all(f.stat().st_size <= 4096 for f in files)
    frame_times = [e["frame_time"] for f in files for e in read_event_lines(f)]
    assert (
        frame_times == sorted(frame_times) and frame_times[-1] == synthetic_event("cam", 39).face.frame_time
    )
    # Reopening appends to the current file.
    again = JsonLinesSink(EventFileConfig(path=path, max_bytes=4096, backups=2))
    again.publish_event(synthetic_event("cam", 40))
    again.close()
    assert read_event_lines(path)[-1]["frame_time"] == synthetic_event("cam", 40).face.frame_time


def test_bad_events_are_not_written(tmp_path: Path) -> None:
    sink = JsonLinesSink(EventFileConfig(path=tmp_path / "events.jsonl"))
    good = synthetic_event("cam", 0)
    with capture_logs() as logs:
        sink.publish_event(dataclasses.replace(good, face=dataclasses.replace(good.face, score=math.inf)))
    sink.publish_event(good)
    sink.close()
    assert [e["frame_time"] for e in read_event_lines(tmp_path / "events.jsonl")] == [good.face.frame_time]
    assert sink.events_rejected == 1
    rejected = [(e["event"], e["event_id"], e["camera"]) for e in logs]
    assert rejected == [("face event not written", good.id, "cam")]


def test_an_unwritable_event_file_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as info:
        JsonLinesSink(EventFileConfig(path=blocker / "events.jsonl"))
    assert info.value.exit_code == ExitCode.CONFIG and str(blocker) in info.value.message
