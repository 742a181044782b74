"""nvr: edge face analytics. SCRFD face detection on a Hailo-8 or the CPU, face events over MQTT."""

__version__ = "0.1.0"
