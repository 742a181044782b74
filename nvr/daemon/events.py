"""The daemon's end of the event stage: the stage and the sink it delivers to (MQTT or a local file)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from nvr.config import NvrConfig
from nvr.events.config import EventFileConfig
from nvr.events.sink import EventSink, JsonLinesSink
from nvr.events.snapshot_store import SnapshotFilesSink, SnapshotStore
from nvr.events.stage import EventStage
from nvr.mqtt.client import MqttPublisher
from nvr.mqtt.sink import MqttSink

log = structlog.get_logger("nvr.daemon")


def state_dir(config: NvrConfig) -> Path:
    """Where durable state goes: the config's state_dir, systemd's $STATE_DIRECTORY, or ~/.local/state/nvr."""
    if config.state_dir is not None:
        return config.state_dir.expanduser()
    systemd_state = os.environ.get("STATE_DIRECTORY")
    if systemd_state:
        return Path(systemd_state.split(":")[0])
    return Path.home() / ".local" / "state" / "nvr"


class EventOutput:
    """Owns the event stage (used by the detection thread), its sink and, with a broker, the publisher."""

    def __init__(
        self, stage: EventStage, sink: EventSink, description: str, publisher: MqttPublisher | None = None
    ) -> None:
        self.stage = stage
        self.sink = sink
        self.description = description
        self.publisher = publisher
        self.stats_provider: Callable[[], Mapping[str, object]] | None = None  # for <prefix>/stats
        self.snapshots: SnapshotStore | None = None  # <state dir>/snapshots/<event id>.jpg

    def close(self, timeout: float) -> None:
        """End open events (their `end` messages go into the outbox), deliver what can be delivered within
        `timeout` seconds (the rest stays in the outbox on disk), publish `offline`, disconnect."""
        try:
            self.stage.close()
        finally:
            if self.publisher is not None:
                self.publisher.stop(max(0.5, timeout))
            else:
                self.sink.close()
            if self.snapshots is not None:
                self.snapshots.close(timeout=1.0)  # a few small files; a stuck disk must not hold the exit


def open_event_output(config: NvrConfig, cameras: list[str]) -> EventOutput:
    mqtt = config.mqtt
    # Each event's snapshot as <state dir>/snapshots/<event id>.jpg, with or without a broker.
    snapshots = SnapshotStore.for_config(state_dir(config), config.events.snapshot)
    if mqtt is not None:
        output: EventOutput | None = None

        def stats() -> Mapping[str, object]:
            provider = output.stats_provider if output is not None else None
            return provider() if provider is not None else {}

        # Opens the outbox (in the state dir unless mqtt.outbox.path is set) and connects in the background.
        mqtt_sink = MqttSink(
            mqtt, state_dir(config), cameras=cameras, retain_snapshots=config.events.snapshot.retain,
            stats_provider=stats,
        )  # fmt: skip
        description = f"MQTT broker {mqtt.host}:{mqtt.effective_port}"
        sink: EventSink = mqtt_sink if snapshots is None else SnapshotFilesSink(mqtt_sink, snapshots)
        output = EventOutput(EventStage(config.events, sink, cameras), sink, description)
        output.publisher = mqtt_sink.publisher
        output.snapshots = snapshots
        return output
    file_config = config.event_file or EventFileConfig(path=state_dir(config) / "events.jsonl")
    file_sink = JsonLinesSink(file_config, snapshots)
    log.info("no MQTT broker configured: events go to the log and a file", path=str(file_config.path))
    description = f"no broker: events to the log and {file_config.path}"
    output = EventOutput(EventStage(config.events, file_sink, cameras), file_sink, description)
    output.snapshots = snapshots
    return output
