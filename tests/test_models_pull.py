"""`nvr models pull` and `list`: into an empty model store, from the local mirror (the real asset folder)
or, without one, from a real HTTP server on 127.0.0.1 serving a copy of a real model."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT_ROOT, asset_path

from nvr.cli.models_store import resolve
from nvr.errors import ModelError
from nvr.models.catalogue import CATALOGUE_PATH, load_catalogue

MODEL = "models/scrfd/det_500m.onnx"


@dataclass
class Served:
    """What the server offers and how it misbehaves; what it saw."""

    files: dict[str, bytes]
    cut_after: int | None = None  # close the connection after this many body bytes, once
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    sent: int = 0  # body bytes sent in total


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def do_GET(self) -> None:
        served = self.served
        served.requests.append((self.path, self.headers.get("Range")))
        body = served.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and served.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if served.cut_after is not None:
            chunk = chunk[: served.cut_after]
            served.cut_after = None
            self.close_connection = True
        self.wfile.write(chunk)
        served.sent += len(chunk)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    served = Served(files={})
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def model_bytes() -> bytes:
    return asset_path(MODEL).read_bytes()


def write_catalogue(path: Path, models: list[dict[str, str | None]]) -> Path:
    path.write_text(yaml.safe_dump({"format_version": 1, "models": models}))
    return path


def onnx_entry(url: str, sha256: str | None, **extra: str) -> dict[str, str | None]:
    return {
        "id": "tiny-onnx",
        "family": "tiny",
        "kind": "onnx",
        "url": url,
        "path": MODEL,
        "sha256": sha256,
        **extra,
    }


def nvr(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`nvr models ARGS`, the store in tmp_path/store and, unless `env` says otherwise, an empty mirror."""
    environment = {
        **os.environ,
        "NVR_ASSETS": str(tmp_path / "assets"),
        "NVR_MODELS": str(tmp_path / "store"),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "nvr", "models", *args],
        check=False, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_without_a_mirror_pull_downloads_into_the_store_and_verifies_the_checksum(
    tmp_path: Path, server: tuple[str, Served], model_bytes: bytes
) -> None:
    base, served = server
    served.files["/det_500m.onnx"] = model_bytes
    digest = hashlib.sha256(model_bytes).hexdigest()
    catalogue = write_catalogue(tmp_path / "c.yaml", [onnx_entry(f"{base}/det_500m.onnx", digest)])
    result = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert result.returncode == 0, result.stderr
    target = tmp_path / "store" / "det_500m.onnx"
    assert f"tiny-onnx: downloaded to {target}" in result.stdout
    assert target.read_bytes() == model_bytes
    assert f"sha256 {digest} (matches the catalogue)" in result.stdout
    assert "tiny-onnx from 127.0.0.1" in result.stderr and "100%" in result.stderr  # progress
    assert sorted(p.name for p in target.parent.iterdir()) == ["det_500m.onnx"]  # no .part left over
    assert not (tmp_path / "assets").exists()  # nothing is ever written into the mirror

    # Present now: a second pull does not touch the network.
    again = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert again.returncode == 0 and "already present at" in again.stdout
    assert len(served.requests) == 1


def test_an_interrupted_download_resumes_with_a_range_request(
    tmp_path: Path, server: tuple[str, Served], model_bytes: bytes
) -> None:
    base, served = server
    served.files["/det_500m.onnx"] = model_bytes
    served.cut_after = 1_000_000
    digest = hashlib.sha256(model_bytes).hexdigest()
    catalogue = write_catalogue(tmp_path / "c.yaml", [onnx_entry(f"{base}/det_500m.onnx", digest)])
    first = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert first.returncode == 7
    error = first.stderr.strip().splitlines()[-1]
    assert error.startswith("nvr: error: download of tiny-onnx from 127.0.0.1:")
    assert error.endswith(
        f"stopped at 1000000 of {len(model_bytes)} bytes; run the same command again to resume"
    )
    part = tmp_path / "store" / "det_500m.onnx.part"
    assert part.stat().st_size == 1_000_000
    assert not (tmp_path / "store" / "det_500m.onnx").exists()
    listing = nvr(tmp_path, "list", "--catalogue", str(catalogue))
    assert "partial download, 1.0 MB (pull again to resume)" in listing.stdout

    second = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert second.returncode == 0, second.stderr
    assert served.requests[-1] == ("/det_500m.onnx", "bytes=1000000-")
    assert served.sent == len(model_bytes)  # nothing was sent twice
    assert (tmp_path / "store" / "det_500m.onnx").read_bytes() == model_bytes
    assert not part.exists()


def test_a_server_without_range_support_restarts_the_download(
    tmp_path: Path, server: tuple[str, Served], model_bytes: bytes
) -> None:
    base, served = server
    served.files["/m.onnx"] = model_bytes
    served.honour_range = False
    part = tmp_path / "store" / "det_500m.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"stale bytes from another file")
    catalogue = write_catalogue(tmp_path / "c.yaml", [onnx_entry(f"{base}/m.onnx", None)])
    result = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "store" / "det_500m.onnx").read_bytes() == model_bytes
    assert "(no published checksum to compare with)" in result.stdout
    assert hashlib.sha256(model_bytes).hexdigest() in result.stdout


def test_a_checksum_mismatch_fails_and_keeps_nothing(
    tmp_path: Path, server: tuple[str, Served], model_bytes: bytes
) -> None:
    base, served = server
    served.files["/det_500m.onnx"] = model_bytes[:-1] + b"\x00"  # one byte changed upstream
    published = hashlib.sha256(model_bytes).hexdigest()
    catalogue = write_catalogue(tmp_path / "c.yaml", [onnx_entry(f"{base}/det_500m.onnx", published)])
    result = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert result.returncode == 7
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("nvr: error: tiny-onnx: ")
    assert f"does not match the catalogue's {published}" in lines[-1] and "removed it" in lines[-1]
    assert list((tmp_path / "store").iterdir()) == []


def test_offline_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    catalogue = write_catalogue(tmp_path / "c.yaml", [onnx_entry(f"http://127.0.0.1:{port}/m.onnx", None)])
    result = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert result.returncode == 7
    stored = tmp_path / "store" / "det_500m.onnx"
    assert result.stderr.strip().splitlines() == [
        f"nvr: error: cannot download tiny-onnx from 127.0.0.1:{port}: [Errno 111] Connection refused "
        f"(offline? run the command again when connected, or copy the file to {stored})"
    ]


def test_http_errors_are_reported(tmp_path: Path, server: tuple[str, Served]) -> None:
    base, _ = server
    catalogue = write_catalogue(tmp_path / "c.yaml", [onnx_entry(f"{base}/gone.onnx", None)])
    result = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert result.returncode == 7
    assert (
        result.stderr.strip()
        == f"nvr: error: cannot download tiny-onnx: {base}/gone.onnx answered HTTP 404 Not Found"
    )


def test_a_model_pack_archive_is_downloaded_and_its_member_extracted(
    tmp_path: Path, server: tuple[str, Served], model_bytes: bytes
) -> None:
    base, served = server
    pack = io.BytesIO()
    with zipfile.ZipFile(pack, "w") as bundle:
        bundle.writestr("buffalo_sc/w600k_mbf.onnx", b"another model")
        bundle.writestr("buffalo_sc/det_500m.onnx", model_bytes)
    served.files["/buffalo_sc.zip"] = pack.getvalue()
    entry = onnx_entry(
        f"{base}/buffalo_sc.zip", hashlib.sha256(model_bytes).hexdigest(), member="det_500m.onnx"
    )
    catalogue = write_catalogue(tmp_path / "c.yaml", [entry])
    result = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "store"
    assert (folder / "det_500m.onnx").read_bytes() == model_bytes
    assert [p.name for p in folder.iterdir()] == ["det_500m.onnx"]  # the archive is not kept


def test_pull_copies_from_the_local_mirror_into_an_empty_store(tmp_path: Path) -> None:
    # Here nothing can be downloaded: the real asset folder is the mirror the catalogue's models come from.
    mirror = {"NVR_ASSETS": str(asset_path("."))}
    mirrored = asset_path("models/scrfd/det_2.5g.onnx")
    stored = tmp_path / "store" / "det_2.5g.onnx"
    result = nvr(tmp_path, "pull", "scrfd_2.5g", "--chip", "cpu", env=mirror)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"scrfd_2.5g-onnx: copied from the local mirror {mirrored} to {stored}",
        f"sha256 {hashlib.sha256(mirrored.read_bytes()).hexdigest()} (no published checksum to compare with)",
    ]
    assert stored.read_bytes() == mirrored.read_bytes()
    assert [p.name for p in stored.parent.iterdir()] == ["det_2.5g.onnx"]  # no temporary file left over
    umask = os.umask(0o022)
    os.umask(umask)
    assert stored.stat().st_mode & 0o777 == 0o666 & ~umask  # like any file its user creates
    copied_at = stored.stat().st_mtime_ns

    again = nvr(tmp_path, "pull", "scrfd_2.5g-onnx", env=mirror)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"scrfd_2.5g-onnx: already present at {stored}"
    assert stored.stat().st_mtime_ns == copied_at  # a no-op: not copied again

    listing = nvr(tmp_path, "list", env=mirror)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0] == f"model store: {tmp_path / 'store'} (set NVR_MODELS to use another folder)"
    assert lines[1].startswith(f"local mirror: {asset_path('.')} ")
    rows = {line.split()[0]: line.split()[3:] for line in lines[3:]}
    assert set(rows) == {entry.id for entry in load_catalogue(CATALOGUE_PATH)}
    assert rows["scrfd_2.5g-onnx"][0] == "yes" and rows["scrfd_2.5g-onnx"][1] == "present,"
    assert rows["scrfd_2.5g-onnx"][-1] == "det_2.5g.onnx"
    assert rows["scrfd_500m-onnx"] == ["yes", "-"]  # the mirror has it, the store does not (yet)
    assert rows["scrfd_2.5g-hailo10h"] == ["yes", "-"]
    assert rows["scrfd_10g-hailo8"] == ["-", "-"]  # neither: a pull would download it
    as_json = nvr(tmp_path, "list", "--json", env=mirror).stdout.splitlines()
    records = {record["id"]: record for record in map(json.loads, as_json)}
    assert records["scrfd_2.5g-onnx"]["present"] is True and records["scrfd_2.5g-onnx"]["path"] == str(stored)
    assert records["scrfd_500m-onnx"]["present"] is False and records["scrfd_500m-onnx"]["mirrored"] is True
    assert records["scrfd_500m-onnx"]["mirror_path"] == str(asset_path("models/scrfd/det_500m.onnx"))


def test_a_mirror_copy_is_checked_against_a_published_checksum(
    tmp_path: Path, server: tuple[str, Served], model_bytes: bytes
) -> None:
    base, served = server
    served.files["/det_500m.onnx"] = model_bytes
    digest = hashlib.sha256(model_bytes).hexdigest()
    catalogue = write_catalogue(tmp_path / "c.yaml", [onnx_entry(f"{base}/det_500m.onnx", digest)])
    mirrored = tmp_path / "assets" / MODEL
    mirrored.parent.mkdir(parents=True)
    mirrored.write_bytes(model_bytes)
    result = nvr(tmp_path, "pull", "tiny-onnx", "--catalogue", str(catalogue))
    assert result.returncode == 0, result.stderr
    assert f"tiny-onnx: copied from the local mirror {mirrored}" in result.stdout
    assert f"sha256 {digest} (matches the catalogue)" in result.stdout
    assert (tmp_path / "store" / "det_500m.onnx").read_bytes() == model_bytes
    assert served.requests == []  # the mirror stood in for the server

    # A mirror holding another file under the model's name is refused, and nothing reaches the store.
    mirrored.write_bytes(model_bytes[:-1] + b"\x00")
    forced = nvr(tmp_path, "pull", "tiny-onnx", "--force", "--catalogue", str(catalogue))
    assert forced.returncode == 4
    wrong = hashlib.sha256(mirrored.read_bytes()).hexdigest()
    assert forced.stderr.strip() == (
        f"nvr: error: tiny-onnx: {mirrored}: sha256 {wrong} does not match the catalogue's {digest} "
        "(the local mirror holds another file under its name; not copied)"
    )
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["det_500m.onnx"]  # the good copy stays
    assert (tmp_path / "store" / "det_500m.onnx").read_bytes() == model_bytes
    assert served.requests == []


def test_a_family_resolves_to_the_chip_found_or_given() -> None:
    entries = load_catalogue(CATALOGUE_PATH)
    assert resolve("scrfd_2.5g", "hailo8l", entries).id == "scrfd_2.5g-hailo8l"
    assert resolve("scrfd_500m", "cpu", entries).id == "scrfd_500m-onnx"
    assert resolve("scrfd_10g-hailo8", None, entries).id == "scrfd_10g-hailo8"
    with pytest.raises(ModelError, match="has no scrfd_500m model for hailo10h: it offers scrfd_500m-hailo8"):
        resolve("scrfd_500m", "hailo10h", entries)
    with pytest.raises(ModelError, match="unknown model 'yolo'"):
        resolve("yolo", None, entries)


def test_pull_of_a_family_picks_the_hef_of_the_detected_chip(
    tmp_path: Path, server: tuple[str, Served]
) -> None:
    base, served = server
    hef = asset_path("hef/scrfd_2.5g.hailo10h.hef").read_bytes()
    served.files["/hailo8l.hef"] = hef
    models: list[dict[str, str | None]] = [
        {"id": f"scrfd_2.5g-{chip}", "family": "scrfd_2.5g", "kind": "hef", "chip": chip,
         "url": f"{base}/{chip}.hef", "path": f"hef/{chip}.hef", "sha256": None}
        for chip in ("hailo8", "hailo8l")
    ]  # fmt: skip
    catalogue = write_catalogue(tmp_path / "c.yaml", models)
    double = {
        "PYTHONPATH": str(PROJECT_ROOT / "tests" / "hailo_double"),
        "HAILO_DOUBLE_ARCH": "hailo8l",
        "HAILO_DOUBLE_LOCK_DIR": str(tmp_path / "locks"),
    }
    result = nvr(tmp_path, "pull", "scrfd_2.5g", "--catalogue", str(catalogue), env=double)
    assert result.returncode == 0, result.stderr
    assert "scrfd_2.5g-hailo8l: downloaded to" in result.stdout
    assert (tmp_path / "store" / "hailo8l.hef").read_bytes() == hef


def test_a_store_that_cannot_be_written_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    store = tmp_path / "a_file" / "models"
    result = nvr(tmp_path, "pull", "scrfd_500m-onnx", env={"NVR_MODELS": str(store)})
    assert result.returncode == 4
    assert result.stderr.strip().startswith(f"nvr: error: cannot write to the model store {store}: ")
    assert result.stderr.strip().endswith("or choose another folder with NVR_MODELS)")
