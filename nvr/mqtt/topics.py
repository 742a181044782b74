"""The topic layout, all under one configurable prefix: a public interface (README, "MQTT topics").

<prefix>/available                 online / offline (retained; offline is also the broker's last will)
<prefix>/stats                     JSON counters every stats_interval seconds
<prefix>/<camera>/face             face events, JSON (QoS 1, not retained)
<prefix>/<camera>/face/snapshot    JPEG of the event's best face (raw bytes)
<prefix>/<camera>/face/aligned     112x112 ArcFace-aligned JPEG of the best face (when enabled)
<prefix>/<camera>/face/count       faces in view now (retained)
<prefix>/<camera>/face/stranger    stranger events, JSON (QoS 1, not retained)
<prefix>/person/<slug>             an enrolled person's presence, JSON (retained)

The words used at the camera's level (`available`, `stats`, `person`) are reserved: no camera may be called
so (a person's slug cannot collide either: slugs live one level below `person`, and the library reserves
`face`, `count` and the like).
"""

from __future__ import annotations

from dataclasses import dataclass

from nvr.errors import ConfigError
from nvr.mqtt.config import NAME_PATTERN, check_topic_prefix

MAX_CAMERA_NAME = 64
# Topic levels directly under the prefix that are not cameras.
RESERVED_CAMERA_NAMES = frozenset({"available", "stats", "person", "people"})


def check_camera_name(camera: str) -> str:
    if len(camera) > MAX_CAMERA_NAME:
        raise ConfigError(
            f"camera {camera[:20]!r}...: names used in MQTT topics are at most {MAX_CAMERA_NAME} long"
        )
    if not NAME_PATTERN.match(camera):
        raise ConfigError(
            f"camera {camera!r}: names used in MQTT topics may only contain letters, digits, '_' and '-'"
        )
    if camera.lower() in RESERVED_CAMERA_NAMES:
        raise ConfigError(f"camera {camera!r}: the name is reserved for nvr's own topics ({camera}/...)")
    return camera


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str

    def __post_init__(self) -> None:
        try:
            check_topic_prefix(self.prefix, "topic_prefix")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def available(self) -> str:
        return f"{self.prefix}/available"

    @property
    def stats(self) -> str:
        return f"{self.prefix}/stats"

    def face(self, camera: str) -> str:
        return f"{self.prefix}/{check_camera_name(camera)}/face"

    def snapshot(self, camera: str) -> str:
        return f"{self.face(camera)}/snapshot"

    def aligned(self, camera: str) -> str:
        return f"{self.face(camera)}/aligned"

    def count(self, camera: str) -> str:
        return f"{self.face(camera)}/count"

    def stranger(self, camera: str) -> str:
        return f"{self.face(camera)}/stranger"

    def person(self, slug: str) -> str:
        if not slug or not NAME_PATTERN.match(slug):
            raise ConfigError(f"person slug {slug!r} is not a valid topic level")
        return f"{self.prefix}/person/{slug}"


PAYLOAD_ONLINE = "online"
PAYLOAD_OFFLINE = "offline"
