"""The face library's SQLite file: creating it, opening it, checking and migrating its schema.

Several processes use the file at once (the daemon reading, `nvr faces` and the web UI writing), so it is in
WAL mode, every change is one transaction (`transaction`: a reader sees a change whole or not at all), and
each transaction bumps the change counter in `meta`, cheap to poll for "has anything changed?".
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from nvr.errors import ExitCode, NvrError

SCHEMA_VERSION = 1


class LibraryError(NvrError):
    """The library file cannot be used (missing, corrupt, written by a newer nvr); names the file."""

    exit_code = ExitCode.INPUT


# Schema migrations: index i takes the file from user_version i to i + 1. Append, never edit.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE people (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        name_key TEXT NOT NULL UNIQUE,
        slug TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        person_id TEXT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        created REAL NOT NULL,
        source TEXT NOT NULL,
        crop BLOB NOT NULL
    );
    CREATE INDEX samples_person ON samples(person_id);
    CREATE TABLE embeddings (
        sample_id INTEGER NOT NULL REFERENCES samples(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (sample_id, model_id)
    );
    CREATE INDEX embeddings_model ON embeddings(model_id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('changes', 0);
    """,
)
_OUR_TABLES = frozenset({"people", "samples", "embeddings", "meta"})


def open_library(path: Path, *, create: bool) -> sqlite3.Connection:
    """A connection to the face library at `path`, checked and migrated to SCHEMA_VERSION; LibraryError if
    the file cannot be used. `create=False` refuses a file that does not exist instead of making one."""
    existed = path.exists()
    if not existed and not create:
        raise LibraryError(f"{path}: no such face library (add someone with `nvr faces add` first)")
    if path.is_dir():
        raise LibraryError(f"{path}: is a directory, not a face library file")
    if not existed:
        _create_file(path)
    try:
        db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise LibraryError(f"{path}: cannot open the face library ({exc})") from None
    try:
        _prepare(db, path)
    except sqlite3.DatabaseError as exc:
        db.close()
        raise LibraryError(f"{path}: not a readable face library ({exc})") from None
    except LibraryError:
        db.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One change = one transaction, which also bumps the change counter."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _create_file(path: Path) -> None:
    """Create the empty file ourselves so it gets the owner and mode the daemon can use."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o660)
    except FileExistsError:
        return  # another process created it just now: open theirs
    except OSError as exc:
        raise LibraryError(f"{path}: cannot create the face library ({exc.strerror})") from None
    try:
        # `sudo nvr faces ...` as root into the daemon's state folder: the daemon's user must own the
        # file (SQLite then gives its -wal/-shm files the same owner).
        info = parent.stat()
        if os.geteuid() == 0 and info.st_uid != 0:
            os.fchown(fd, info.st_uid, info.st_gid)
    finally:
        os.close(fd)


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA foreign_keys = ON")
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise LibraryError(
            f"{path}: face library schema version {version} was written by a newer nvr "
            f"(this one reads up to {SCHEMA_VERSION}); upgrade nvr"
        )
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables.discard("sqlite_sequence")
    if version == 0 and tables:
        raise LibraryError(f"{path}: an SQLite file that is not an nvr face library")
    if version > 0 and not tables >= _OUR_TABLES:
        raise LibraryError(f"{path}: damaged face library (tables missing)")
    if version > 0:
        problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if problem != "ok":
            raise LibraryError(f"{path}: damaged face library ({problem})")
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; never corrupt in WAL mode
    while version < SCHEMA_VERSION:
        with transaction(db):
            # executescript would commit our transaction: run the statements one by one.
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    db.execute(statement)
            version += 1
            db.execute(f"PRAGMA user_version = {version}")


class LibraryFile:
    """One connection to a face library file behind a lock (thread-safe), opened with `open_library`'s
    checks; a context manager. The face library and the stranger store are both built on it."""

    def __init__(self, path: str | Path, *, create: bool) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._db = open_library(self.path, create=create)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.DatabaseError as exc:
                raise LibraryError(f"{self.path}: face library error ({exc})") from None

    @contextmanager
    def _change(self) -> Iterator[sqlite3.Connection]:
        """One change: the lock, and one transaction."""
        with self._locked(), transaction(self._db) as db:
            yield db
