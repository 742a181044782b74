"""The MQTT side of the daemon: paho-mqtt (VERSION2 callbacks) fed from the durable outbox.

Two threads: paho's network thread (connect, automatic reconnect with a doubling backoff, callbacks), and a
sender thread that hands outbox rows to paho in order, at most `window` unacknowledged at a time, and deletes
each row when its PUBACK arrives. Callbacks only record facts and wake the sender; they never take a lock
that is held while calling into paho (paho calls `on_publish` with its own message lock held).

After each connect the sender waits for the PUBACK of the retained `online` message before handing out new
rows: paho re-sends the messages that were in flight when the connection dropped while it handles the
CONNACK, so once that PUBACK is in, those re-sends are queued ahead of anything new and order is kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from nvr.errors import NetworkError
from nvr.mqtt.config import MqttConfig
from nvr.mqtt.connection import (
    FIRST_FAILURE_CODE,
    NOT_AUTHORIZED,
    PERMANENT_REFUSALS,
    PROPERTIES_ALLOWANCE,
    build_client,
    describe_connect_error,
    publish_packet_size,
)
from nvr.mqtt.credentials import resolve_password
from nvr.mqtt.discovery import discovery_messages, status_topic
from nvr.mqtt.outbox import NewMessage, Outbox, OutboxMessage, outbox_path
from nvr.mqtt.states import RetainedStates
from nvr.mqtt.topics import PAYLOAD_OFFLINE, PAYLOAD_ONLINE, Topics, check_camera_name

log = logging.getLogger(__name__)

_REFUSAL_LOG_INTERVAL = 60.0  # seconds between two errors about the same refused topic
_HOUSEKEEPING_INTERVAL = 10.0  # seconds between outbox age checks
_MAX_RETRIES = 5  # times a message refused for a passing reason is sent again before it is dropped


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
        stats_provider: Callable[[], Mapping[str, object]] | None = None,
    ) -> None:
        """`cameras` get discovery configs from the start; others get theirs when first seen (`add_camera`).
        The outbox is `outbox`, else opened at `config.outbox.path` or in `state_dir`."""
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self._cameras: set[str] = set()
        self._where = f"{config.host}:{config.effective_port}"
        self._stats_provider = stats_provider
        self._client = self._make_client(resolve_password(config))
        if outbox is None:
            outbox = Outbox(outbox_path(config.outbox, state_dir), config.outbox)
        self.outbox = outbox
        # Filled by paho's thread, drained by the sender thread.
        self._acks: queue.SimpleQueue[tuple[int, int, str]] = queue.SimpleQueue()  # mid, reason code, text
        self._wake = threading.Event()
        outbox.set_on_commit(self._wake.set)  # committed messages can go out
        self._settled = threading.Event()  # connected, and in-flight re-sends queued (see module doc)
        self._settle_mid: int | None = None
        self._max_packet: int | None = None
        self._window = config.max_inflight
        # Retained state, republished on every connect.
        self._states = RetainedStates()
        for camera in cameras:
            self.add_camera(camera)
        # Sender-thread state.
        self._handed: dict[int, tuple[int | None, str]] = {}  # paho mid -> (outbox seq or None, topic)
        self._last_handed = 0
        self._refusal_logged: dict[str, float] = {}
        self._retries: dict[int, int] = {}  # outbox seq -> times the broker refused it for a passing reason
        self._sender = threading.Thread(target=self._run_sender, name="mqtt-sender", daemon=True)
        self._stop_sender = threading.Event()
        self._stopping = False
        self._started = False
        # Diagnostics.
        self.last_error: str | None = None
        self._socket_error: str | None = None
        self._connack_refused = False
        self._logged_error: str | None = None
        self.counters = {"connects": 0, "connect_failures": 0, "delivered": 0, "refused": 0, "oversize": 0}

    # -- setup ---------------------------------------------------------------------------------------------

    def _make_client(self, password: str | None) -> mqtt.Client:
        client = build_client(self.config, password, self.topics.available)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_log = self._on_log
        return client

    def start(self) -> None:
        """Connect in the background; never blocks, never fails for an unreachable broker (it retries)."""
        if self._started:
            return
        self._started = True
        self._sender.start()
        self._client.connect_async(self.config.host, self.config.effective_port, self.config.keepalive)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._settled.is_set()

    def wait_connected(self, timeout: float) -> None:
        """Wait until connected; raise NetworkError with the last connection failure otherwise."""
        if not self._settled.wait(timeout):
            raise NetworkError(
                self.last_error or f"MQTT broker {self._where}: no connection within {timeout:g} s"
            )

    # -- what the pipeline calls ---------------------------------------------------------------------------

    def send(self, messages: Sequence[NewMessage]) -> None:
        """Hand messages to the outbox's writer (never waits for the disk); the sender is woken once they
        are committed."""
        self.outbox.submit(messages)

    def add_camera(self, camera: str) -> None:
        """Announce `camera`'s entities to Home Assistant (once; kept for every reconnect)."""
        if camera in self._cameras:
            return
        self._cameras.add(check_camera_name(camera))
        if self.config.discovery.enabled:
            for topic, payload in discovery_messages(self.config, [camera]).items():
                self.set_state(topic, payload)

    def set_state(self, topic: str, payload: bytes) -> None:
        """Set a retained state topic; it is published now if connected, and again on every connect."""
        self._states.set(topic, payload)
        self._wake.set()

    def payload_limit(self, topic: str) -> int | None:
        """The largest payload the broker accepts on `topic` (from its last CONNACK), None if unknown."""
        if self._max_packet is None:
            return None
        return self._max_packet - publish_packet_size(topic, 0, 1, PROPERTIES_ALLOWANCE)

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

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered in time, publish `offline`, disconnect, close the outbox; what is not
        delivered stays in the outbox for the next start. Takes about `timeout` seconds at most (plus up to
        the connect timeout when stopped in the middle of a connection attempt)."""
        if self._stopping:
            return
        if not self._started:
            self._stopping = True
            self.outbox.close()
            return
        deadline = time.monotonic() + timeout
        drain_until = deadline - min(2.5, timeout / 2)
        while (
            self._settled.is_set() and (len(self.outbox) or self._handed) and time.monotonic() < drain_until
        ):
            time.sleep(0.02)
        self._stop_sender.set()
        self._wake.set()
        self._sender.join()
        self._stopping = True
        if self._settled.is_set():
            # Home Assistant should see one unavailable state, as if the will had fired.
            info = self._client.publish(self.topics.available, PAYLOAD_OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not connected any more
                info.wait_for_publish(timeout=max(0.1, min(2.0, deadline - time.monotonic() - 0.5)))
        self._client.disconnect()
        self._client.loop_stop()
        self._process_acks()
        self.outbox.close()
        log.info("MQTT publisher stopped; %d message(s) left in the outbox", self.outbox_pending)

    @property
    def outbox_pending(self) -> int:
        return len(self.outbox)

    # -- paho callbacks (network thread) -------------------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self.counters["connect_failures"] += 1
            self._connack_refused = True
            hint = ""
            if reason.value in (134, 135):  # bad user name or password / not authorized
                who = f"user {self.config.username!r}" if self.config.username else "anonymous clients"
                hint = f" (check the username and password; broker does not accept {who})"
            self._fail(f"MQTT broker {self._where} refused the connection: {reason}{hint}")
            return
        self.counters["connects"] += 1
        self._max_packet = getattr(properties, "MaximumPacketSize", None)
        receive_max = int(getattr(properties, "ReceiveMaximum", 65535))
        # Two slots for `online`: this connection's, and the previous one's if paho still holds it.
        self._window = max(1, min(self.config.max_inflight, receive_max) - 2)
        self._states.all_due()
        self._settle_mid = client.publish(self.topics.available, PAYLOAD_ONLINE, qos=1, retain=True).mid
        if self.config.discovery.enabled:
            client.subscribe(status_topic(self.config), qos=0)
        if self.last_error is not None:
            log.info("connected to MQTT broker %s (after: %s)", self._where, self.last_error)
        else:
            log.info("connected to MQTT broker %s as %s", self._where, self.config.effective_client_id)
        self.last_error = self._logged_error = None
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError:` block: the exception is the current one.
        exc = sys.exc_info()[1]
        self.counters["connect_failures"] += 1
        self._fail(
            describe_connect_error(exc, self._where) if exc else f"MQTT broker {self._where}: cannot connect"
        )

    def _on_log(self, client: mqtt.Client, userdata: Any, level: int, message: str) -> None:
        # paho reports socket and TLS failures after the TCP connect (a refused client certificate, say)
        # only here; keep the latest for the error we give when the broker drops us before CONNACK.
        if level == mqtt.MQTT_LOG_ERR:
            self._socket_error = message

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was_connected = self._settled.is_set() or self._settle_mid is not None
        self._settled.clear()
        self._settle_mid = None
        refused, self._connack_refused = self._connack_refused, False
        if not was_connected and not refused and not self._stopping and self._socket_error:
            self.counters["connect_failures"] += 1
            self._fail(
                f"MQTT broker {self._where} dropped the connection before accepting it ({self._socket_error})"
            )
        self._socket_error = None
        if was_connected and not self._stopping:
            log.warning(
                "lost the MQTT broker %s (%s); reconnecting, events wait in the outbox", self._where, reason
            )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._acks.put((mid, int(reason.value), str(reason)))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == status_topic(self.config) and message.payload == b"online":
            self._states.all_due()  # Home Assistant restarted: give it discovery and states again
            self._wake.set()

    def _fail(self, message: str) -> None:
        self.last_error = message
        if message != self._logged_error:  # one line per distinct failure, not one per retry
            log.error("%s", message)
            self._logged_error = message

    # -- sender thread -------------------------------------------------------------------------------------

    def _run_sender(self) -> None:
        next_housekeeping = 0.0
        next_stats = time.monotonic() + self.config.stats_interval
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            self._process_acks()
            if self._stop_sender.is_set():
                return
            now = time.monotonic()
            if self._settled.is_set():
                self._publish_states()
                self._publish_outbox()
                if self.config.stats_interval and now >= next_stats:
                    next_stats = now + self.config.stats_interval
                    self._publish_stats()
            if now >= next_housekeeping:
                next_housekeeping = now + _HOUSEKEEPING_INTERVAL
                self.outbox.expire()

    def _process_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                mid, code, reason = self._acks.get_nowait()
            except queue.Empty:
                break
            failed = code >= FIRST_FAILURE_CODE
            if mid == self._settle_mid:
                self._settle_mid = None
                self._settled.set()
                if failed:
                    self._refused(self.topics.available, reason, code)
                continue
            entry = self._handed.pop(mid, None)
            if entry is None:
                continue
            seq, topic = entry
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
            self.outbox.acknowledge(done)

    def _retry(self, seq: int, topic: str, reason: str) -> None:
        """A refusal that may pass later (quota exceeded, broker busy): send again from this message on,
        which keeps the order (what follows is sent again too; QoS 1 allows duplicates)."""
        tries = self._retries[seq] = self._retries.get(seq, 0) + 1
        if tries > _MAX_RETRIES:
            self.counters["refused"] += 1
            self._refused(topic, f"{reason}, {_MAX_RETRIES} times", None)
            self.outbox.acknowledge([seq])
            del self._retries[seq]
            return
        log.warning(
            "MQTT broker %s did not take the message on %s (%s); sending it again", self._where, topic, reason
        )
        self._last_handed = min(self._last_handed, seq - 1)

    def _publish_states(self) -> None:
        pending = self._states.take_due()
        for i, (topic, payload) in enumerate(pending):
            if len(self._handed) >= self._window:
                self._states.put_back([t for t, _ in pending[i:]])
                return
            if self._too_big(topic, len(payload), 0):
                continue
            info = self._client.publish(topic, payload, qos=1, retain=True)
            if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                self._handed[info.mid] = (None, topic)

    def _publish_outbox(self) -> None:
        room = self._window - len(self._handed)
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
                info = self._client.publish(
                    row.topic, row.payload, qos=row.qos, retain=row.retain, properties=properties
                )
            except ValueError as exc:  # paho refuses the topic or payload: it can never be sent
                log.error("message on %s cannot be sent (%s): dropped", row.topic, exc)
                dropped.append(row.seq)
                self._last_handed = row.seq
                continue
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.warning("MQTT client did not take the message on %s (%s); retrying", row.topic, info.rc)
                break
            self._handed[info.mid] = (row.seq, row.topic)
            self._last_handed = row.seq
        if dropped:
            self.outbox.acknowledge(dropped)

    def _too_big(self, topic: str, payload_size: int, properties_size: int) -> bool:
        """Whether the broker would refuse the packet. Sending it anyway would get us disconnected, and
        paho would re-send it after every reconnect: the queue would be stuck for good."""
        size = publish_packet_size(topic, payload_size, 1, properties_size)
        if self._max_packet is None or size <= self._max_packet:
            return False
        self.counters["oversize"] += 1
        log.error(
            "message on %s is %d bytes, more than the broker's maximum packet size %d: dropped",
            topic, size, self._max_packet,
        )  # fmt: skip
        return True

    def _properties(self, row: OutboxMessage) -> Properties | None:
        if self.config.protocol != "5":
            return None
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if row.content_type:
            properties.ContentType = row.content_type
        if row.event_id:
            properties.UserProperty = ("event_id", row.event_id)
        return properties

    def _publish_stats(self) -> None:
        payload: dict[str, object] = {"time": round(time.time(), 3), "mqtt": self.stats()}
        if self._stats_provider is not None:
            payload.update(self._stats_provider())
        self._client.publish(self.topics.stats, json.dumps(payload, default=str), qos=0, retain=False)

    def _refused(self, topic: str, reason: str, code: int | None) -> None:
        now = time.monotonic()
        if now - self._refusal_logged.get(topic, -_REFUSAL_LOG_INTERVAL) < _REFUSAL_LOG_INTERVAL:
            return  # one line per refused topic a minute, not one per message
        self._refusal_logged[topic] = now
        hint = ""
        if code == NOT_AUTHORIZED:
            who = f"user {self.config.username!r}" if self.config.username else "anonymous clients"
            hint = f" (check the broker's ACL for {who})"
        log.error("MQTT broker %s refused a message on %s: %s%s; dropped", self._where, topic, reason, hint)
