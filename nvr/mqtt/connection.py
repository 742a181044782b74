"""The paho-mqtt client as we configure it, and the MQTT facts the publisher needs (packet sizes, reason
codes, readable connection errors)."""

from __future__ import annotations

import socket
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from nvr.errors import ConfigError
from nvr.mqtt.config import MqttConfig
from nvr.mqtt.topics import PAYLOAD_OFFLINE

CONNECT_TIMEOUT = 3.0  # seconds; keeps a stop during a hanging connect attempt short
PROPERTIES_ALLOWANCE = 128  # bytes of MQTT 5 properties we attach (content type, event id), generously
FIRST_FAILURE_CODE = 0x80  # PUBACK reason codes below are successes (0x10: no matching subscribers)
NOT_AUTHORIZED = 0x87
# Refusals that will not change by trying again: not authorized, topic name invalid, payload format invalid.
# Others (quota exceeded, unspecified error, ...) may pass on a later try.
PERMANENT_REFUSALS = frozenset({NOT_AUTHORIZED, 0x90, 0x99})


def build_client(config: MqttConfig, password: str | None, availability_topic: str) -> mqtt.Client:
    """A paho client (VERSION2 callbacks) with credentials, TLS, last will and backoff set; not connected."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=config.effective_client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    if config.username is not None:
        client.username_pw_set(config.username, password)
    if config.tls is not None:
        tls = config.tls
        for name, path in (
            ("ca_file", tls.ca_file),
            ("cert_file", tls.cert_file),
            ("key_file", tls.key_file),
        ):
            if path is not None and not path.is_file():
                raise ConfigError(f"mqtt.tls.{name} {path}: no such file")
        try:
            client.tls_set(
                ca_certs=None if tls.ca_file is None else str(tls.ca_file),
                certfile=None if tls.cert_file is None else str(tls.cert_file),
                keyfile=None if tls.key_file is None else str(tls.key_file),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise ConfigError(f"mqtt.tls: cannot load the certificates or key ({exc})") from None
        client.tls_insecure_set(tls.insecure)
    client.will_set(availability_topic, PAYLOAD_OFFLINE, qos=1, retain=True)
    client.reconnect_delay_set(config.reconnect_min_delay, config.reconnect_max_delay)
    client.connect_timeout = CONNECT_TIMEOUT
    # The publisher bounds the in-flight window itself (below the broker's Receive Maximum): paho must not
    # hold messages back in a queue of its own.
    client.max_inflight_messages_set(0)
    return client


def _varint_size(n: int) -> int:
    return 1 if n < 128 else 2 if n < 16384 else 3 if n < 2097152 else 4


def publish_packet_size(topic: str, payload_size: int, qos: int, properties_size: int) -> int:
    """Bytes of the MQTT PUBLISH packet, to compare with the broker's Maximum Packet Size."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + properties_size + payload_size
    return 1 + _varint_size(remaining) + remaining


def describe_connect_error(exc: BaseException, where: str) -> str:
    """One line saying why a connection attempt failed, for the log and for `wait_connected`."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: the certificate of MQTT broker {where} was not accepted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with MQTT broker {where} failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"MQTT broker {where}: connection refused (is the broker running?)"
    if isinstance(exc, socket.gaierror):
        return f"MQTT broker {where}: unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"MQTT broker {where}: no answer (timed out)"
    if isinstance(exc, OSError):
        return f"MQTT broker {where}: cannot connect ({exc.strerror or exc})"
    return f"MQTT broker {where}: cannot connect ({type(exc).__name__}: {exc})"
