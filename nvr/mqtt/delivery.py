"""Delivery: the durable outbox and the due retained states handed to the broker link, in order.

One sender thread hands outbox rows to paho in order, at most `window` unacknowledged at a time (the
link's window, below the broker's Receive Maximum), and deletes each row when its PUBACK arrives. A refusal
that may pass (quota exceeded, broker busy) is sent again a few times; what can never be sent (refused for
good, over the broker's maximum packet size, a topic paho rejects) is dropped, so the queue never sticks.
It also publishes `<prefix>/stats` every `stats_interval`: its own figures and the daemon's latest, which
the daemon pushes down with `set_stats`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping

import structlog
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from nvr.mqtt.connection import FIRST_FAILURE_CODE, NOT_AUTHORIZED, PERMANENT_REFUSALS, publish_packet_size
from nvr.mqtt.link import AckQueue, BrokerLink
from nvr.mqtt.outbox import Outbox, OutboxMessage

log = structlog.get_logger(__name__)

_REFUSAL_LOG_INTERVAL = 60.0  # seconds between two errors about the same refused topic
_HOUSEKEEPING_INTERVAL = 10.0  # seconds between outbox age checks
_MAX_RETRIES = 5  # times a message refused for a passing reason is sent again before it is dropped
_SENT = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)  # paho took it (queued if offline)


class Delivery:
    def __init__(
        self,
        link: BrokerLink,
        outbox: Outbox,
        acks: AckQueue,
        wake: threading.Event,
        stats: Callable[[], Mapping[str, object]],
    ) -> None:
        """`acks` and `wake` are the ones the link fills and sets; `stats` gives the publisher's own figures
        for `<prefix>/stats`."""
        self._link = link
        self._config = link.config
        self.outbox = outbox
        self._acks = acks
        self._wake = wake
        self._own_stats = stats
        self._daemon_stats: Mapping[str, object] = {}  # pushed down by the daemon (any thread)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt-sender", daemon=True)
        # Sender-thread state.
        self.handed: dict[int, tuple[int | None, str]] = {}  # paho mid -> (outbox seq or None, topic)
        self._last_handed = 0
        self._refusal_logged: dict[str, float] = {}
        self._retries: dict[int, int] = {}  # outbox seq -> times the broker refused it for a passing reason
        self.counters = {"delivered": 0, "refused": 0, "oversize": 0}

    # -- any thread ------------------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def set_stats(self, stats: Mapping[str, object]) -> None:
        """The daemon's latest figures, published with the next `<prefix>/stats` message."""
        self._daemon_stats = stats

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the sender thread (what is not delivered stays in the outbox)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()

    # -- the sender thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        next_housekeeping = 0.0
        next_stats = time.monotonic() + self._config.stats_interval
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            self.process_acks()
            if self._stop.is_set():
                return
            now = time.monotonic()
            if self._link.settled:
                self._publish_states()
                self._publish_outbox()
                if self._config.stats_interval and now >= next_stats:
                    next_stats = now + self._config.stats_interval
                    self._publish_stats()
            if now >= next_housekeeping:
                next_housekeeping = now + _HOUSEKEEPING_INTERVAL
                self.outbox.expire()

    def process_acks(self) -> None:
        """Handle the PUBACKs that came in (the sender thread, or the stopping thread once it has ended)."""
        done: list[int] = []
        while True:
            try:
                mid, code, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            entry = self.handed.pop(mid, None)
            if entry is None:
                continue
            seq, topic = entry
            failed = code >= FIRST_FAILURE_CODE
            if failed and code not in PERMANENT_REFUSALS and seq is not None:
                self._retry(seq, topic, reason)
                continue
            if failed:
                self.counters["refused"] += 1
                self._refused(topic, reason, code)
            elif seq is not None:
                self.counters["delivered"] += 1
            if seq is not None:
                done.append(seq)  # delivered, or refused for good: retrying would block the queue forever
                self._retries.pop(seq, None)
        if done:
            self.outbox.delete(done)

    def _retry(self, seq: int, topic: str, reason: str) -> None:
        """A refusal that may pass later (quota exceeded, broker busy): send again from this message on,
        which keeps the order (what follows is sent again too; QoS 1 allows duplicates)."""
        tries = self._retries[seq] = self._retries.get(seq, 0) + 1
        if tries > _MAX_RETRIES:
            self.counters["refused"] += 1
            self._refused(topic, f"{reason}, {_MAX_RETRIES} times", None)
            self.outbox.delete([seq])
            del self._retries[seq]
            return
        log.warning(
            "MQTT broker did not take a message; sending it again",
            broker=self._link.where, topic=topic, reason=reason,
        )  # fmt: skip
        self._last_handed = min(self._last_handed, seq - 1)

    def _publish_states(self) -> None:
        pending = self._link.states.take_due()
        for i, (topic, payload) in enumerate(pending):
            if len(self.handed) >= self._link.window:
                self._link.states.put_back([t for t, _ in pending[i:]])
                return
            if self._too_big(topic, len(payload), 0):
                continue
            info = self._link.publish(topic, payload, qos=1, retain=True)
            if info.rc in _SENT:
                self.handed[info.mid] = (None, topic)

    def _publish_outbox(self) -> None:
        room = self._link.window - len(self.handed)
        if room <= 0:
            return
        dropped: list[int] = []
        for row in self.outbox.pending(self._last_handed, room):
            properties = self._properties(row)
            properties_size = 0 if properties is None else len(properties.pack())  # type: ignore[no-untyped-call]
            if self._too_big(row.topic, len(row.payload), properties_size):
                dropped.append(row.seq)
                self._last_handed = row.seq
                continue
            try:
                info = self._link.publish(row.topic, row.payload, row.qos, row.retain, properties)
            except ValueError as exc:  # paho refuses the topic or payload: it can never be sent
                log.error("message cannot be sent: dropped", topic=row.topic, error=str(exc))
                dropped.append(row.seq)
                self._last_handed = row.seq
                continue
            if info.rc not in _SENT:
                log.warning("MQTT client did not take a message; retrying", topic=row.topic, rc=str(info.rc))
                break
            self.handed[info.mid] = (row.seq, row.topic)
            self._last_handed = row.seq
        if dropped:
            self.outbox.delete(dropped)

    def _too_big(self, topic: str, payload_size: int, properties_size: int) -> bool:
        """Whether the broker would refuse the packet. Sending it anyway would get us disconnected, and
        paho would re-send it after every reconnect: the queue would be stuck for good."""
        size = publish_packet_size(topic, payload_size, 1, properties_size)
        limit = self._link.max_packet
        if limit is None or size <= limit:
            return False
        self.counters["oversize"] += 1
        log.error(
            "message over the broker's maximum packet size: dropped", topic=topic, size=size, limit=limit
        )
        return True

    def _properties(self, row: OutboxMessage) -> Properties | None:
        if self._config.protocol != "5":
            return None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if row.content_type:
            properties.ContentType = row.content_type
        if row.event_id:
            properties.UserProperty = ("event_id", row.event_id)
        return properties

    def _publish_stats(self) -> None:
        payload: dict[str, object] = {"time": round(time.time(), 3), "mqtt": self._own_stats()}
        payload.update(self._daemon_stats)
        self._link.publish(
            self._link.topics.stats, json.dumps(payload, default=str).encode(), qos=0, retain=False
        )

    def _refused(self, topic: str, reason: str, code: int | None) -> None:
        now = time.monotonic()
        if now - self._refusal_logged.get(topic, -_REFUSAL_LOG_INTERVAL) < _REFUSAL_LOG_INTERVAL:
            return  # one line per refused topic a minute, not one per message
        self._refusal_logged[topic] = now
        fields = {"broker": self._link.where, "topic": topic, "reason": reason}
        if code == NOT_AUTHORIZED:
            who = f"user {self._config.username!r}" if self._config.username else "anonymous clients"
            fields["hint"] = f"check the broker's ACL for {who}"
        log.error("MQTT broker refused a message: dropped", **fields)
