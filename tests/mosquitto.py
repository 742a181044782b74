"""A real Mosquitto broker for tests (Debian package `mosquitto`), plus a subscriber that records messages.

Each broker gets its own directory, a free port, and a generated config; tests can stop, kill and restart it
on the same port, with passwords, an ACL, TLS and on-disk persistence as needed. Fixtures (loaded for every
test through `pytest_plugins` in conftest.py): `broker`, `broker_factory`, `subscriber_factory`, and
`child_factory` (the daemon's MQTT side in its own process, `tests/mqtt_child.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from mqtt_child import ChildProcess
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pki import TlsFiles

from nvr.mqtt.config import MqttConfig

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_config(broker: Mosquitto, outbox: Path, **overrides: Any) -> MqttConfig:
    """The daemon's MQTT settings for this broker: quick reconnects, no stats unless asked."""
    settings: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "node_id": "testnode",
        "reconnect_max_delay": 2,
        "stats_interval": 0,
        "outbox": {"path": str(outbox)},
    }
    if broker.tls is not None:
        settings["tls"] = {
            "ca_file": str(broker.tls.ca_cert),
            "cert_file": str(broker.tls.client_cert),
            "key_file": str(broker.tls.client_key),
        }
    settings.update(overrides)
    return MqttConfig.model_validate(settings)


class Mosquitto:
    """One broker process; `port` stays the same across stop/kill/start so clients can reconnect."""

    def __init__(
        self,
        directory: Path,
        *,
        passwords: dict[str, str] | None = None,
        acl: str | None = None,
        tls: TlsFiles | None = None,
        persistence: bool = False,
        max_packet_size: int | None = None,
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls = tls
        self.log_path = directory / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} {self.host}"]
        if tls is not None:
            lines += [
                f"cafile {tls.ca_cert}",
                f"certfile {tls.server_cert}",
                f"keyfile {tls.server_key}",
                "require_certificate true",
            ]
        if os.geteuid() == 0:
            lines.append("user root")  # otherwise it drops to `mosquitto`, who cannot read the test's files
        if passwords:
            password_file = directory / "passwords"
            password_file.write_text("")
            for user, password in passwords.items():
                subprocess.run(
                    [MOSQUITTO_PASSWD, "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if acl is not None:
            acl_file = directory / "acl"
            acl_file.write_text(acl)
            lines.append(f"acl_file {acl_file}")
        if persistence:
            lines += ["persistence true", f"persistence_location {directory}/", "autosave_interval 1"]
        if max_packet_size is not None:
            lines.append(f"max_packet_size {max_packet_size}")
        # Generous queues for persistent test subscribers that are offline while events pile up.
        lines += ["max_queued_messages 100000", "max_inflight_messages 20"]
        lines += [f"log_dest file {self.log_path}", "log_type all", "log_timestamp true"]
        self.config_path = directory / "mosquitto.conf"
        self.config_path.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        assert not self.running, "broker already running"
        self._proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self._proc.returncode}: {err} {self.log_text()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return
            time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        """Graceful stop (SIGTERM): the broker saves its persistence file and closes connections."""
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGTERM)
            self._proc.wait(timeout=10)

    def kill(self) -> None:
        if self.running:
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    user_properties: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None


class Subscriber:
    """A plain paho client that records every message on `topics` (what a Home Assistant or script sees)."""

    def __init__(
        self,
        broker: Mosquitto,
        topics: list[str],
        *,
        client_id: str = "test-subscriber",
        persistent: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username is not None:
            self._client.username_pw_set(username, password)
        if broker.tls is not None:
            self._client.tls_set(
                str(broker.tls.ca_cert), str(broker.tls.client_cert), str(broker.tls.client_key)
            )
        self._client.reconnect_delay_set(1, 1)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *args: self._subscribed.set()
        properties = None
        if persistent:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 3600
        self._client.connect_async(
            broker.host, broker.port, clean_start=not persistent, properties=properties
        )
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test subscriber could not subscribe")

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        user = dict(getattr(props, "UserProperty", []) or [])
        content_type = getattr(props, "ContentType", None)
        with self._lock:
            self.messages.append(
                Received(
                    message.topic,
                    bytes(message.payload),
                    bool(message.retain),
                    message.qos,
                    user,
                    content_type,
                )
            )

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                snapshot = list(self.messages)
            if predicate(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                topics = sorted({m.topic for m in snapshot})
                pytest.fail(
                    f"timed out after {timeout} s waiting for MQTT messages; have {len(snapshot)} on {topics}"
                )
            time.sleep(0.02)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start brokers with custom settings (passwords, acl, tls, persistence, max_packet_size)."""
    brokers: list[Mosquitto] = []

    def make(**settings: Any) -> Mosquitto:
        broker = Mosquitto(tmp_path / f"broker{len(brokers)}", **settings)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def broker(broker_factory: Callable[..., Mosquitto]) -> Mosquitto:
    return broker_factory()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    subscribers: list[Subscriber] = []

    def make(broker: Mosquitto, topics: list[str], **options: Any) -> Subscriber:
        options.setdefault("client_id", f"test-subscriber-{len(subscribers)}")
        subscriber = Subscriber(broker, topics, **options)
        subscribers.append(subscriber)
        return subscriber

    yield make
    for subscriber in subscribers:
        subscriber.close()


@pytest.fixture
def child_factory() -> Iterator[Callable[..., ChildProcess]]:
    """Start `tests/mqtt_child.py` processes; any still running when the test ends are killed."""
    children: list[ChildProcess] = []

    def make(config: MqttConfig, config_path: Path, *args: str) -> ChildProcess:
        child = ChildProcess(config, config_path, *args)
        children.append(child)
        return child

    yield make
    for child in children:
        if child.proc.poll() is None:
            child.kill()
