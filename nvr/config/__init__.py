"""The daemon's configuration: YAML with `${...}` substitution, validated by pydantic, errors as file:line."""

from nvr.config.models import CameraConfig, DetectorConfig, LoggingConfig, MetricsConfig
from nvr.config.root import NvrConfig, load_config
from nvr.config.source import ConfigFileError

__all__ = [
    "CameraConfig",
    "ConfigFileError",
    "DetectorConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NvrConfig",
    "load_config",
]
