"""The connection to the broker: paho-mqtt (VERSION2 callbacks) and its network thread, what went wrong
connecting, and the retained state topics (availability, discovery, face counts) republished on every connect.

paho connects in the background and reconnects with a doubling backoff. After each connect the link
publishes the retained `online` message and counts as *settled* once its PUBACK is in: paho re-sends the
messages that were in flight when the connection dropped while it handles the CONNACK, so from then on
those re-sends are queued ahead of anything new and delivery (nvr/mqtt/delivery.py) keeps its order.
Callbacks only record facts and hand acknowledgements on; they never take a lock that is held while calling
into paho (paho calls `on_publish` with its own message lock held).
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.properties import Properties

from nvr.errors import NetworkError
from nvr.mqtt.config import MqttConfig
from nvr.mqtt.connection import FIRST_FAILURE_CODE, build_client, describe_connect_error
from nvr.mqtt.credentials import resolve_password
from nvr.mqtt.discovery import discovery_messages, status_topic
from nvr.mqtt.states import RetainedStates
from nvr.mqtt.topics import PAYLOAD_OFFLINE, PAYLOAD_ONLINE, Topics, check_camera_name

log = structlog.get_logger(__name__)

# PUBACKs as paho reports them (mid, reason code, reason text): put by paho's thread, taken by the sender.
AckQueue = queue.SimpleQueue[tuple[int, int, str]]


class BrokerLink:
    """Owns the paho client. Every PUBACK but the link's own `online` one goes into `acks`; `wake` is set
    whenever there is something new to send or acknowledge."""

    def __init__(self, config: MqttConfig, topics: Topics, acks: AckQueue, wake: threading.Event) -> None:
        self.config = config
        self.topics = topics
        self.where = f"{config.host}:{config.effective_port}"
        self._acks = acks
        self._wake = wake
        self._client = self._make_client(resolve_password(config))
        self._settled = threading.Event()  # connected, and in-flight re-sends queued (see module doc)
        self._settle_mid: int | None = None
        self.max_packet: int | None = None  # the broker's Maximum Packet Size, from its last CONNACK
        self.window = config.max_inflight  # unacknowledged messages the broker lets us have
        self.stopping = False
        # Retained state, republished on every connect.
        self.states = RetainedStates()
        self._cameras: set[str] = set()
        # Diagnostics.
        self.last_error: str | None = None
        self._socket_error: str | None = None
        self._connack_refused = False
        self._logged_error: str | None = None
        self.counters = {"connects": 0, "connect_failures": 0}

    def _make_client(self, password: str | None) -> mqtt.Client:
        client = build_client(self.config, password, self.topics.available)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_log = self._on_log
        return client

    # -- control ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; never blocks, never fails for an unreachable broker (it retries)."""
        self._client.connect_async(self.config.host, self.config.effective_port, self.config.keepalive)
        self._client.loop_start()

    @property
    def settled(self) -> bool:
        return self._settled.is_set()

    def wait_connected(self, timeout: float) -> None:
        """Wait until connected; raise NetworkError with the last connection failure otherwise."""
        if not self._settled.wait(timeout):
            raise NetworkError(
                self.last_error or f"MQTT broker {self.where}: no connection within {timeout:g} s"
            )

    def publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties | None = None
    ) -> mqtt.MQTTMessageInfo:
        return self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    def close(self, timeout: float) -> None:
        """Publish `offline` (if connected) within `timeout` seconds, disconnect, stop paho's thread."""
        self.stopping = True
        if self._settled.is_set():
            # Home Assistant should see one unavailable state, as if the will had fired.
            info = self._client.publish(self.topics.available, PAYLOAD_OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # not connected any more
                info.wait_for_publish(timeout=max(0.1, timeout))
        self._client.disconnect()
        self._client.loop_stop()

    # -- retained state --------------------------------------------------------------------------------------

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
        self.states.set(topic, payload)
        self._wake.set()

    # -- paho callbacks (network thread) ---------------------------------------------------------------------

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
            self._fail(f"MQTT broker {self.where} refused the connection: {reason}{hint}")
            return
        self.counters["connects"] += 1
        self.max_packet = getattr(properties, "MaximumPacketSize", None)
        receive_max = int(getattr(properties, "ReceiveMaximum", 65535))
        # Two slots for `online`: this connection's, and the previous one's if paho still holds it.
        self.window = max(1, min(self.config.max_inflight, receive_max) - 2)
        self.states.all_due()
        self._settle_mid = client.publish(self.topics.available, PAYLOAD_ONLINE, qos=1, retain=True).mid
        if self.config.discovery.enabled:
            client.subscribe(status_topic(self.config), qos=0)
        if self.last_error is not None:
            log.info("connected to MQTT broker", broker=self.where, after=self.last_error)
        else:
            log.info("connected to MQTT broker", broker=self.where, client_id=self.config.effective_client_id)
        self.last_error = self._logged_error = None
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError:` block: the exception is the current one.
        exc = sys.exc_info()[1]
        self.counters["connect_failures"] += 1
        self._fail(
            describe_connect_error(exc, self.where) if exc else f"MQTT broker {self.where}: cannot connect"
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
        if not was_connected and not refused and not self.stopping and self._socket_error:
            self.counters["connect_failures"] += 1
            self._fail(
                f"MQTT broker {self.where} dropped the connection before accepting it ({self._socket_error})"
            )
        self._socket_error = None
        if was_connected and not self.stopping:
            log.warning(
                "lost the MQTT broker; reconnecting, events wait in the outbox",
                broker=self.where,
                reason=str(reason),
            )

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        code = int(reason.value)
        if mid == self._settle_mid:
            self._settle_mid = None
            self._settled.set()
            if code >= FIRST_FAILURE_CODE:
                log.error(
                    "MQTT broker refused the availability message", broker=self.where, reason=str(reason)
                )
        else:
            self._acks.put((mid, code, str(reason)))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == status_topic(self.config) and message.payload == b"online":
            self.states.all_due()  # Home Assistant restarted: give it discovery and states again
            self._wake.set()

    def _fail(self, message: str) -> None:
        self.last_error = message
        if message != self._logged_error:  # one line per distinct failure, not one per retry
            log.error("MQTT connection failed", broker=self.where, error=message)
            self._logged_error = message
