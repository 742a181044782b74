"""Home Assistant MQTT discovery: a face-count sensor and a face-present binary sensor per camera.

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
    common: dict[str, object] = {
        "availability_topic": topics.available,
        "payload_available": PAYLOAD_ONLINE,
        "payload_not_available": PAYLOAD_OFFLINE,
        "device": device_info(config),
        "origin": {"name": "nvr", "sw_version": __version__},
    }
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


def status_topic(config: MqttConfig) -> str:
    """Where Home Assistant announces `online` after it starts (its birth message)."""
    return f"{config.discovery.prefix}/status"
