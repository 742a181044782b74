"""Stranger groups: unknown faces the daemon saw, clustered so the same unknown face gets the same group.

A track decided unknown (see `track_identity`) is recorded with its evidence embedding and its best aligned
crop. It joins the group whose nearest face is the most similar, when that similarity reaches the model's
match threshold; otherwise it starts a new group. Groups are named `unknown_<n>` (`n` is never reused) and
kept in the face library's file, in tables of their own (`stranger_groups`, `stranger_faces`) beside the
library's: one file to back up, and naming a group (`nvr faces name unknown_3 Alice`) turns its crops into
enrolment samples of that person with the embeddings already computed. Every change bumps the library's
change counter, so the daemon and the web UI notice it like any library change.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nvr.contracts.arrays import FloatArray
from nvr.recognition.library import FaceLibrary, LibraryError, Person, PersonError
from nvr.recognition.schema import LibraryFile, transaction

GROUP_PREFIX = "unknown_"
MAX_FACES_PER_GROUP = 20  # crops kept per group (the oldest go first); sightings are still counted
_GROUP_NAME = re.compile(r"unknown_([1-9][0-9]{0,17})")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stranger_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    sightings INTEGER NOT NULL,
    cameras TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stranger_faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL REFERENCES stranger_groups(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    time REAL NOT NULL,
    crop BLOB NOT NULL,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS stranger_faces_group ON stranger_faces(group_id);
"""


@dataclass(frozen=True, slots=True)
class StrangerGroup:
    id: int
    first_seen: float
    last_seen: float
    sightings: int  # tracks recorded into the group
    cameras: tuple[str, ...]
    faces: int  # crops kept

    @property
    def name(self) -> str:
        return f"{GROUP_PREFIX}{self.id}"


@dataclass(frozen=True, slots=True)
class StrangerFace:
    id: int
    group_id: int
    event_id: str
    camera: str
    time: float
    model_id: str


def parse_group_name(name: str) -> int | None:
    """`unknown_<n>` -> n; None for anything else."""
    match = _GROUP_NAME.fullmatch(name.strip())
    return int(match.group(1)) if match else None


class StrangerStore(LibraryFile):
    """The stranger tables of one face library file. Thread-safe (one connection behind a lock)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 10.0) -> None:
        """`busy_timeout`: how long a write waits for another process's write (the daemon waits little: it
        records strangers on the frame path and publishes the event without a group rather than stall)."""
        # The library's own opening: a missing, foreign, damaged or newer file is refused the same way.
        super().__init__(path, create=False)
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            with transaction(self._db) as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LibraryError(f"{self.path}: cannot keep stranger groups in this file ({exc})") from None

    # --- reading -----------------------------------------------------------------------------------------

    def groups(self) -> list[StrangerGroup]:
        with self._locked() as db:
            rows = db.execute(
                "SELECT g.id, g.first_seen, g.last_seen, g.sightings, g.cameras, "
                "(SELECT COUNT(*) FROM stranger_faces f WHERE f.group_id = g.id) "
                "FROM stranger_groups g ORDER BY g.id"
            ).fetchall()
        return [_group(row) for row in rows]

    def group(self, name: str | int) -> StrangerGroup | None:
        group_id = name if isinstance(name, int) else parse_group_name(name)
        if group_id is None:
            return None
        return next((g for g in self.groups() if g.id == group_id), None)

    def require_group(self, name: str) -> StrangerGroup:
        found = self.group(name)
        if found is None:
            raise PersonError(f"no stranger group {name!r} in {self.path} (`nvr faces unknown` lists them)")
        return found

    def faces(self, group: StrangerGroup | int) -> list[StrangerFace]:
        group_id = group.id if isinstance(group, StrangerGroup) else group
        with self._locked() as db:
            rows = db.execute(
                "SELECT id, group_id, event_id, camera, time, model_id FROM stranger_faces "
                "WHERE group_id = ? ORDER BY time",
                (group_id,),
            ).fetchall()
        return [StrangerFace(*row) for row in rows]

    def face_crop(self, face_id: int) -> bytes:
        with self._locked() as db:
            row = db.execute("SELECT crop FROM stranger_faces WHERE id = ?", (face_id,)).fetchone()
        if row is None:
            raise PersonError(f"no stranger face {face_id} in {self.path}")
        return bytes(row[0])

    @staticmethod
    def _vectors(db: sqlite3.Connection, model_id: str) -> tuple[FloatArray, list[int]]:
        # A few hundred rows at most (MAX_FACES_PER_GROUP per group), read once per stranger decision.
        rows = db.execute(
            "SELECT group_id, vector FROM stranger_faces WHERE model_id = ?", (model_id,)
        ).fetchall()
        if not rows:
            return np.zeros((0, 0), np.float32), []
        return np.stack([np.frombuffer(blob, np.float32) for _, blob in rows]), [int(row[0]) for row in rows]

    # --- changing ----------------------------------------------------------------------------------------

    def record(
        self,
        embedding: FloatArray,
        model_id: str,
        crop_jpeg: bytes,
        *,
        camera: str,
        event_id: str,
        time: float,
        join_threshold: float,
    ) -> StrangerGroup:
        """Record an unknown face: it joins the group of its most similar earlier face, or starts one."""
        vector = np.ascontiguousarray(embedding, np.float32).reshape(-1)
        with self._change() as db:
            vectors, owners = self._vectors(db, model_id)
            group_id: int | None = None
            if len(owners) and vectors.shape[1] == vector.size:
                similarity = vectors @ vector
                best = int(np.argmax(similarity))
                if similarity[best] >= join_threshold:
                    group_id = int(owners[best])
            if group_id is None:
                cursor = db.execute(
                    "INSERT INTO stranger_groups (first_seen, last_seen, sightings, cameras) "
                    "VALUES (?, ?, 0, '')",
                    (time, time),
                )
                group_id = int(cursor.lastrowid or 0)
            row = db.execute("SELECT cameras FROM stranger_groups WHERE id = ?", (group_id,)).fetchone()
            cameras = sorted({*filter(None, str(row[0]).split(",")), camera})
            db.execute(
                "UPDATE stranger_groups SET sightings = sightings + 1, cameras = ?, "
                "first_seen = MIN(first_seen, ?), last_seen = MAX(last_seen, ?) WHERE id = ?",
                (",".join(cameras), time, time, group_id),
            )
            db.execute(
                "INSERT INTO stranger_faces (group_id, event_id, camera, time, crop, model_id, vector) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (group_id, event_id, camera, time, sqlite3.Binary(crop_jpeg), model_id, vector.tobytes()),
            )
            db.execute(
                "DELETE FROM stranger_faces WHERE group_id = ? AND id NOT IN (SELECT id FROM stranger_faces "
                "WHERE group_id = ? ORDER BY time DESC, id DESC LIMIT ?)",
                (group_id, group_id, MAX_FACES_PER_GROUP),
            )
            found = db.execute(
                "SELECT g.id, g.first_seen, g.last_seen, g.sightings, g.cameras, "
                "(SELECT COUNT(*) FROM stranger_faces f WHERE f.group_id = g.id) "
                "FROM stranger_groups g WHERE g.id = ?",
                (group_id,),
            ).fetchone()
        return _group(found)

    def remove(self, group: StrangerGroup | str) -> None:
        """Forget a group: its crops and embeddings are deleted."""
        target = self.require_group(group) if isinstance(group, str) else group
        with self._change() as db:
            db.execute("DELETE FROM stranger_groups WHERE id = ?", (target.id,))

    def merge(self, source: StrangerGroup | str, target: StrangerGroup | str) -> StrangerGroup:
        """Move `source`'s faces and counts into `target`, and forget `source`."""
        src = self.require_group(source) if isinstance(source, str) else source
        dst = self.require_group(target) if isinstance(target, str) else target
        if src.id == dst.id:
            raise PersonError(f"{src.name}: cannot merge a group into itself")
        cameras = ",".join(sorted({*src.cameras, *dst.cameras}))
        with self._change() as db:
            db.execute("UPDATE stranger_faces SET group_id = ? WHERE group_id = ?", (dst.id, src.id))
            db.execute(
                "UPDATE stranger_groups SET sightings = sightings + ?, cameras = ?, "
                "first_seen = MIN(first_seen, ?), last_seen = MAX(last_seen, ?) WHERE id = ?",
                (src.sightings, cameras, src.first_seen, src.last_seen, dst.id),
            )
            db.execute("DELETE FROM stranger_groups WHERE id = ?", (src.id,))
        merged = self.group(dst.id)
        assert merged is not None
        return merged

    def name(self, library: FaceLibrary, group: StrangerGroup | str, name: str) -> tuple[Person, int]:
        """Enrol the group's crops as samples of `name` (a new person, or an existing one), with their
        embeddings, then forget the group. Returns the person and how many samples were added."""
        target = self.require_group(group) if isinstance(group, str) else group
        with self._locked() as db:
            rows = db.execute(
                "SELECT id, event_id, crop, model_id, vector FROM stranger_faces "
                "WHERE group_id = ? ORDER BY time",
                (target.id,),
            ).fetchall()
        if not rows:
            raise PersonError(f"{target.name} has no face crops left to enrol")
        samples = [
            (bytes(crop), {str(model): np.frombuffer(blob, np.float32)}, f"{target.name} {event}".strip())
            for _, event, crop, model, blob in rows
        ]
        person, _ = library.enrol(name, samples)  # one transaction: all samples or none
        # Only now: a failure above leaves the group as it was, to name again.
        self.remove(target)
        return person, len(rows)


def _group(row: tuple[object, ...]) -> StrangerGroup:
    group_id, first_seen, last_seen, sightings, cameras, faces = row
    return StrangerGroup(
        int(group_id),  # type: ignore[call-overload]
        float(first_seen),  # type: ignore[arg-type]
        float(last_seen),  # type: ignore[arg-type]
        int(sightings),  # type: ignore[call-overload]
        tuple(filter(None, str(cameras).split(","))),
        int(faces),  # type: ignore[call-overload]
    )


@dataclass(frozen=True, slots=True)
class StrangerEvent:
    """A track decided unknown, once per track while still in view (`<prefix>/<camera>/face/stranger`)."""

    event_id: str
    camera: str
    time: float  # capture time of the frame the decision was made on
    group: str | None  # unknown_<n>, or None when the group could not be recorded
    snapshot: bool  # the event's snapshot was published on <prefix>/<camera>/face/snapshot

    def to_dict(self) -> dict[str, object]:
        return {
            "event_type": "stranger",
            "event_id": self.event_id,
            "camera": self.camera,
            "time": round(self.time, 6),
            "group": self.group,
            "snapshot": self.snapshot,
        }
