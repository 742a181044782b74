"""Retained state topics (discovery configs, face counts): the latest value of each, and which ones still
have to be published. Any thread may set a value; the MQTT sender takes what is due."""

from __future__ import annotations

import threading


class RetainedStates:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, bytes] = {}
        self._due: set[str] = set()

    def set(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self._values[topic] = payload
            self._due.add(topic)

    def all_due(self) -> None:
        """Everything must be published again (a new connection, or Home Assistant restarted)."""
        with self._lock:
            self._due = set(self._values)

    def take_due(self) -> list[tuple[str, bytes]]:
        """The topics to publish, with their latest values; they are no longer due."""
        with self._lock:
            due = [(topic, self._values[topic]) for topic in sorted(self._due)]
            self._due.clear()
        return due

    def put_back(self, topics: list[str]) -> None:
        """Topics taken but not published after all (no room in flight): due again."""
        with self._lock:
            self._due.update(topics)
