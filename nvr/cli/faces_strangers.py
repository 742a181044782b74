"""`nvr faces` actions for the faces the daemon saw but did not know: stranger groups and event crops.

  nvr faces unknown [--out DIR] [--json]   stranger groups (count, first/last seen, cameras); crops to DIR
  nvr faces name unknown_<n> NAME          the group's crops become enrolment samples of NAME (new or not)
  nvr faces merge unknown_<a> unknown_<b>  one unknown person seen as two groups: a joins b
  nvr faces remove unknown_<n>             forget a group (its crops and embeddings are deleted)
  nvr faces add NAME --event EVENT_ID      enrol the best face of an event (the daemon keeps its crop)

Kept apart from nvr/cli/faces.py (the library's own actions), which hands these over.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from nvr.errors import InputFileError
from nvr.recognition.crops import crop_path
from nvr.recognition.library import FaceLibrary, LibraryError
from nvr.recognition.strangers import StrangerGroup, StrangerStore, parse_group_name


def register(actions: Any, common: Any) -> None:
    """Add the stranger actions to `nvr faces`; `common` adds the shared options (--config, --library)."""
    unknown = actions.add_parser("unknown", help="stranger groups the daemon saw (unknown_<n>)")
    unknown.add_argument("--out", type=Path, metavar="DIR", help="write each group's crops into DIR/<group>/")
    unknown.add_argument("--json", action="store_true", help="print one JSON object")
    unknown.set_defaults(handler=run_unknown)

    name = actions.add_parser("name", help="enrol a stranger group as a person (new or existing)")
    name.add_argument("group", metavar="unknown_N")
    name.add_argument("name", metavar="NAME")
    name.set_defaults(handler=run_name)

    merge = actions.add_parser("merge", help="merge one stranger group into another")
    merge.add_argument("source", metavar="unknown_A")
    merge.add_argument("target", metavar="unknown_B")
    merge.set_defaults(handler=run_merge)

    for sub in (unknown, name, merge):
        common(sub)


def is_group(name: str) -> bool:
    return parse_group_name(name) is not None


def library_path(args: argparse.Namespace) -> Path:
    """--library, else the configuration's recognition.library, else <state dir>/faces.db."""
    from nvr.cli.recognition_setup import library_from

    return library_from(args)


def _state_dir(args: argparse.Namespace) -> Path:
    """The daemon's state folder (where it keeps event crops): from --config, else the default one."""
    from nvr.config import NvrConfig, load_config
    from nvr.daemon.events import state_dir

    config = getattr(args, "config", None)
    return state_dir(load_config(config) if config is not None else NvrConfig())


def _open(args: argparse.Namespace) -> tuple[FaceLibrary, StrangerStore]:
    path = library_path(args)
    library = FaceLibrary(path, create=False)
    try:
        return library, StrangerStore(path)
    except LibraryError:
        library.close()
        raise


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _describe(group: StrangerGroup) -> dict[str, Any]:
    return {
        "group": group.name,
        "sightings": group.sightings,
        "crops": group.faces,
        "first_seen": group.first_seen,
        "last_seen": group.last_seen,
        "cameras": list(group.cameras),
    }


def run_unknown(args: argparse.Namespace) -> int:
    library, strangers = _open(args)
    with library, strangers:
        groups = strangers.groups()
        written = 0
        if args.out is not None:
            for group in groups:
                folder = Path(args.out) / group.name
                folder.mkdir(parents=True, exist_ok=True)
                for face in strangers.faces(group):
                    (folder / f"{face.id}.jpg").write_bytes(strangers.face_crop(face.id))
                    written += 1
        if args.json:
            print(json.dumps({"library": str(library.path), "groups": [_describe(g) for g in groups]}))
            return 0
        print(f"{library.path}: {len(groups)} stranger group(s)")
        for group in groups:
            cameras = ", ".join(group.cameras)
            print(
                f"  {group.name}: seen {group.sightings} time(s), first {_when(group.first_seen)}, "
                f"last {_when(group.last_seen)}, cameras {cameras}; {group.faces} crop(s)"
            )
        if args.out is not None:
            print(f"wrote {written} crop(s) into {args.out}/<group>/")
        if groups:
            print("name one: `nvr faces name unknown_<n> NAME`; forget one: `nvr faces remove unknown_<n>`")
    return 0


def run_name(args: argparse.Namespace) -> int:
    library, strangers = _open(args)
    with library, strangers:
        group = strangers.require_group(args.group)
        person, added = strangers.name(library, group, args.name)
        print(f"{group.name} is now {person.name} ({person.slug}): {added} sample(s) enrolled")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    library, strangers = _open(args)
    with library, strangers:
        merged = strangers.merge(args.source, args.target)
        seen = f"seen {merged.sightings} time(s), {merged.faces} crop(s)"
        print(f"{args.source} merged into {merged.name}: {seen}")
    return 0


def run_remove_group(args: argparse.Namespace) -> int:
    library, strangers = _open(args)
    with library, strangers:
        group = strangers.require_group(args.name)
        strangers.remove(group)
        print(f"forgot {group.name} ({group.faces} crop(s), seen {group.sightings} time(s))")
    return 0


def run_add_event(args: argparse.Namespace) -> int:
    """`nvr faces add NAME --event EVENT_ID`: the event's kept aligned crop, embedded and enrolled."""
    from nvr.cli.recognition_setup import open_embedder_for, settings_from
    from nvr.recognition.enrolment import decode_crop, encode_crop

    path = crop_path(_state_dir(args), args.event)
    if path is None:
        raise InputFileError(f"{args.event!r} is not an event id (like 1765100000.123456-abc123)")
    if not path.is_file():
        raise InputFileError(
            f"{path}: no kept crop for event {args.event} (crops are kept recognition.keep_crops_days)"
        )
    aligned = decode_crop(path.read_bytes())
    settings = settings_from(args)
    with open_embedder_for(settings) as embedder, FaceLibrary(settings.library) as library:
        vector = embedder.embed(aligned[None])[0]
        person, _ = library.enrol(
            args.name, [(encode_crop(aligned), {embedder.model_id: vector}, f"event {args.event}")]
        )
    print(f"enrolled the face of event {args.event} as {person.name} ({person.slug})")
    return 0
