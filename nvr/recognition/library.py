"""The face library: people, their enrolment samples and the samples' embeddings, in ONE SQLite file.

Several processes use it at once (the daemon reading, `nvr faces` and the web UI writing): every change is
one transaction and `version()` is a counter bumped by every change, cheap to poll for "has anything
changed?" (the file itself, WAL mode and schema migrations: `nvr.recognition.schema`).

Each sample keeps its aligned 112x112 face crop (JPEG), so switching embedding models (CPU <-> Hailo, a new
version) re-embeds from the crops; embeddings are stored per model id (`nvr.families.arcface.model_id_for`,
from the model file's hash) and embeddings of different models are never compared.

People have a stable id, a display name and a unique, topic-safe slug (`nvr.recognition.names`).
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

# Re-exported: importers take the library's whole vocabulary from this module.
from nvr.recognition.names import (
    MAX_NAME_LENGTH,
    MAX_SLUG_LENGTH,
    RESERVED_SLUGS,
    PersonError,
    check_name,
    is_reserved_slug,
    name_key,
    slugify,
)
from nvr.recognition.schema import SCHEMA_VERSION, LibraryError, LibraryFile

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_SLUG_LENGTH",
    "RESERVED_SLUGS",
    "SCHEMA_VERSION",
    "FaceLibrary",
    "FloatMatrix",
    "LibraryError",
    "ModelInfo",
    "Person",
    "PersonError",
    "Sample",
    "check_name",
    "is_reserved_slug",
    "slugify",
]


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


class FaceLibrary(LibraryFile):
    """One face library file. Thread-safe (one connection behind a lock); use as a context manager or
    `close()` it. `create=False` refuses a file that does not exist instead of making an empty library."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        super().__init__(path, create=create)

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
            for column, value in (("name_key", name_key(" ".join(key.split()))), ("id", key), ("slug", key)):
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
                (name_key(check_name(name)),),
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
        key = name_key(name)
        with self._change() as db:
            if db.execute("SELECT 1 FROM people WHERE name_key = ?", (key,)).fetchone():
                raise PersonError(f"{name!r} is already in {self.path}")
            return self._insert_person(db, name, key)

    def check_new_name(self, name: str) -> None:
        """PersonError now if `name` could not be enrolled as a new person (before any slow work)."""
        name = check_name(name)
        with self._locked() as db:
            if not db.execute("SELECT 1 FROM people WHERE name_key = ?", (name_key(name),)).fetchone():
                self._free_slug(db, name, "p00000000", exclude=None)

    def rename_person(self, person: Person | str, new_name: str) -> Person:
        """Rename (the slug follows the name; the id stays)."""
        new_name = check_name(new_name)
        key = name_key(new_name)
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
            return self._insert_sample(db, person_id, crop_jpeg, vectors, source)

    def enrol(
        self, name: str, samples: Sequence[tuple[bytes, Mapping[str, npt.ArrayLike], str]]
    ) -> tuple[Person, list[Sample]]:
        """Add samples (crop JPEG, embeddings per model id, source) to the person called `name`, creating
        them if needed: all in ONE transaction, so a failure leaves neither the person nor any sample."""
        name = check_name(name)
        key = name_key(name)
        prepared = [
            (crop, {m: _vector(v) for m, v in vectors.items()}, src) for crop, vectors, src in samples
        ]
        with self._change() as db:
            row = db.execute(
                "SELECT id, name, slug, created FROM people WHERE name_key = ?", (key,)
            ).fetchone()
            person = Person(*row) if row is not None else self._insert_person(db, name, key)
            added = [
                self._insert_sample(db, person.id, crop, vectors, src) for crop, vectors, src in prepared
            ]
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

    def _insert_person(self, db: sqlite3.Connection, name: str, key: str) -> Person:
        """A new person called `name` (checked; `key` its name_key), inside the caller's transaction."""
        person_id = self._new_person_id(db)
        person = Person(person_id, name, self._free_slug(db, name, person_id, exclude=None), time.time())
        db.execute(
            "INSERT INTO people (id, name, name_key, slug, created) VALUES (?, ?, ?, ?, ?)",
            (person.id, person.name, key, person.slug, person.created),
        )
        return person

    def _insert_sample(
        self,
        db: sqlite3.Connection,
        person_id: str,
        crop_jpeg: bytes,
        vectors: Mapping[str, npt.NDArray[np.float32]],
        source: str,
    ) -> Sample:
        """One sample with its embeddings, inside the caller's transaction."""
        for model_id, vector in vectors.items():
            self._check_dim(db, model_id, vector)
        created = time.time()
        cursor = db.execute(
            "INSERT INTO samples (person_id, created, source, crop) VALUES (?, ?, ?, ?)",
            (person_id, created, source, sqlite3.Binary(crop_jpeg)),
        )
        sample_id = int(cursor.lastrowid or 0)
        db.executemany(
            "INSERT INTO embeddings (sample_id, model_id, dim, vector) VALUES (?, ?, ?, ?)",
            [(sample_id, m, v.size, v.tobytes()) for m, v in vectors.items()],
        )
        return Sample(sample_id, person_id, created, source)

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
