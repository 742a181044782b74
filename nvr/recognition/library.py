"""The face library: people, their enrolment samples and the samples' embeddings, in ONE SQLite file.

Several processes use it at once (the daemon reading, `nvr faces` and the web UI writing), so the file is in
WAL mode, every change is one transaction (a reader sees a change whole or not at all), and `version()` is a
counter bumped by every change, cheap to poll for "has anything changed?".

Each sample keeps its aligned 112x112 face crop (JPEG), so switching embedding models (CPU <-> Hailo, a new
version) re-embeds from the crops; embeddings are stored per model id (`nvr.families.arcface.model_id_for`,
from the model file's hash) and embeddings of different models are never compared.

People have a stable id, a display name and a slug: lower-case ASCII letters, digits and `_`, safe as an
MQTT topic level, unique, and never a reserved word (`person`, `unknown`, `unknown_*`, ...); a name without
ASCII letters (e.g. in another script) gets its id as slug.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nvr.errors import ExitCode, NvrError

SCHEMA_VERSION = 1
MAX_NAME_LENGTH = 64
MAX_SLUG_LENGTH = 48

# Slugs that topics, the web UI or the stranger groups already use.
RESERVED_SLUGS = frozenset(
    {"person", "people", "unknown", "stranger", "strangers", "none", "null", "all", "face", "faces", "count"}
)
_RESERVED_PREFIXES = ("unknown_", "stranger_")


class LibraryError(NvrError):
    """The library file cannot be used (missing, corrupt, written by a newer nvr); names the file."""

    exit_code = ExitCode.INPUT


class PersonError(NvrError):
    """A name or person given on the command line is not acceptable (collision, reserved, not found)."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    name: str
    slug: str
    created: float


@dataclass(frozen=True, slots=True)
class Sample:
    id: int
    person_id: str
    created: float
    source: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """An embedding model the library holds embeddings of."""

    id: str
    dim: int
    embedded: int  # samples with an embedding of this model


FloatMatrix = npt.NDArray[np.float32]

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


def slugify(name: str) -> str:
    """The topic-safe form of `name`: ASCII lower-case letters, digits, single `_`; "" without a letter."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:MAX_SLUG_LENGTH].rstrip("_")
    return slug if re.search(r"[a-z]", slug) else ""


def is_reserved_slug(slug: str) -> bool:
    return slug in RESERVED_SLUGS or slug.startswith(_RESERVED_PREFIXES)


def check_name(name: str) -> str:
    """`name` stripped, or PersonError saying why it cannot be a person's name."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise PersonError("a person's name must not be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise PersonError(f"name {cleaned[:20]!r}...: longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in cleaned):
        raise PersonError(f"name {cleaned!r}: contains control characters")
    return cleaned


def _name_key(name: str) -> str:
    # Two names that differ only in case or Unicode form are the same person.
    return unicodedata.normalize("NFKC", name).casefold()


class FaceLibrary:
    """One face library file. Thread-safe (one connection behind a lock); use as a context manager or
    `close()` it. `create=False` refuses a file that does not exist instead of making an empty library."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        existed = self.path.exists()
        if not existed and not create:
            raise LibraryError(f"{self.path}: no such face library (add someone with `nvr faces add` first)")
        if self.path.is_dir():
            raise LibraryError(f"{self.path}: is a directory, not a face library file")
        if not existed:
            self._create_file()
        try:
            self._db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise LibraryError(f"{self.path}: cannot open the face library ({exc})") from None
        try:
            self._prepare()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LibraryError(f"{self.path}: not a readable face library ({exc})") from None
        except LibraryError:
            self._db.close()
            raise

    # --- opening -------------------------------------------------------------------------------------

    def _create_file(self) -> None:
        """Create the empty file ourselves so it gets the owner and mode the daemon can use."""
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o660)
        except FileExistsError:
            return  # another process created it just now: open theirs
        except OSError as exc:
            raise LibraryError(f"{self.path}: cannot create the face library ({exc.strerror})") from None
        try:
            # `sudo nvr faces ...` as root into the daemon's state folder: the daemon's user must own the
            # file (SQLite then gives its -wal/-shm files the same owner).
            info = parent.stat()
            if os.geteuid() == 0 and info.st_uid != 0:
                os.fchown(fd, info.st_uid, info.st_gid)
        finally:
            os.close(fd)

    def _prepare(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 10000")
        db.execute("PRAGMA foreign_keys = ON")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise LibraryError(
                f"{self.path}: face library schema version {version} was written by a newer nvr "
                f"(this one reads up to {SCHEMA_VERSION}); upgrade nvr"
            )
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables.discard("sqlite_sequence")
        if version == 0 and tables:
            raise LibraryError(f"{self.path}: an SQLite file that is not an nvr face library")
        if version > 0 and not tables >= _OUR_TABLES:
            raise LibraryError(f"{self.path}: damaged face library (tables missing)")
        if version > 0:
            problem = db.execute("PRAGMA quick_check(1)").fetchone()[0]
            if problem != "ok":
                raise LibraryError(f"{self.path}: damaged face library ({problem})")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; never corrupt in WAL mode
        while version < SCHEMA_VERSION:
            with self._write():
                # executescript would commit our transaction: run the statements one by one.
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> FaceLibrary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One change = one transaction, which also bumps the change counter."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone():
                db.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.DatabaseError as exc:
                raise LibraryError(f"{self.path}: face library error ({exc})") from None

    @contextmanager
    def _change(self) -> Iterator[sqlite3.Connection]:
        with self._locked(), self._write() as db:
            yield db

    # --- reading ---------------------------------------------------------------------------------------

    def version(self) -> int:
        """A number that changes after every committed change, by any process."""
        with self._locked() as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0])

    def people(self) -> list[Person]:
        with self._locked() as db:
            rows = db.execute("SELECT id, name, slug, created FROM people ORDER BY name_key").fetchall()
        return [Person(*row) for row in rows]

    def person(self, key: str) -> Person | None:
        """The person whose name (any case), id or slug is `key`; None if nobody."""
        with self._locked() as db:
            for column, value in (("name_key", _name_key(" ".join(key.split()))), ("id", key), ("slug", key)):
                row = db.execute(
                    f"SELECT id, name, slug, created FROM people WHERE {column} = ?", (value,)
                ).fetchone()
                if row is not None:
                    return Person(*row)
        return None

    def require_person(self, key: str) -> Person:
        found = self.person(key)
        if found is None:
            raise PersonError(f"no person {key!r} in {self.path} (`nvr faces list` shows who is there)")
        return found

    def person_by_name(self, name: str) -> Person | None:
        """The person with exactly this name (ignoring case), not matching slugs or ids."""
        with self._locked() as db:
            row = db.execute(
                "SELECT id, name, slug, created FROM people WHERE name_key = ?",
                (_name_key(check_name(name)),),
            ).fetchone()
        return None if row is None else Person(*row)

    def samples(self, person: Person | str) -> list[Sample]:
        person_id = person.id if isinstance(person, Person) else person
        with self._locked() as db:
            rows = db.execute(
                "SELECT id, person_id, created, source FROM samples WHERE person_id = ? ORDER BY id",
                (person_id,),
            ).fetchall()
        return [Sample(*row) for row in rows]

    def sample(self, sample_id: int) -> Sample | None:
        with self._locked() as db:
            row = db.execute(
                "SELECT id, person_id, created, source FROM samples WHERE id = ?", (sample_id,)
            ).fetchone()
        return None if row is None else Sample(*row)

    def sample_crop(self, sample_id: int) -> bytes:
        """The sample's aligned 112x112 face crop, JPEG."""
        with self._locked() as db:
            row = db.execute("SELECT crop FROM samples WHERE id = ?", (sample_id,)).fetchone()
        if row is None:
            raise PersonError(f"no sample {sample_id} in {self.path}")
        return bytes(row[0])

    def samples_missing(self, model_id: str) -> list[Sample]:
        """Samples without an embedding of `model_id` (to embed after switching models)."""
        with self._locked() as db:
            rows = db.execute(
                "SELECT id, person_id, created, source FROM samples WHERE id NOT IN "
                "(SELECT sample_id FROM embeddings WHERE model_id = ?) ORDER BY id",
                (model_id,),
            ).fetchall()
        return [Sample(*row) for row in rows]

    def models(self) -> list[ModelInfo]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT model_id, MAX(dim), COUNT(*) FROM embeddings GROUP BY model_id ORDER BY model_id"
            ).fetchall()
        return [ModelInfo(str(model), int(dim), int(count)) for model, dim, count in rows]

    def sample_models(self, sample_id: int) -> list[str]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT model_id FROM embeddings WHERE sample_id = ? ORDER BY model_id", (sample_id,)
            ).fetchall()
        return [str(row[0]) for row in rows]

    def embedding_matrix(self, model_id: str) -> tuple[FloatMatrix, list[str]]:
        """Each sample's embedding of `model_id` as rows of a float32 [N, D] matrix, and whose each row is."""
        with self._locked() as db:
            rows = db.execute(
                "SELECT s.person_id, e.dim, e.vector FROM embeddings e JOIN samples s ON s.id = e.sample_id "
                "WHERE e.model_id = ? ORDER BY s.person_id, s.id",
                (model_id,),
            ).fetchall()
        if not rows:
            return np.zeros((0, 0), np.float32), []
        dim = int(rows[0][1])
        matrix = np.empty((len(rows), dim), np.float32)
        for index, (_, row_dim, blob) in enumerate(rows):
            if row_dim != dim or len(blob) != dim * 4:
                raise LibraryError(
                    f"{self.path}: damaged face library (embeddings of {model_id} differ in size)"
                )
            matrix[index] = np.frombuffer(blob, np.float32)
        return matrix, [str(row[0]) for row in rows]

    # --- changing --------------------------------------------------------------------------------------

    def add_person(self, name: str) -> Person:
        """A new person; PersonError if the name is taken, reserved, or its slug is someone else's."""
        name = check_name(name)
        key = _name_key(name)
        with self._change() as db:
            if db.execute("SELECT 1 FROM people WHERE name_key = ?", (key,)).fetchone():
                raise PersonError(f"{name!r} is already in {self.path}")
            person_id = self._new_person_id(db)
            slug = self._free_slug(db, name, person_id, exclude=None)
            person = Person(person_id, name, slug, time.time())
            db.execute(
                "INSERT INTO people (id, name, name_key, slug, created) VALUES (?, ?, ?, ?, ?)",
                (person.id, person.name, key, person.slug, person.created),
            )
        return person

    def check_new_name(self, name: str) -> None:
        """PersonError now if `name` could not be enrolled as a new person (before any slow work)."""
        name = check_name(name)
        with self._locked() as db:
            if not db.execute("SELECT 1 FROM people WHERE name_key = ?", (_name_key(name),)).fetchone():
                self._free_slug(db, name, "p00000000", exclude=None)

    def rename_person(self, person: Person | str, new_name: str) -> Person:
        """Rename (the slug follows the name; the id stays)."""
        new_name = check_name(new_name)
        key = _name_key(new_name)
        current = self.require_person(person) if isinstance(person, str) else person
        with self._change() as db:
            clash = db.execute(
                "SELECT name FROM people WHERE name_key = ? AND id != ?", (key, current.id)
            ).fetchone()
            if clash:
                raise PersonError(f"{new_name!r}: {clash[0]!r} is already in {self.path}")
            slug = self._free_slug(db, new_name, current.id, exclude=current.id)
            updated = db.execute(
                "UPDATE people SET name = ?, name_key = ?, slug = ? WHERE id = ?",
                (new_name, key, slug, current.id),
            ).rowcount
            if not updated:
                raise PersonError(f"no person {current.name!r} in {self.path}")
        return Person(current.id, new_name, slug, current.created)

    def remove_person(self, person: Person | str) -> None:
        """Remove the person with all their samples and embeddings."""
        current = self.require_person(person) if isinstance(person, str) else person
        with self._change() as db:
            db.execute("DELETE FROM people WHERE id = ?", (current.id,))

    def add_sample(
        self,
        person: Person | str,
        crop_jpeg: bytes,
        embeddings: Mapping[str, npt.ArrayLike],
        source: str,
    ) -> Sample:
        """Enrol one aligned face crop (JPEG) with its embedding per model id."""
        person_id = person.id if isinstance(person, Person) else person
        vectors = {model_id: _vector(vector) for model_id, vector in embeddings.items()}
        with self._change() as db:
            if not db.execute("SELECT 1 FROM people WHERE id = ?", (person_id,)).fetchone():
                raise PersonError(f"no person with id {person_id!r} in {self.path}")
            for model_id, vector in vectors.items():
                self._check_dim(db, model_id, vector)
            sample = Sample(0, person_id, time.time(), source)
            cursor = db.execute(
                "INSERT INTO samples (person_id, created, source, crop) VALUES (?, ?, ?, ?)",
                (person_id, sample.created, source, sqlite3.Binary(crop_jpeg)),
            )
            sample_id = int(cursor.lastrowid or 0)
            db.executemany(
                "INSERT INTO embeddings (sample_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
                [(sample_id, m, v.size, v.tobytes()) for m, v in vectors.items()],
            )
        return Sample(sample_id, person_id, sample.created, source)

    def enrol(
        self, name: str, samples: Sequence[tuple[bytes, Mapping[str, npt.ArrayLike], str]]
    ) -> tuple[Person, list[Sample]]:
        """Add samples (crop JPEG, embeddings per model id, source) to the person called `name`, creating
        them if needed: all in ONE transaction, so a failure leaves neither the person nor any sample."""
        name = check_name(name)
        key = _name_key(name)
        prepared = [
            (crop, {m: _vector(v) for m, v in vectors.items()}, src) for crop, vectors, src in samples
        ]
        with self._change() as db:
            row = db.execute(
                "SELECT id, name, slug, created FROM people WHERE name_key = ?", (key,)
            ).fetchone()
            if row is not None:
                person = Person(*row)
            else:
                person_id = self._new_person_id(db)
                person = Person(person_id, name, self._free_slug(db, name, person_id, None), time.time())
                db.execute(
                    "INSERT INTO people (id, name, name_key, slug, created) VALUES (?, ?, ?, ?, ?)",
                    (person.id, person.name, key, person.slug, person.created),
                )
            added = []
            for crop, vectors, source in prepared:
                for model_id, vector in vectors.items():
                    self._check_dim(db, model_id, vector)
                created = time.time()
                cursor = db.execute(
                    "INSERT INTO samples (person_id, created, source, crop) VALUES (?, ?, ?, ?)",
                    (person.id, created, source, sqlite3.Binary(crop)),
                )
                sample_id = int(cursor.lastrowid or 0)
                db.executemany(
                    "INSERT INTO embeddings (sample_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
                    [(sample_id, m, v.size, v.tobytes()) for m, v in vectors.items()],
                )
                added.append(Sample(sample_id, person.id, created, source))
        return person, added

    def remove_sample(self, sample_id: int) -> None:
        with self._change() as db:
            if not db.execute("DELETE FROM samples WHERE id = ?", (sample_id,)).rowcount:
                raise PersonError(f"no sample {sample_id} in {self.path}")

    def set_embedding(self, sample_id: int, model_id: str, vector: npt.ArrayLike) -> None:
        """Store (or replace) one sample's embedding of `model_id`."""
        values = _vector(vector)
        with self._change() as db:
            if not db.execute("SELECT 1 FROM samples WHERE id = ?", (sample_id,)).fetchone():
                raise PersonError(f"no sample {sample_id} in {self.path}")
            self._check_dim(db, model_id, values)
            db.execute(
                "INSERT OR REPLACE INTO embeddings (sample_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
                (sample_id, model_id, values.size, values.tobytes()),
            )

    def remove_model(self, model_id: str) -> int:
        """Drop every embedding of `model_id` (crops stay); returns how many were dropped."""
        with self._change() as db:
            return int(db.execute("DELETE FROM embeddings WHERE model_id = ?", (model_id,)).rowcount)

    # --- helpers ---------------------------------------------------------------------------------------

    def _check_dim(self, db: sqlite3.Connection, model_id: str, vector: npt.NDArray[np.float32]) -> None:
        row = db.execute("SELECT dim FROM embeddings WHERE model_id = ? LIMIT 1", (model_id,)).fetchone()
        if row is not None and int(row[0]) != vector.size:
            raise LibraryError(
                f"{self.path}: model {model_id} embeddings have {row[0]} values, this one {vector.size}"
            )

    @staticmethod
    def _new_person_id(db: sqlite3.Connection) -> str:
        while True:
            # A letter first, so an id used as a slug is a valid one.
            candidate = "p" + secrets.token_hex(4)
            if not db.execute(
                "SELECT 1 FROM people WHERE id = ? OR slug = ?", (candidate, candidate)
            ).fetchone():
                return candidate

    def _free_slug(self, db: sqlite3.Connection, name: str, person_id: str, exclude: str | None) -> str:
        slug = slugify(name) or person_id
        if is_reserved_slug(slug):
            raise PersonError(f"name {name!r}: {slug!r} is reserved; choose another name")
        owner = db.execute(
            "SELECT name FROM people WHERE slug = ? AND id IS NOT ?", (slug, exclude)
        ).fetchone()
        if owner is not None:
            raise PersonError(
                f"name {name!r} collides with {owner[0]!r} (both become {slug!r} in topics): choose another"
            )
        return slug


def _vector(values: npt.ArrayLike) -> npt.NDArray[np.float32]:
    vector = np.ascontiguousarray(values, np.float32).reshape(-1)
    if vector.size == 0 or not np.isfinite(vector).all():
        raise ValueError("an embedding must be a non-empty vector of finite numbers")
    return vector
