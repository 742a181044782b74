"""Camera credentials never leak, whatever they contain (`@ : / ? # %`, percent-encoded; user names too).

A generated set of nasty passwords goes through the redaction functions, and then through the real daemon:
cameras whose streams fail (connection refused, an RTSP server that does not know the path) log their
errors; no log line (any field), `/metrics` or `/healthz` may contain any form of a user name or password.
"""

from __future__ import annotations

import itertools
import json
import random
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import pytest
from conftest import asset_path
from mosquitto import free_port
from nvr_daemon import NvrDaemon

from nvr.redact import redact_text, redact_url, register_secrets_of

if TYPE_CHECKING:  # the fixture module is registered as a plugin below, not imported
    from rtsp import RtspServer

pytest_plugins = ("rtsp",)  # fixture: rtsp_server (servers are stopped at teardown)

NASTY = "@:/?#%"


def nasty_passwords(count: int, seed: int = 7) -> list[str]:
    """Passwords mixing letters with every troublesome character, raw and percent-encoded, some ending in
    what looks like a host (`@127.0.0.1`) or a port (`:554`)."""
    rng = random.Random(seed)
    out = ["p@ss", "p@ss@word", "a:b:c@d", "pa/ss?x#y", "100%sure", "%40%3A%2F", "@start", "end@", "::@@"]
    for _ in range(count - len(out)):
        body = "".join(rng.choice("abcXYZ019" + NASTY * 2) for _ in range(rng.randint(4, 14)))
        out.append(body + rng.choice(["", "@127.0.0.1", ":554", "%2540", "%"]))
    return out


def forms(secret: str) -> set[str]:
    """What a leak of `secret` could look like in a log line."""
    found = {secret, unquote(secret), quote(secret, safe=""), quote(unquote(secret), safe="")}
    return {f for f in found if len(f) >= 4}


@pytest.mark.parametrize("password", nasty_passwords(60))
def test_urls_and_messages_are_masked_for_any_password(password: str) -> None:
    user = "ad@m:in"
    url = f"rtsp://{user}:{password}@192.0.2.7:554/Streaming/Channels/101"
    masked = redact_url(url)
    assert masked.endswith("@192.0.2.7:554/Streaming/Channels/101"), masked
    # FFmpeg quotes the URL it failed on; nothing registered yet: the URL's shape alone must do.
    message = f"HTTPError: Server returned 404 Not Found: '{url}' (retrying)"
    for text in (masked, redact_text(message), redact_text(url)):
        for leak in forms(password) | forms(user):
            if leak not in "rtsp://192.0.2.7:554/Streaming/Channels/101 HTTPError Server returned":
                assert leak not in text, (leak, text)


def test_registered_secrets_are_masked_outside_urls_too() -> None:
    password = "Zq%40x:y/z"  # percent-encoded '@' as written in the URL
    register_secrets_of(f"rtsp://operator7:{password}@10.1.2.3/live")
    text = redact_text("auth failed for operator7 with Zq@x:y/z (encoded Zq%40x%3Ay%2Fz)")
    assert "operator7" not in text and "Zq@x" not in text and "Zq%40x" not in text, text


@pytest.mark.slow
def test_no_credential_reaches_a_log_line_metrics_or_healthz(
    tmp_path: Path, rtsp_server: type[RtspServer]
) -> None:
    """Real capture error paths in the real daemon, with nasty user names and passwords."""
    server = rtsp_server(asset_path("video/hamilton_clip.mp4"))
    server.start()
    closed_port = free_port()
    # FFmpeg splits the userinfo at the last '@' before the first '/', so '/', '?' and '#' must be
    # percent-encoded in a working URL; '@', ':' and '%' may be written as they are.
    usable = [p for p in nasty_passwords(40, seed=11) if not set("/?#") & set(p) and not p.endswith("%")]
    passwords = [*usable[:6], "p@ss@word", "s3cr%2Fet%3F%23x", "%40%3A%2540"]
    users = itertools.cycle(["adm@in", "us%3Aer", "root", "cam:op"])
    cameras, secrets = [], set()
    for i, password in enumerate(passwords):
        user = next(users)
        host = f"127.0.0.1:{closed_port}/cam" if i % 2 else f"127.0.0.1:{server.port}/no-such-path"
        cameras.append({"name": f"cam{i}", "url": f"rtsp://{user}:{password}@{host}", "detect_fps": 2})
        secrets |= forms(password) | forms(user)
    secrets.discard("root")  # a word that may appear on its own (a path, a user) — masked in URLs anyway
    instance = f"t{uuid.uuid4().hex[:8]}"
    config = {
        "instance": instance,
        "state_dir": str(tmp_path / "state"),
        "cameras": cameras,
        "capture": {"open_timeout": 3, "read_timeout": 3, "reconnect_initial": 0.5, "reconnect_max": 1},
        "detector": {"backend": "onnx", "model": str(asset_path("models/scrfd/det_500m.onnx"))},
        "metrics": {"port": 0},
    }
    daemon = NvrDaemon(tmp_path, config)
    try:
        for camera in cameras:
            daemon.wait_for_event("capture lost", 60, camera=camera["name"])
        listening = daemon.wait_for_event("metrics endpoint listening")
        bodies = []
        for path in ("/metrics", "/healthz"):
            url = listening["url"].rsplit("/", 1)[0] + path
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    bodies.append(response.read().decode())
            except urllib.error.HTTPError as exc:  # 503 while cameras are down: the body still counts
                bodies.append(exc.read().decode())
        daemon.stop()
    finally:
        daemon.close()
    lines = daemon.raw
    lost = [json.loads(line) for line in lines if '"capture lost"' in line]
    assert len(lost) >= len(cameras) and all("***@" in line["url"] for line in lost)
    for text in [*lines, *bodies]:
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked: {text}"
