"""Fetching catalogue models into the model store: from the local mirror, or downloaded with progress,
resume and checksum; and what is present.

A model is kept in the model store (`nvr.assets.models_dir()`) under its file name. `pull` uses a file
already there; else copies it from the local mirror (the asset folder, which stands in for the download
servers on machines without internet); else downloads it from its official URL. Downloads go to
`<file>.part` (resumed with an HTTP Range request after an interruption); copies go to a temporary file.
Either is renamed into place only once complete and verified: a half-fetched or corrupted model is never
mistaken for a good one. Archives (insightface's model packs) are downloaded whole, then the catalogue's
member is extracted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import urlsplit

from nvr.assets import MODELS_ENV
from nvr.errors import InputFileError, NetworkError
from nvr.models.catalogue import CatalogueEntry
from nvr.progress import Progress

CHUNK = 256 * 1024
TIMEOUT_S = 30.0
USER_AGENT = "nvr-models-pull"


Source = Literal["store", "mirror", "download"]


@dataclass(frozen=True, slots=True)
class PullResult:
    entry: CatalogueEntry
    path: Path
    sha256: str
    source: Source  # "store": it was already there; "mirror": copied from the local mirror; "download"
    checksum_verified: bool  # True when the catalogue publishes a checksum and it matched


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def pull(entry: CatalogueEntry, *, force: bool = False) -> PullResult:
    """Make `entry` present in the model store: as is, from the local mirror, or downloaded; verify a
    published checksum."""
    target = entry.local_path
    published = entry.sha256 is not None
    if target.is_file() and not force:
        digest = sha256_of(target)
        _check_digest(entry, target, digest, remove=False)
        return PullResult(entry, target, digest, "store", published)
    _make_store(target.parent)
    mirror = entry.mirror_path
    if mirror.is_file():
        candidate, digest = _copy_hashing(mirror, target)
        source: Source = "mirror"
    else:
        if entry.member:
            archive = download_to(entry.url, _part_path(entry), label=entry.id, target=target)
            candidate = target.with_name(target.name + ".new")
            _extract(entry, archive, candidate)
            archive.unlink()
        else:
            candidate = download_to(entry.url, _part_path(entry), label=entry.id, target=target)
        digest = sha256_of(candidate)
        source = "download"
    _check_digest(entry, candidate, digest, remove=True, origin=mirror if source == "mirror" else None)
    candidate.replace(target)  # only a complete, verified file ever appears under the model's name
    return PullResult(entry, target, digest, source, published)


def _make_store(store: Path) -> None:
    try:
        store.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=store):  # writable? Better said now than after a long download
            pass
    except OSError as exc:
        raise InputFileError(
            f"cannot write to the model store {store}: {exc.strerror or exc} (run as its owner, e.g. "
            f"sudo -u nvr for the service's store, or choose another folder with {MODELS_ENV})"
        ) from None


def _copy_hashing(source: Path, target: Path) -> tuple[Path, str]:
    """Copy `source` to a temporary file beside `target` (same filesystem, so the rename is atomic),
    hashing as it goes; the copy is synced so a power cut cannot leave a truncated model behind."""
    digest = hashlib.sha256()
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with source.open("rb") as src, os.fdopen(handle, "wb") as out:
            os.fchmod(out.fileno(), 0o666 & ~_umask())  # mkstemp's 0600 would hide it from the service user
            while block := src.read(CHUNK):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InputFileError(f"cannot copy {source} into the model store {target.parent}: {exc}") from None
    return temporary, digest.hexdigest()


def download_to(url: str, part: Path, label: str, target: Path | None = None) -> Path:
    """Download `url` into `part`, continuing from the bytes already there when the server allows."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    host = urlsplit(url).netloc or url
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            status = response.status
            total_header = response.headers.get("Content-Length")
            remaining = int(total_header) if total_header and total_header.isdigit() else None
            if have and status == 206 and _range_start(response.headers.get("Content-Range")) == have:
                mode, done = "ab", have
            else:  # no resume (a 200 is the whole file): start over
                mode, done = "wb", 0
            total = done + remaining if remaining is not None else None
            progress = Progress(f"{label} from {host}", total, "B")
            progress.advance(done)
            with part.open(mode) as out:
                while block := response.read(CHUNK):
                    out.write(block)
                    progress.advance(len(block))
            progress.close()
            if total is not None and progress.done < total:
                raise NetworkError(
                    f"download of {label} from {host} stopped at {progress.done} of {total} bytes; "
                    "run the same command again to resume"
                )
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return part  # the range starts at the end: the partial file is already complete
        raise NetworkError(f"cannot download {label}: {url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        kept = f"; {part.stat().st_size} bytes kept in {part} for resuming" if part.exists() else ""
        place = f"to {target}" if target is not None else "into the model store"
        raise NetworkError(
            f"cannot download {label} from {host}: {reason} (offline? run the command again when "
            f"connected, or copy the file {place}){kept}"
        ) from None
    return part


def _range_start(content_range: str | None) -> int | None:
    # "bytes 100-999/1000" -> 100
    if not content_range or not content_range.startswith("bytes "):
        return None
    first = content_range[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _part_path(entry: CatalogueEntry) -> Path:
    """Where an interrupted download waits: `<file>.part`, or the archive's name for model packs."""
    if not entry.member:
        return entry.local_path.with_name(entry.local_path.name + ".part")
    name = PurePosixPath(urlsplit(entry.url).path).name or f"{entry.id}.zip"
    return entry.local_path.with_name(f"{name}.part")


def _extract(entry: CatalogueEntry, archive: Path, destination: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            names = [n for n in bundle.namelist() if PurePosixPath(n).name == entry.member]
            if not names:
                raise InputFileError(f"{entry.url}: the archive has no {entry.member}")
            with bundle.open(names[0]) as source, destination.open("wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
    except zipfile.BadZipFile:
        archive.unlink()
        raise NetworkError(
            f"{entry.url}: the download is not a valid zip archive; removed, try again"
        ) from None


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _check_digest(
    entry: CatalogueEntry, path: Path, digest: str, *, remove: bool, origin: Path | None = None
) -> None:
    if entry.sha256 is None or digest == entry.sha256.lower():
        return
    if remove:
        path.unlink()
    if origin is not None:
        shown = origin
        what = "the local mirror holds another file under its name; not copied"
    elif remove:
        shown = path
        what = "the download was corrupted or the file changed upstream; removed it"
    else:
        shown = path
        what = "a different file is in its place; move it away or pull with --force"
    # A bad download is a network failure; a wrong file in the store or the mirror is a file at fault.
    error = NetworkError if remove and origin is None else InputFileError
    raise error(
        f"{entry.id}: {shown}: sha256 {digest} does not match the catalogue's {entry.sha256} ({what})"
    )


@dataclass(frozen=True, slots=True)
class LocalState:
    entry: CatalogueEntry
    present: bool  # in the model store
    size: int | None
    partial: int | None  # bytes of an interrupted download waiting to be resumed
    mirrored: bool  # the local mirror has it, so a pull needs no network


def local_state(entry: CatalogueEntry) -> LocalState:
    target = entry.local_path
    part = _part_path(entry)
    present = target.is_file()
    return LocalState(
        entry,
        present,
        target.stat().st_size if present else None,
        part.stat().st_size if part.is_file() else None,
        entry.mirror_path.is_file(),
    )
