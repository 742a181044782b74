"""TLS, credentials and ACLs against a real Mosquitto: what works, and one-line errors when it does not."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from mosquitto import Mosquitto, Subscriber, client_config
from mqtt_child import synthetic_event
from pki import make_tls_files
from structlog.testing import capture_logs

from nvr.errors import ConfigError, ExitCode, NetworkError
from nvr.mqtt.credentials import resolve_password
from nvr.mqtt.sink import MqttSink
from nvr.secrets import CREDENTIALS_ENV

Factory = Callable[..., Subscriber]
PASSWORD = "s3cret-Pa55"
ACL = """\
user nvr
topic readwrite nvr/available
topic readwrite nvr/allowed/#
topic readwrite homeassistant/#

user watcher
topic read #
"""


def face_events(subscriber: Subscriber, camera: str) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in subscriber.on(f"nvr/{camera}/face")]


def test_tls_with_a_ca_and_client_certificate(
    broker_factory: Callable[..., Mosquitto], subscriber_factory: Factory, tmp_path: Path
) -> None:
    broker = broker_factory(tls=make_tls_files(tmp_path / "pki"))
    subscriber = subscriber_factory(broker, ["nvr/#"])
    sink = MqttSink(client_config(broker, tmp_path / "o.db", host="localhost"), cameras=["cam"])
    sink.publisher.wait_connected(10)
    sink.publish_event(synthetic_event("cam", 0))
    subscriber.wait_for(lambda msgs: len(face_events(subscriber, "cam")) == 1)
    sink.close()
    assert "nvr-testnode" in broker.log_text()


def test_tls_with_an_unknown_ca_is_a_clear_error(
    broker_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = broker_factory(tls=make_tls_files(tmp_path / "pki"))
    other = make_tls_files(tmp_path / "other", common_name="someone else's CA")
    tls = {"ca_file": other.ca_cert, "cert_file": other.client_cert, "key_file": other.client_key}
    config = client_config(broker, tmp_path / "o.db", host="localhost", tls=tls)
    sink = MqttSink(config, cameras=["cam"])
    with capture_logs() as logs, pytest.raises(NetworkError) as info:
        sink.publisher.wait_connected(4)
    sink.close(timeout=1)
    assert info.value.exit_code == ExitCode.NETWORK
    message = info.value.message
    assert "certificate" in message and "localhost" in message and "\n" not in message
    errors = [e.get("error") for e in logs if e["log_level"] == "error"]
    assert errors.count(message) == 1, "one line per distinct failure, not one per retry"


def test_tls_without_the_client_certificate_the_broker_requires(
    broker_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = broker_factory(tls=make_tls_files(tmp_path / "pki"))
    assert broker.tls is not None
    config = client_config(broker, tmp_path / "o.db", host="localhost", tls={"ca_file": broker.tls.ca_cert})
    sink = MqttSink(config, cameras=["cam"])
    with pytest.raises(NetworkError) as info:
        sink.publisher.wait_connected(4)
    sink.close(timeout=1)
    assert "dropped the connection before accepting it" in info.value.message
    assert "certificate required" in info.value.message and "\n" not in info.value.message


def test_missing_tls_files_are_config_errors(broker: Mosquitto, tmp_path: Path) -> None:
    config = client_config(broker, tmp_path / "o.db", tls={"ca_file": str(tmp_path / "nope.crt")})
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file .*nope\.crt: no such file"):
        MqttSink(config)


def test_wrong_password_is_a_clear_error_and_never_logged(
    broker_factory: Callable[..., Mosquitto], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = broker_factory(passwords={"nvr": PASSWORD})
    config = client_config(broker, tmp_path / "o.db", username="nvr", password="not-the-password")
    with caplog.at_level(logging.DEBUG), capture_logs() as logs:  # paho's lines, and ours
        sink = MqttSink(config, cameras=["cam"])
        with pytest.raises(NetworkError) as info:
            sink.publisher.wait_connected(4)  # long enough for a few retries
        sink.close(timeout=1)
    message = info.value.message
    assert message == (
        f"MQTT broker 127.0.0.1:{broker.port} refused the connection: Not authorized "
        "(check the username and password; broker does not accept user 'nvr')"
    )
    logged = caplog.text + repr(logs)
    assert logged.count("refused the connection") == 1
    assert "not-the-password" not in logged and "not-the-password" not in repr(config)
    assert "not-the-password" not in config.model_dump_json()


def test_password_from_a_file_and_from_a_systemd_credential(
    broker_factory: Callable[..., Mosquitto],
    subscriber_factory: Factory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = broker_factory(passwords={"nvr": PASSWORD, "watcher": "w"})
    subscriber = subscriber_factory(broker, ["nvr/#"], username="watcher", password="w")
    secret_file = tmp_path / "mqtt.password"
    secret_file.write_text(PASSWORD + "\n")
    from_file = client_config(broker, tmp_path / "a.db", username="nvr", password_file=str(secret_file))
    sink = MqttSink(from_file, cameras=["cam"])
    sink.publisher.wait_connected(10)
    sink.publish_event(synthetic_event("cam", 0))
    subscriber.wait_for(lambda msgs: len(face_events(subscriber, "cam")) == 1)
    sink.close()

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text(PASSWORD)
    monkeypatch.setenv(CREDENTIALS_ENV, str(credentials))
    implicit = client_config(broker, tmp_path / "b.db", username="nvr")  # LoadCredential=mqtt_password:...
    assert resolve_password(implicit) == PASSWORD
    named = client_config(broker, tmp_path / "b.db", username="nvr", password_credential="mqtt_password")
    sink = MqttSink(named, cameras=["cam"])
    sink.publisher.wait_connected(10)
    sink.publish_event(synthetic_event("cam", 1))
    subscriber.wait_for(lambda msgs: len(face_events(subscriber, "cam")) == 2)
    sink.close()

    monkeypatch.delenv(CREDENTIALS_ENV)
    with pytest.raises(ConfigError, match=r"CREDENTIALS_DIRECTORY is not set"):
        resolve_password(named)
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match=r"is empty"):
        resolve_password(client_config(broker, tmp_path / "c.db", password_file=str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="at most one of"):
        client_config(broker, tmp_path / "c.db", password="x", password_file=str(secret_file))


def test_a_topic_the_acl_denies_is_a_clear_error_and_does_not_block_the_rest(
    broker_factory: Callable[..., Mosquitto],
    subscriber_factory: Factory,
    tmp_path: Path,
) -> None:
    broker = broker_factory(passwords={"nvr": PASSWORD, "watcher": "w"}, acl=ACL)
    subscriber = subscriber_factory(broker, ["nvr/#"], username="watcher", password="w")
    config = client_config(broker, tmp_path / "o.db", username="nvr", password=PASSWORD)
    with capture_logs() as logs:
        sink = MqttSink(config, cameras=["allowed"])
        sink.publisher.wait_connected(10)
        for k in range(3):
            sink.publish_event(synthetic_event("denied", k))
            sink.publish_event(synthetic_event("allowed", k))
        subscriber.wait_for(lambda msgs: len(face_events(subscriber, "allowed")) == 3)
        sink.close()
    assert face_events(subscriber, "denied") == []
    assert sink.publisher.counters["refused"] == 3 and sink.publisher.outbox_pending == 0
    refusals = [e for e in logs if e.get("topic") == "nvr/denied/face"]
    assert refusals == [
        {
            "event": "MQTT broker refused a message: dropped", "log_level": "error",
            "broker": f"127.0.0.1:{broker.port}", "topic": "nvr/denied/face", "reason": "Not authorized",
            "hint": "check the broker's ACL for user 'nvr'",
        }
    ], "one clear line per refused topic, not one per message"  # fmt: skip


def test_mqtt_3_1_1_brokers_work_too(broker: Mosquitto, subscriber_factory: Factory, tmp_path: Path) -> None:
    subscriber = subscriber_factory(broker, ["nvr/#"])
    sink = MqttSink(client_config(broker, tmp_path / "o.db", protocol="3.1.1"), cameras=["cam"])
    sink.publish_event(synthetic_event("cam", 0))
    sink.publish_face_count("cam", 1)
    subscriber.wait_for(lambda msgs: len(face_events(subscriber, "cam")) == 1)
    sink.close()
    (event,) = subscriber.on("nvr/cam/face")
    assert event.user_properties == {} and sink.publisher.counters["delivered"] == 1
