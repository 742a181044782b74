"""HTTPS for the web UI (`web.tls`): the session cookie is Secure, a client that never starts its handshake
holds up nobody, a plain-HTTP request gets no page, and a bad certificate or key is a one-line error naming
the file."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT, asset_path
from pki import TlsFiles, make_tls_files
from structlog.testing import capture_logs
from web_support import Client, face_event, web_server

from nvr.errors import ConfigError, ExitCode
from nvr.web.config import WebConfig, WebTlsConfig, server_tls_context


def tls_settings(pki: TlsFiles) -> dict[str, Path]:
    return {"cert_file": pki.server_cert, "key_file": pki.server_key}


def test_https_login_api_and_stalled_or_plain_clients(tmp_path: Path) -> None:
    pki = make_tls_files(tmp_path / "pki")
    trusting = ssl.create_default_context(cafile=pki.ca_cert)
    with web_server(tmp_path, tls=tls_settings(pki)) as (server, recent, _):
        recent.record([face_event()])
        assert server.url.startswith("https://127.0.0.1:")
        # A client that connects and never says anything: the handshake waits in its own thread, not in
        # accept(), so everyone else is served meanwhile.
        silent = socket.create_connection(server.address)
        browser = Client(server.url, tls=trusting)
        login = browser.login()
        assert login.status == 303 and login.headers["Location"] == "/"
        cookie = login.headers["Set-Cookie"]
        assert "; Secure" in cookie and "HttpOnly" in cookie
        events = browser.get("/api/events").json()["events"]
        assert [e["camera"] for e in events] == ["front"]
        # Plain HTTP to the HTTPS port: no answer in clear, and the server goes on serving.
        plain = socket.create_connection(server.address, timeout=10)
        plain.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            answer = plain.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert b"HTTP/1.1 200" not in answer and b"front" not in answer
        plain.close()
        # A client that does not trust the certificate refuses it (nothing is sent to an impostor either).
        stranger = make_tls_files(tmp_path / "other", common_name="someone else's CA")
        with pytest.raises(ssl.SSLCertVerificationError):
            Client(server.url, tls=ssl.create_default_context(cafile=stranger.ca_cert)).get("/login")
        assert browser.get("/api/events").status == 200
        silent.close()


def install(pki: TlsFiles, cert_file: Path, key_file: Path) -> None:
    """What a renewal does: new files at the configured paths."""
    shutil.copyfile(pki.server_cert, cert_file)
    shutil.copyfile(pki.server_key, key_file)


def test_a_renewed_certificate_is_served_after_a_reload(tmp_path: Path) -> None:
    first, renewed = make_tls_files(tmp_path / "first"), make_tls_files(tmp_path / "renewed", "renewed CA")
    cert_file, key_file = tmp_path / "web.crt", tmp_path / "web.key"
    install(first, cert_file, key_file)
    with web_server(tmp_path, tls={"cert_file": cert_file, "key_file": key_file}) as (server, _, _):
        trusts_first = Client(server.url, tls=ssl.create_default_context(cafile=first.ca_cert))
        trusts_renewed = Client(server.url, tls=ssl.create_default_context(cafile=renewed.ca_cert))
        assert trusts_first.get("/login").status == 200
        install(renewed, cert_file, key_file)
        assert trusts_first.get("/login").status == 200  # read at start; nothing changes until a reload
        server.reload_certificate()
        assert trusts_renewed.get("/login").status == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            trusts_first.get("/login")
        # A reload that finds a broken file (a renewal half written) keeps serving the last good one.
        key_file.write_text("-----BEGIN PRIVATE KEY-----\ntruncated\n")
        with pytest.raises(ConfigError, match="do not load"):
            server.reload_certificate()
        assert trusts_renewed.get("/login").status == 200


def test_plain_http_off_loopback_is_warned_about(tmp_path: Path) -> None:
    with capture_logs() as logs, web_server(tmp_path) as (server, _, _):
        cookie = Client(server.url).login().headers["Set-Cookie"]
        assert server.url.startswith("http://") and "Secure" not in cookie
    (tmp_path / "password").write_text("correct horse battery\n")
    with capture_logs() as exposed, web_server(tmp_path, host="0.0.0.0", password_file=tmp_path / "password"):
        pass
    warning = "web UI without TLS: the password and the faces cross the network in clear"
    assert [e["event"] for e in exposed if e["log_level"] == "warning"] == [warning]
    assert not [e for e in logs if e["log_level"] == "warning"]


def test_bad_certificate_or_key_is_one_line_naming_the_file(tmp_path: Path) -> None:
    pki = make_tls_files(tmp_path / "pki")
    other = make_tls_files(tmp_path / "other")
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    cases = [
        (WebTlsConfig(cert_file=tmp_path / "absent.crt", key_file=pki.server_key),
         f"web.tls.cert_file {tmp_path / 'absent.crt'}: cannot read (No such file or directory)"),
        (WebTlsConfig(cert_file=pki.server_key, key_file=pki.server_key),
         f"web.tls.cert_file {pki.server_key}: not a PEM file (no BEGIN CERTIFICATE block)"),
        (WebTlsConfig(cert_file=pki.server_cert, key_file=pki.server_cert),
         f"web.tls.key_file {pki.server_cert}: not a PEM file (no PRIVATE KEY block)"),
        (WebTlsConfig(cert_file=pki.server_cert, key_file=encrypted),
         f"web.tls.key_file {encrypted}: an encrypted key; the daemon needs one without a passphrase"),
    ]  # fmt: skip
    for tls, message in cases:
        with pytest.raises(ConfigError) as info:
            server_tls_context(tls)
        assert info.value.message == message and info.value.exit_code == ExitCode.CONFIG
    with pytest.raises(ConfigError) as info:
        server_tls_context(WebTlsConfig(cert_file=pki.server_cert, key_file=other.server_key))
    assert info.value.message.startswith(f"web.tls: {pki.server_cert} and {other.server_key} do not load")
    assert "\n" not in info.value.message
    with pytest.raises(ValueError, match="key_file"):
        WebConfig.model_validate({"tls": {"cert_file": str(pki.server_cert)}})


def test_the_daemon_refuses_to_start_with_a_key_that_is_not_the_certificates(tmp_path: Path) -> None:
    """Before any model loads: exit 3 and one error line (the others are the log's start and stop)."""
    pki, other = make_tls_files(tmp_path / "pki"), make_tls_files(tmp_path / "other")
    config = tmp_path / "nvr.yml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"detector: {{backend: onnx, model: {asset_path('models/scrfd/det_2.5g.onnx')}}}\n"
        "metrics: {enabled: false}\n"
        f"web: {{port: 0, tls: {{cert_file: {pki.server_cert}, key_file: {other.server_key}}}}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "nvr", "run", str(config)], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == ExitCode.CONFIG, result
    errors = [line for line in result.stderr.splitlines() if line.startswith("nvr: error:")]
    assert len(errors) == 1 and "web.tls:" in errors[0] and str(other.server_key) in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "detector ready" not in result.stderr  # no model opened
