"""The outbox writer: the detection thread never waits for the disk, nothing older than commit_interval is
lost to a SIGKILL, and events a killed daemon left open are ended on the next start."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mosquitto import Mosquitto, Received, Subscriber, client_config
from mqtt_child import EPOCH, ChildProcess

from nvr.mqtt.config import OutboxConfig
from nvr.mqtt.outbox import NewMessage, Outbox
from nvr.mqtt.writer import Batch, OpenEvent, OutboxWriter

Factory = Callable[..., Subscriber]


def message(i: int) -> NewMessage:
    return NewMessage("cam", "nvr/cam/face", f'{{"n": {i}}}'.encode())


def test_submit_returns_while_a_commit_is_stuck_and_batches_what_waited() -> None:
    """A commit that blocks (an fsync on a dying SD card) never holds up the caller: what is submitted
    meanwhile waits in memory and goes to disk in one later commit."""
    gate = threading.Event()
    committed: list[Batch] = []

    def commit(batch: Batch) -> None:
        gate.wait()
        committed.append(batch)

    writer = OutboxWriter(commit, commit_interval=0.1, max_messages=10_000)
    writer.submit([message(0)])  # the writer takes it and blocks in commit

    def submit_the_rest() -> None:
        for i in range(1, 500):
            writer.submit([message(i)])

    submitter = threading.Thread(target=submit_the_rest)
    submitter.start()
    submitter.join(30)
    assert not submitter.is_alive(), "submit waited for the disk"
    assert not writer.flush(timeout=0.2)  # really stuck
    gate.set()
    assert writer.flush(timeout=30)
    assert [m.payload for b in committed for m in b.messages] == [message(i).payload for i in range(500)]
    assert len(committed) <= 3  # the 499 that waited went in one or two transactions, not 499
    writer.close()


def test_open_events_ride_in_the_same_transactions(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db", OutboxConfig())
    record = OpenEvent("1.000000-abcdef", "cam", 1.0, 2.5, b'{"type": "new"}')
    outbox.submit([message(1)], opened=[record])
    assert outbox.flush(10)
    assert outbox.open_events() == [record]
    later = OpenEvent(record.id, "cam", 1.0, 4.0, b'{"type": "update"}')
    outbox.submit([message(2)], opened=[later])
    outbox.submit([message(3)], closed=[record.id])
    outbox.close()
    reopened = Outbox(tmp_path / "o.db", OutboxConfig())
    assert reopened.open_events() == [] and len(reopened) == 3
    reopened.close()


def test_nothing_older_than_commit_interval_is_lost_to_sigkill(
    broker_factory: Callable[..., Mosquitto], child_factory: Callable[..., ChildProcess], tmp_path: Path
) -> None:
    """Events handed over without anyone waiting for the disk are all there after a kill -9 that comes
    commit_interval after the last one was made (the promise the README makes)."""
    broker = broker_factory()
    outbox = tmp_path / "outbox.sqlite3"
    config = client_config(broker, outbox)
    config = config.model_copy(update={"outbox": OutboxConfig(path=outbox, commit_interval=0.5)})
    broker.stop()  # nothing is delivered (and deleted) while we count
    child = child_factory(config, tmp_path / "c.json", "--camera", "a", "--count", "400", "--no-flush")
    child.expect("produced 400")
    child.expect("due")
    child.kill()
    rows = sqlite3.connect(outbox).execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert rows == 400


def test_events_left_open_by_a_killed_daemon_end_on_the_next_start(
    broker_factory: Callable[..., Mosquitto],
    subscriber_factory: Factory,
    child_factory: Callable[..., ChildProcess],
    tmp_path: Path,
) -> None:
    broker = broker_factory()
    subscriber = subscriber_factory(broker, ["nvr/+/face"])
    outbox = tmp_path / "outbox.sqlite3"
    config = client_config(broker, outbox)
    # Event 0 of each camera: `new` and two `update`s (frame times EPOCH+0..2), then the process dies.
    first = child_factory(config, tmp_path / "1.json", "--camera", "a", "--camera", "b", "--count", "3")
    first.expect("produced 6")

    def arrived(count: int) -> Callable[[list[Received]], bool]:
        return lambda msgs: len(msgs) >= count

    def ended(msgs: list[Received]) -> list[dict[str, Any]]:
        return [p for p in (json.loads(m.payload) for m in msgs) if p["type"] == "end"]

    subscriber.wait_for(arrived(6), timeout=30)
    first.kill()
    second = child_factory(config, tmp_path / "2.json", "--camera", "a", "--camera", "b")
    second.expect("produced 0")
    # Wait for the two `end`s, not for a count: the first run's messages may arrive again before them (their
    # PUBACKs came, their deletion was not committed yet when it was killed; QoS 1 allows the repeat).
    subscriber.wait_for(lambda msgs: len(ended(msgs)) >= 2, timeout=30)
    ends = ended(subscriber.messages)
    assert sorted(e["camera"] for e in ends) == ["a", "b"]
    for end in ends:
        assert end["reason"] == "daemon restarted"
        assert end["end_time"] == EPOCH + 2  # the last sighting that was sent
        assert end["duration"] == 2.0 and end["snapshot"] is False
    assert second.terminate() == 0
    third = child_factory(config, tmp_path / "3.json", "--camera", "a")
    third.expect("produced 0")
    assert third.terminate() == 0
    assert len([m for m in subscriber.messages if json.loads(m.payload)["type"] == "end"]) == 2  # once
