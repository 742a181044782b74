"""The web UI's defences, each tried the way an attacker would: no or wrong password or token, a missing
CSRF token, a foreign Origin or Host, oversized and non-image uploads, path traversal, HTML in names."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, asset_path
from PIL import Image
from web_support import PASSWORD, Client, face_event, jpeg_of, multipart, open_enroller, web_server

from nvr.errors import ExitCode
from nvr.web.auth import LoginLimiter
from nvr.web.http import CONTENT_SECURITY_POLICY


@pytest.fixture(scope="module")
def enroller():  # type: ignore[no-untyped-def]
    return open_enroller()


def test_without_password_or_token_nothing_is_served(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, recent, _):
        recent.record([face_event(snapshot=jpeg_of("faces/obama/1.jpg"))])
        client = Client(server.url)
        page = client.get("/")
        assert page.status == 303 and page.headers["Location"] == "/login"
        for path in ("/api/events", "/api/people", "/api/status", "/api/strangers", "/api/events/stream"):
            response = client.get(path)
            assert response.status == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert b"front" not in response.body
        assert client.get("/api/events", Authorization="Bearer wrong password").status == 401
        assert client.get("/api/events", Authorization=f"Basic {PASSWORD}").status == 401
        assert client.get("/api/events", Cookie="nvr_session=forged").status == 401
        # The login page and its assets are public; nothing else is.
        assert client.get("/login").status == 200
        assert client.get("/static/app.css").status == 200


def test_bearer_token_and_browser_login(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, recent, _):
        recent.record([face_event(snapshot=jpeg_of("faces/obama/1.jpg"))])
        script = Client(server.url)
        events = script.get("/api/events", Authorization=f"Bearer {PASSWORD}")
        assert events.status == 200 and events.json()["events"][0]["camera"] == "front"

        browser = Client(server.url)
        wrong = browser.login("not the password")
        assert wrong.status == 303 and wrong.headers["Location"] == "/login?failed=1"
        assert "nvr_session" not in browser.cookies
        right = browser.login()
        assert right.status == 303 and right.headers["Location"] == "/"
        cookie = right.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert browser.get("/api/events").status == 200
        assert browser.get("/").status == 200
        # Logging out ends the session on the server, not only in the browser.
        token = browser.cookies["nvr_session"]
        assert browser.send("POST", "/logout").status == 303
        assert browser.get("/api/events", Cookie=f"nvr_session={token}").status == 401


def test_login_attempts_are_rate_limited(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, _, _):
        client = Client(server.url)
        for _ in range(5):
            assert client.login("guess").headers["Location"] == "/login?failed=1"
        blocked = client.login()  # even the right password, while blocked
        assert blocked.status == 429 and int(blocked.headers["Retry-After"]) > 0
        assert "nvr_session" not in client.cookies


def test_login_limiter_window() -> None:
    now = [0.0]
    limiter = LoginLimiter(per_client=2, overall=3, window=60, clock=lambda: now[0])
    limiter.failed("a")
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") == 60 and limiter.retry_after("b") == 0
    limiter.failed("b")  # three failures overall: everyone waits
    assert limiter.retry_after("c") > 0
    now[0] = 61
    assert limiter.retry_after("a") == 0 and limiter.retry_after("c") == 0


def test_state_changes_need_the_csrf_token(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, _, library):
        browser = Client(server.url)
        browser.login()
        assert browser.send("POST", "/api/people", {"name": "Ada"}, csrf=False).status == 403
        wrong = browser.send("POST", "/api/people", {"name": "Ada"}, csrf=False, **{"X-CSRF-Token": "x" * 43})
        assert wrong.status == 403
        assert library.people() == []
        created = browser.send("POST", "/api/people", {"name": "Ada"})
        assert created.status == 201
        person = created.json()["id"]
        assert browser.send("DELETE", f"/api/people/{person}", csrf=False).status == 403
        # Another site's page in the same browser: refused by Origin even with a token.
        foreign = browser.send("POST", "/api/people", {"name": "Eve"}, Origin="http://evil.example")
        assert foreign.status == 403
        # A script with the bearer token needs no CSRF token.
        script = Client(server.url)
        removed = script.send(
            "DELETE", f"/api/people/{person}", csrf=False, Authorization=f"Bearer {PASSWORD}"
        )
        assert removed.status == 200 and library.people() == []


def test_without_password_only_loopback_names_and_still_csrf(tmp_path: Path) -> None:
    with web_server(tmp_path, password=None) as (server, _, library):
        client = Client(server.url)
        rebound = client.get("/api/events", Host="attacker.example")
        assert rebound.status == 421
        assert client.get("/api/events").status == 200
        assert client.send("POST", "/api/people", {"name": "Ada"}).status == 403  # no session, no token
        client.open_session()
        assert client.send("POST", "/api/people", {"name": "Ada"}).status == 201
        assert client.get("/login").status == 303  # nothing to log in to
        assert [p.name for p in library.people()] == ["Ada"]


def test_uploads_are_bounded_and_decoded(tmp_path: Path, enroller) -> None:  # type: ignore[no-untyped-def]
    with web_server(tmp_path, enroller=enroller, max_upload_mb=1, max_upload_files=3) as (server, _, library):
        client = Client(server.url)
        client.login()
        headers = {"X-CSRF-Token": client.csrf or ""}

        def upload(files: list[tuple[str, bytes]]) -> tuple[int, dict]:  # type: ignore[type-arg]
            body, content_type = multipart({"person": "Joe"}, files)
            response = client.request("POST", "/api/photos", body, {**headers, "Content-Type": content_type})
            return response.status, response.json()

        status, reply = upload([("big.jpg", os.urandom(1024 * 1024 + 1))])
        assert status == 413 and "too large" in reply["error"]
        status, reply = upload([(f"{n}.jpg", b"x") for n in range(4)])
        assert status == 413 and "at most 3" in reply["error"]
        # Not images: one clear message per file, nothing enrolled, nobody created.
        script = b"<script>alert(1)</script>"
        truncated = jpeg_of("faces/biden/1.jpg")[:600]
        status, reply = upload([("notes.txt", b"hello"), ("evil.jpg", script), ("cut.jpg", truncated)])
        assert status == 200 and reply["accepted"] == [] and reply["person"] is None
        assert [r["file"] for r in reply["rejected"]] == ["notes.txt", "evil.jpg", "cut.jpg"]
        assert all("not an image" in r["error"] for r in reply["rejected"]), reply
        # A decompression bomb: a small PNG that unpacks to 10 000 x 10 000 pixels.
        bomb = io.BytesIO()
        Image.new("1", (10000, 10000)).save(bomb, "PNG")
        status, reply = upload([("bomb.png", bomb.getvalue())])
        assert reply["accepted"] == [] and "bomb.png" in reply["rejected"][0]["file"]
        assert library.people() == []
        # A path in the file name is only ever shown back, never used.
        status, reply = upload([("../../etc/passwd", b"root:x:0:0")])
        assert reply["rejected"][0]["file"] == "passwd"
        assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2fetc%2fpasswd",
        "/static/index.html/../../../etc/passwd",
        "/api/events/..%2f..%2f..%2fetc%2fpasswd/snapshot",
        "/api/events/../../etc/passwd/snapshot",
        "/api/samples/..%2f1/crop",
        "/api/strangers/..%2funknown_1/crops/0",
        "/api/people/..%2f..%2fetc",
        "//etc/passwd",
    ],
)
def test_path_traversal_is_refused(tmp_path: Path, path: str) -> None:
    with web_server(tmp_path) as (server, _, _):
        response = Client(server.url).get(path, Authorization=f"Bearer {PASSWORD}")
        assert response.status in (400, 404), (path, response.status)
        assert b"root:" not in response.body


def test_snapshot_symlink_out_of_the_folder_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg_of("faces/obama/1.jpg"))
    folder = tmp_path / "snapshots"
    folder.mkdir()
    event_id = "1763683200.000000-abcdef"
    (folder / f"{event_id}.jpg").symlink_to(secret)
    kept = "1763683201.000000-ghijkl"
    (folder / f"{kept}.jpg").write_bytes(jpeg_of("faces/biden/1.jpg"))
    with web_server(tmp_path) as (server, _, _):
        client = Client(server.url)
        auth = {"Authorization": f"Bearer {PASSWORD}"}
        assert client.get(f"/api/events/{event_id}/snapshot?size=full", **auth).status == 404
        found = client.get(f"/api/events/{kept}/snapshot?size=full", **auth)
        assert found.status == 200 and found.body == (folder / f"{kept}.jpg").read_bytes()


def test_html_in_a_name_stays_text(tmp_path: Path) -> None:
    name = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    with web_server(tmp_path) as (server, _, _):
        client = Client(server.url)
        client.login()
        created = client.send("POST", "/api/people", {"name": name})
        assert created.status == 201
        listing = client.get("/api/people")
        assert listing.headers["Content-Type"] == "application/json"
        assert listing.headers["X-Content-Type-Options"] == "nosniff"
        assert listing.json()["people"][0]["name"] == name  # stored and returned as the text it is
        # The page itself never contains data: it is static and fills in names as text nodes.
        page = client.get("/")
        assert b"<script>alert" not in page.body
        app = client.get("/static/app.js").body.decode()
        assert "innerHTML" not in app and "insertAdjacentHTML" not in app and "document.write" not in app


def test_every_response_has_the_security_headers(tmp_path: Path) -> None:
    with web_server(tmp_path) as (server, recent, _):
        recent.record(
            [face_event(event_id="1763683200.000000-abcdef", snapshot=jpeg_of("faces/obama/1.jpg"))]
        )
        client = Client(server.url)
        client.login()
        for path in ("/", "/login", "/static/app.js", "/api/events", "/api/nothing", "/static/none.css",
                     "/api/events/1763683200.000000-abcdef/snapshot"):  # fmt: skip
            response = client.get(path)
            assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
            assert response.headers["X-Frame-Options"] == "DENY", path
        assert (
            "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY
        )


def run_nvr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nvr", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_non_loopback_address_without_password_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "nvr.yml"
    config.write_text("web:\n  host: 0.0.0.0\n")
    for command in (("check-config", str(config)), ("run", str(config))):
        result = run_nvr(*command)
        assert result.returncode == ExitCode.CONFIG, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "web.host" in lines[0] and "password" in lines[0], result.stderr
    # With a password file the section is valid; an unreadable one is a one-line error at start.
    model = asset_path("models/scrfd/det_2.5g.onnx")
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\ndetector: {{backend: onnx, model: {model}}}\n"
        "metrics: {enabled: false}\n"
        f"web:\n  host: 0.0.0.0\n  port: 0\n  password_file: {tmp_path / 'missing'}\n"
    )
    assert run_nvr("check-config", str(config)).returncode == 0
    result = run_nvr("run", str(config))
    assert result.returncode == ExitCode.CONFIG, result
    assert "web.password_file" in result.stderr and "cannot read" in result.stderr


def test_web_config_rules() -> None:
    from nvr.web.config import WebConfig, is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "nvr.lan"))
    WebConfig(host="0.0.0.0", enabled=False)  # off: no password needed
    WebConfig(host="192.168.1.5", password_credential="web_password")
    for bad in (
        {"host": "::"},
        {"password_file": "/a", "password_credential": "b"},
        {"password_credential": "../x"},
    ):
        with pytest.raises(ValueError):
            WebConfig(**bad)
