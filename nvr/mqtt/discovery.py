"""Home Assistant MQTT discovery: a face-count sensor and a face-present binary sensor per camera; with
recognition, a stranger `event` entity per camera and a presence binary sensor per enrolled person.

The configs are retained under `<discovery prefix>/<component>/<node_id>/<object_id>/config` and published
on every connect (and when Home Assistant announces itself on `<discovery prefix>/status`), so a broker that
lost its retained messages, or a fresh Home Assistant, still gets them. Both entities read the retained count
topic and share the daemon's availability topic.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from nvr import __version__
from nvr.mqtt.config import MqttConfig
from nvr.mqtt.topics import PAYLOAD_OFFLINE, PAYLOAD_ONLINE, Topics


def device_info(config: MqttConfig) -> dict[str, object]:
    return {
        "identifiers": [f"nvr_{config.node_id}"],
        "name": f"nvr {config.node_id}",
        "manufacturer": "nvr",
        "model": "Edge face analytics",
        "sw_version": __version__,
    }


def discovery_messages(config: MqttConfig, cameras: Iterable[str]) -> dict[str, bytes]:
    """Topic -> retained config payload, for every camera."""
    topics = Topics(config.topic_prefix)
    prefix, node = config.discovery.prefix, config.node_id
    common = _common(config, topics)
    messages: dict[str, bytes] = {}
    for camera in cameras:
        count_topic = topics.count(camera)
        sensor = {
            **common,
            "name": f"{camera} faces",
            "unique_id": f"nvr_{node}_{camera}_face_count",
            "state_topic": count_topic,
            "state_class": "measurement",
            "unit_of_measurement": "faces",
            "icon": "mdi:face-recognition",
        }
        present = {
            **common,
            "name": f"{camera} face present",
            "unique_id": f"nvr_{node}_{camera}_face_present",
            "state_topic": count_topic,
            "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}",
            "device_class": "occupancy",
        }
        messages[f"{prefix}/sensor/{node}/{camera}_face_count/config"] = json.dumps(sensor).encode()
        messages[f"{prefix}/binary_sensor/{node}/{camera}_face_present/config"] = json.dumps(present).encode()
    return messages


def stranger_discovery(config: MqttConfig, camera: str) -> tuple[str, bytes]:
    """An MQTT `event` entity per camera: fires on each stranger event (its payload has `event_type`)."""
    topics = Topics(config.topic_prefix)
    entity = {
        **_common(config, topics),
        "name": f"{camera} stranger",
        "unique_id": f"nvr_{config.node_id}_{camera}_stranger",
        "state_topic": topics.stranger(camera),
        "event_types": ["stranger"],
        "icon": "mdi:account-question",
    }
    topic = f"{config.discovery.prefix}/event/{config.node_id}/{camera}_stranger/config"
    return topic, json.dumps(entity).encode()


def person_discovery_topic(config: MqttConfig, person_id: str) -> str:
    # Keyed by the person's stable id: a rename updates the same entity.
    return f"{config.discovery.prefix}/binary_sensor/{config.node_id}/person_{person_id}/config"


def person_discovery(config: MqttConfig, person_id: str, name: str, slug: str) -> tuple[str, bytes]:
    """A presence binary sensor per enrolled person; the state JSON doubles as its attributes."""
    topics = Topics(config.topic_prefix)
    entity = {
        **_common(config, topics),
        "name": f"{name} present",
        "unique_id": f"nvr_{config.node_id}_person_{person_id}",
        "state_topic": topics.person(slug),
        "value_template": "{{ 'ON' if value_json.state == 'present' else 'OFF' }}",
        "json_attributes_topic": topics.person(slug),
        "device_class": "presence",
    }
    return person_discovery_topic(config, person_id), json.dumps(entity).encode()


def _common(config: MqttConfig, topics: Topics) -> dict[str, object]:
    return {
        "availability_topic": topics.available,
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "device": device_info(config),
        "origin": {"name": "nvr", "sw_version": __version__},
    }


def status_topic(config: MqttConfig) -> str:
    """Where Home Assistant announces `online` after it starts (its birth message)."""
    return f"{config.discovery.prefix}/status"
