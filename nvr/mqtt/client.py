"""The MQTT side of the daemon: the broker link (connection, retained state) and delivery from the
durable outbox (acks, retries, window), started and stopped together.

Threads: paho's network thread (nvr/mqtt/link.py) and the sender thread (nvr/mqtt/delivery.py). The
daemon pushes its figures down with `set_stats`; they go out on `<prefix>/stats` with the publisher's own.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import structlog

from nvr.mqtt.config import MqttConfig
from nvr.mqtt.connection import PROPERTIES_ALLOWANCE, publish_packet_size
from nvr.mqtt.delivery import Delivery
from nvr.mqtt.link import AckQueue, BrokerLink
from nvr.mqtt.outbox import NewMessage, Outbox, outbox_path
from nvr.mqtt.topics import Topics

log = structlog.get_logger(__name__)


class MqttPublisher:
    """Delivers the outbox to the broker and keeps the retained state topics (availability, discovery,
    face counts) current across reconnects."""

    def __init__(
        self,
        config: MqttConfig,
        cameras: Sequence[str] = (),
        *,
        outbox: Outbox | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """`cameras` get discovery configs from the start; others get theirs when first seen (`add_camera`).
        The outbox is `outbox`, else opened at `config.outbox.path` or in `state_dir`."""
        self.config = config
        self.topics = Topics(config.topic_prefix)
        acks: AckQueue = queue.SimpleQueue()  # paho's thread -> the sender thread
        wake = threading.Event()  # something to send or acknowledge
        self.link = BrokerLink(config, self.topics, acks, wake)
        if outbox is None:
            outbox = Outbox(outbox_path(config.outbox, state_dir), config.outbox)
        self.outbox = outbox
        self.delivery = Delivery(self.link, outbox, acks, wake, self.stats)
        for camera in cameras:
            self.add_camera(camera)
        self._started = False
        self._stopped = False

    def start(self) -> None:
        """Connect in the background; never blocks, never fails for an unreachable broker (it retries)."""
        if self._started:
            return
        self._started = True
        self.delivery.start()
        self.link.start()

    @property
    def connected(self) -> bool:
        return self.link.settled

    def wait_connected(self, timeout: float) -> None:
        """Wait until connected; raise NetworkError with the last connection failure otherwise."""
        self.link.wait_connected(timeout)

    @property
    def last_error(self) -> str | None:
        return self.link.last_error

    # -- what the pipeline calls ---------------------------------------------------------------------------

    def send(self, messages: Sequence[NewMessage]) -> None:
        """Commit messages to the outbox (durable from here on) and wake the sender."""
        self.outbox.put(messages)
        self.delivery.wake()

    def add_camera(self, camera: str) -> None:
        """Announce `camera`'s entities to Home Assistant (once; kept for every reconnect)."""
        self.link.add_camera(camera)

    def set_state(self, topic: str, payload: bytes) -> None:
        """Set a retained state topic; it is published now if connected, and again on every connect."""
        self.link.set_state(topic, payload)

    def set_stats(self, stats: Mapping[str, object]) -> None:
        """The daemon's latest figures (cameras, detection), published with the next stats message."""
        self.delivery.set_stats(stats)

    def payload_limit(self, topic: str) -> int | None:
        """The largest payload the broker accepts on `topic` (from its last CONNACK), None if unknown."""
        if self.link.max_packet is None:
            return None
        return self.link.max_packet - publish_packet_size(topic, 0, 1, PROPERTIES_ALLOWANCE)

    @property
    def counters(self) -> dict[str, int]:
        return {**self.link.counters, **self.delivery.counters}

    def stats(self) -> dict[str, object]:
        return {
            "connected": self.connected,
            **self.counters,
            "outbox": {
                "pending": len(self.outbox),
                "bytes": self.outbox.size_bytes,
                "dropped_full": self.outbox.dropped_full,
                "dropped_expired": self.outbox.dropped_expired,
            },
        }

    @property
    def outbox_pending(self) -> int:
        return len(self.outbox)

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered in time, publish `offline`, disconnect, close the outbox; what is not
        delivered stays in the outbox for the next start. Takes about `timeout` seconds at most (plus up to
        the connect timeout when stopped in the middle of a connection attempt)."""
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            self.link.stopping = True
            self.outbox.close()
            return
        deadline = time.monotonic() + timeout
        drain_until = deadline - min(2.5, timeout / 2)
        while (
            self.link.settled
            and (len(self.outbox) or self.delivery.handed)
            and time.monotonic() < drain_until
        ):
            time.sleep(0.02)
        self.delivery.stop()
        self.link.close(min(2.0, deadline - time.monotonic() - 0.5))
        self.delivery.process_acks()
        self.outbox.close()
        log.info("MQTT publisher stopped", left_in_outbox=self.outbox_pending)
