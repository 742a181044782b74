"""The small web UI and JSON API the daemon serves: recent faces, strangers, people, status."""
