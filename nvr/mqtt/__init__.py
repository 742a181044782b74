"""MQTT delivery: topics, Home Assistant discovery, the durable outbox and the paho-mqtt publisher."""
