"""The daemon's end of the event stage: the stage and the sink it delivers to (MQTT or a local file)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import structlog

from nvr.assets import systemd_state_directory
from nvr.config import NvrConfig
from nvr.daemon.recognition import RecognitionSetup, open_recognition
from nvr.daemon.stages import FaceStages
from nvr.events.config import EventFileConfig
from nvr.events.sink import EventSink, JsonLinesSink
from nvr.events.snapshot_store import SnapshotFilesSink, SnapshotStore
from nvr.mqtt.client import MqttPublisher
from nvr.mqtt.sink import MqttSink
from nvr.recognition.output import RecognitionSink
from nvr.recognition.stage import EmbedderLike

log = structlog.get_logger(__name__)


def state_dir(config: NvrConfig) -> Path:
    """Where durable state goes: the config's state_dir, systemd's $STATE_DIRECTORY, or ~/.local/state/nvr."""
    if config.state_dir is not None:
        return config.state_dir.expanduser()
    systemd_state = systemd_state_directory()
    if systemd_state is not None:
        return systemd_state
    return Path.home() / ".local" / "state" / "nvr"


class EventOutput:
    """Owns the stages after detection (run by the detection thread), their sink and, with a broker, the
    publisher."""

    def __init__(
        self,
        stage: FaceStages,
        sink: EventSink,
        description: str,
        publisher: MqttPublisher | None = None,
        recognition: RecognitionSetup | None = None,
    ) -> None:
        self.stage = stage
        self.recognition = recognition or RecognitionSetup()
        self.sink = sink
        self.description = description
        self.publisher = publisher
        self.snapshots: SnapshotStore | None = None  # <state dir>/snapshots/<event id>.jpg

    @property
    def wants_stats(self) -> bool:
        """Whether `<prefix>/stats` is published (a broker, and a stats interval)."""
        return self.publisher is not None and self.publisher.config.stats_interval > 0

    def push_stats(self, stats: Mapping[str, object]) -> None:
        """The daemon's latest figures for `<prefix>/stats`."""
        if self.publisher is not None:
            self.publisher.set_stats(stats)

    def close(self, timeout: float) -> None:
        """End open events (their `end` messages go into the outbox), deliver what can be delivered within
        `timeout` seconds (the rest stays in the outbox on disk), publish `offline`, disconnect."""
        try:
            self.stage.close()
        finally:
            self.recognition.close()
            if self.publisher is not None:
                self.publisher.stop(max(0.5, timeout))
            else:
                self.sink.close()
            if self.snapshots is not None:
                self.snapshots.close(timeout=1.0)  # a few small files; a stuck disk must not hold the exit


class DaemonSink(EventSink, RecognitionSink, Protocol):
    """What the daemon's sinks (MQTT, the no-broker file) take: events, and recognition's output."""


def _stages(
    config: NvrConfig, sink: DaemonSink, cameras: list[str], config_dir: Path, hailo: EmbedderLike | None
) -> tuple[FaceStages, RecognitionSetup]:
    setup = open_recognition(config, config_dir, state_dir(config), sink, hailo)
    wiring = (setup.output, setup.factory) if setup.output is not None and setup.factory is not None else None
    return FaceStages(config.events, sink, cameras, recognition=wiring), setup


def open_event_output(
    config: NvrConfig,
    cameras: list[str],
    config_dir: Path | None = None,
    hailo_embedder: EmbedderLike | None = None,
    wrap: Callable[[DaemonSink], DaemonSink] | None = None,
) -> EventOutput:
    """The stages after detection and their sink; `hailo_embedder`: recognition's embedder on the detector's
    VDevice, when both are HEFs; `wrap` puts an observer (the web UI's recent events) before the sink."""
    config_dir = config_dir or Path.cwd()
    mqtt = config.mqtt
    wrap = wrap or (lambda sink: sink)
    # Each event's snapshot as <state dir>/snapshots/<event id>.jpg, with or without a broker.
    snapshots = SnapshotStore.for_config(state_dir(config), config.events.snapshot)
    if mqtt is not None:
        # Opens the outbox (in the state dir unless mqtt.outbox.path is set) and connects in the background.
        mqtt_sink = MqttSink(
            mqtt, state_dir(config), cameras=cameras, retain_snapshots=config.events.snapshot.retain
        )  # fmt: skip
        description = f"MQTT broker {mqtt.host}:{mqtt.effective_port}"
        files: DaemonSink = mqtt_sink if snapshots is None else SnapshotFilesSink(mqtt_sink, snapshots)
        stages, setup = _stages(config, wrap(files), cameras, config_dir, hailo_embedder)
        output = EventOutput(stages, mqtt_sink, description, mqtt_sink.publisher, setup)
        output.snapshots = snapshots
        return output
    file_config = config.event_file or EventFileConfig(path=state_dir(config) / "events.jsonl")
    sink = JsonLinesSink(file_config, snapshots)  # it names each event's snapshot file in its lines
    log.info("no MQTT broker configured: events go to the log and a file", path=str(file_config.path))
    description = f"no broker: events to the log and {file_config.path}"
    stages, setup = _stages(config, wrap(sink), cameras, config_dir, hailo_embedder)
    output = EventOutput(stages, sink, description, recognition=setup)
    output.snapshots = snapshots
    return output
