"""The face library file: people, slugs, samples, embeddings per model, versions, bad files, two processes."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nvr.errors import ExitCode
from nvr.recognition.library import FaceLibrary, LibraryError, PersonError, slugify


def test_people_slugs_and_ids(tmp_path: Path) -> None:
    with FaceLibrary(tmp_path / "faces.db") as library:
        obama = library.add_person("Barack  Obama")
        assert (obama.name, obama.slug) == ("Barack Obama", "barack_obama")
        accented = library.add_person("Zoë Saldaña")
        assert accented.slug == "zoe_saldana"
        no_ascii = library.add_person("李雷")
        assert no_ascii.slug == no_ascii.id and no_ascii.id[0].isalpha()
        assert library.person("barack_obama") == obama
        assert library.person("BARACK OBAMA") == obama
        assert library.person(no_ascii.id) == no_ascii
        assert library.person("nobody") is None
        assert [p.name for p in library.people()] == ["Barack Obama", "Zoë Saldaña", "李雷"]
        renamed = library.rename_person(obama, "Obama")
        assert (renamed.id, renamed.slug) == (obama.id, "obama")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("barack-obama", "collides with 'Barack Obama'"),
        ("barack obama", "already in"),
        ("Person", "reserved"),
        ("unknown 7", "reserved"),
        ("   ", "must not be empty"),
    ],
)
def test_refused_names(tmp_path: Path, name: str, fragment: str) -> None:
    with FaceLibrary(tmp_path / "faces.db") as library:
        library.add_person("Barack Obama")
        before = library.version()
        with pytest.raises(PersonError) as refused:
            library.add_person(name)
        assert fragment in str(refused.value) and "\n" not in str(refused.value)
        assert refused.value.exit_code == ExitCode.USAGE
        assert library.version() == before and len(library.people()) == 1


def test_slugify_is_topic_safe() -> None:
    assert slugify("Anne-Marie O'Neill / #1") == "anne_marie_o_neill_1"
    assert slugify("123") == ""  # no letter: the id is used instead
    assert slugify("Ελένη") == ""


def test_samples_embeddings_per_model(tmp_path: Path) -> None:
    with FaceLibrary(tmp_path / "faces.db") as library:
        alice, bob = library.add_person("Alice"), library.add_person("Bob")
        first = library.add_sample(
            alice, b"jpeg-a1", {"m512": np.full(512, 0.5), "m192": np.ones(192)}, "a1.jpg"
        )
        second = library.add_sample(bob, b"jpeg-b1", {"m512": np.full(512, -0.5)}, "b1.jpg")
        assert library.sample_crop(first.id) == b"jpeg-a1"
        matrix, owners = library.embedding_matrix("m512")
        assert matrix.shape == (2, 512) and matrix.dtype == np.float32
        assert sorted(owners) == sorted([alice.id, bob.id])
        assert [s.id for s in library.samples_missing("m192")] == [second.id]
        library.set_embedding(second.id, "m192", np.zeros(192) + 2)
        assert library.samples_missing("m192") == []
        with pytest.raises(LibraryError, match="192 values"):
            library.set_embedding(second.id, "m192", np.ones(10))
        assert {m.id: (m.dim, m.embedded) for m in library.models()} == {"m512": (512, 2), "m192": (192, 2)}
        library.remove_sample(first.id)
        assert library.samples(alice) == []
        library.remove_person(bob)
        assert library.embedding_matrix("m512")[0].shape[0] == 0


def test_version_moves_with_changes_from_another_process(tmp_path: Path) -> None:
    path = tmp_path / "faces.db"
    with FaceLibrary(path) as library:
        before = library.version()
        script = (
            "import sys; from nvr.recognition.library import FaceLibrary;"
            "FaceLibrary(sys.argv[1]).add_person('Carol')"
        )
        subprocess.run([sys.executable, "-c", script, str(path)], check=True)
        assert library.version() > before
        assert library.person("carol") is not None
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_bad_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(LibraryError) as bad:
        FaceLibrary(garbage)
    assert str(garbage) in str(bad.value) and bad.value.exit_code == ExitCode.INPUT
    assert garbage.read_bytes() == b"this is not sqlite" * 300  # untouched

    future = tmp_path / "future.db"
    FaceLibrary(future).close()
    with sqlite3.connect(future) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(LibraryError, match=r"schema version 99 .* newer nvr"):
        FaceLibrary(future)

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    with pytest.raises(LibraryError, match="not an nvr face library"):
        FaceLibrary(other)

    with pytest.raises(LibraryError, match="no such face library"):
        FaceLibrary(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_files_made_by_the_cli_are_the_daemons(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """`sudo nvr faces add ...` into the daemon's state folder: as root, the library (and SQLite's -wal and
    -shm beside it) belong to the folder's owner, who can read and change it; otherwise it is at least
    readable by the group."""
    if os.geteuid() != 0:
        path = tmp_path / "state" / "faces.db"
        FaceLibrary(path).close()
        assert path.stat().st_mode & 0o040
        return
    # Outside pytest's root-only temporary folder, so the daemon's user can reach it.
    state = Path(tempfile.mkdtemp(prefix="nvr-state-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(state, ignore_errors=True))
    path = state / "faces.db"
    daemon_user = 65534  # nobody
    os.chown(state, daemon_user, daemon_user)
    state.chmod(0o750)
    with FaceLibrary(path) as library:
        library.add_person("Ann")
        owners = {p.name: p.stat().st_uid for p in state.iterdir()}
    assert owners == {"faces.db": daemon_user, "faces.db-wal": daemon_user, "faces.db-shm": daemon_user}
    # The daemon's side: a child that becomes the daemon's user (the code is already imported, so only the
    # library's own permissions matter) opens, reads and changes the library.
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through its exit status)
        status = 1
        try:
            os.setgroups([])
            os.setgid(daemon_user)
            os.setuid(daemon_user)
            with FaceLibrary(path, create=False) as library:
                library.add_person("Bob")
                status = 0 if len(library.people()) == 2 else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_service_user_run_by_hand_sees_the_daemons_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sudo -u nvr nvr faces ...`: no $STATE_DIRECTORY, but the service user's home is the state folder."""
    from nvr.assets import systemd_state_directory

    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", "/var/lib/nvr")
    assert systemd_state_directory() == Path("/var/lib/nvr")
    monkeypatch.setenv("HOME", "/home/someone")
    assert systemd_state_directory() is None
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/nvr")
    assert systemd_state_directory() == Path("/var/lib/nvr")


def test_readers_see_whole_changes_only(tmp_path: Path) -> None:
    """Another process enrols five samples per transaction; a reader never sees a partial enrolment."""
    path = tmp_path / "faces.db"
    FaceLibrary(path).close()
    writer = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, numpy as np; from nvr.recognition.library import FaceLibrary\n"
            "with FaceLibrary(sys.argv[1]) as library:\n"
            "    for round in range(30):\n"
            "        library.enrol('Ann', [(b'jpeg', {'m': np.ones(8)}, f'{round}-{i}') for i in range(5)])\n"
        ), str(path)],
    )  # fmt: skip
    seen = set()
    with FaceLibrary(path) as library:
        while writer.poll() is None:
            matrix, _ = library.embedding_matrix("m")
            seen.add(len(matrix))
            person = library.person("ann")
            if person is not None:
                assert len(library.samples(person)) % 5 == 0
        assert writer.wait() == 0
        assert all(count % 5 == 0 for count in seen)
        assert len(library.embedding_matrix("m")[0]) == 150
