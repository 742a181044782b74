"""`nvr faces`: the face library from the command line: add, import, list, remove, rename, identify.

Enrolment takes the largest face of each image, aligns it from the image's own pixels and stores the
aligned crop with its embedding; an image that cannot be used (not an image, no face, a face too small to
trust) is refused with one line naming it and the others are still enrolled (exit code 4 then).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nvr.cli import faces_strangers
from nvr.cli.recognition_setup import (
    DETECT_THRESHOLD,
    Settings,
    add_common_options,
    library_from,
    open_embedder_for,
    settings_from,
)
from nvr.contracts.arrays import RgbImage
from nvr.contracts.faces import Detections
from nvr.detector import FaceDetector, open_detector
from nvr.errors import ExitCode, InputFileError, NvrError
from nvr.families.arcface import Embedder
from nvr.progress import Progress
from nvr.recognition.enrolment import (
    PhotoRefusedError,
    align,
    encode_crop,
    enrolment_face,
    load_matcher,
    sync_embeddings,
)
from nvr.recognition.library import FaceLibrary, PersonError
from nvr.recognition.matcher import Match, Matcher

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "faces",
        help="the face library: enrol people, identify faces",
        description="Manage the face library the daemon recognises people from; identify faces in images.",
    )
    actions = parser.add_subparsers(dest="faces_command", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="enrol a person from photos (the largest face of each)")
    add.add_argument("name", metavar="NAME")
    add.add_argument("images", nargs="*", type=Path, metavar="IMAGE")
    add.add_argument("--event", metavar="EVENT_ID", help="enrol the best face of a daemon event instead")
    add.set_defaults(handler=run_add)

    imp = actions.add_parser("import", help="enrol everyone from DIR/<person name>/<photos>")
    imp.add_argument("folder", type=Path, metavar="DIR")
    imp.set_defaults(handler=run_import)

    listing = actions.add_parser("list", help="people, their samples and the models they are embedded with")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(handler=run_list)

    remove = actions.add_parser("remove", help="remove a person, one of their samples, or a stranger group")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--sample", type=int, metavar="N", help="remove only sample N (ids: nvr faces list)")
    remove.set_defaults(handler=run_remove)

    rename = actions.add_parser("rename", help="rename a person (their slug follows)")
    rename.add_argument("old", metavar="OLD")
    rename.add_argument("new", metavar="NEW")
    rename.set_defaults(handler=run_rename)

    identify = actions.add_parser("identify", help="who is in these images")
    identify.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    identify.add_argument(
        "--json", action="store_true", help="one JSON object per image (nvr detect's + names)"
    )
    identify.add_argument("--draw", type=Path, metavar="OUT_DIR", help="write annotated images into OUT_DIR")
    identify.set_defaults(handler=run_identify)

    add_common_options(parser)
    for sub in (add, imp, listing, remove, rename, identify):
        add_common_options(sub, after_action=True)
    faces_strangers.register(actions, lambda sub: add_common_options(sub, after_action=True))


# --- enrolment ---------------------------------------------------------------------------------------------


class Enroller:
    """Opens the detector and the embedder once for any number of people (before the library is touched,
    so a model that cannot be used leaves no file behind)."""

    def __init__(self, settings: Settings) -> None:
        self.detector: FaceDetector = open_detector(settings.detector, score_threshold=DETECT_THRESHOLD)
        try:
            self.embedder: Embedder = open_embedder_for(settings)
        except BaseException:
            self.detector.close()
            raise
        self.exit_code = ExitCode.OK

    def refuse(self, error: NvrError) -> None:
        print(f"nvr: error: {error.message}", file=sys.stderr)
        if self.exit_code == ExitCode.OK:
            self.exit_code = error.exit_code

    def face_of(self, image_path: Path) -> RgbImage | None:
        """The aligned crop of the image's largest face, or None (refused, with the reason printed)."""
        try:
            return enrolment_face(self.detector, load_image(image_path))
        except PhotoRefusedError as exc:
            self.refuse(InputFileError(f"{image_path}: {exc}"))
            return None
        except NvrError as exc:
            self.refuse(exc)
            return None

    def enrol(
        self, library: FaceLibrary, name: str, images: Sequence[Path], progress: Progress | None = None
    ) -> int:
        """Enrol `name` from `images` into `library`; returns the number of samples added."""
        try:
            library.check_new_name(name)
        except PersonError as exc:
            self.refuse(exc)
            if progress is not None:
                progress.advance(len(images))
            return 0
        accepted: list[tuple[Path, RgbImage]] = []
        for image_path in images:
            aligned = self.face_of(image_path)
            if aligned is not None:
                accepted.append((image_path, aligned))
            if progress is not None:
                progress.advance(note=name)
        if not accepted:
            self.refuse(
                InputFileError(f"{name}: nothing enrolled (no usable face in {len(images)} image(s))")
            )
            return 0
        vectors = self.embedder.embed(np.stack([aligned for _, aligned in accepted]))
        samples = [
            (encode_crop(aligned), {self.embedder.model_id: vector}, str(path))
            for (path, aligned), vector in zip(accepted, vectors, strict=True)
        ]
        person, added = library.enrol(name, samples)
        total = len(library.samples(person))
        print(f"{person.name} ({person.slug}): {len(added)} sample(s) added, {total} in all")
        return len(added)

    def close(self) -> None:
        self.detector.close()
        self.embedder.close()

    def __enter__(self) -> Enroller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_image(path: Path) -> RgbImage:
    from nvr.contracts.imaging import load_rgb

    return load_rgb(path)


def run_add(args: argparse.Namespace) -> int:
    if args.event is not None:
        if args.images:
            raise PersonError("nvr faces add: give photos or --event EVENT_ID, not both")
        return faces_strangers.run_add_event(args)
    if not args.images:
        raise PersonError("nvr faces add: give at least one photo (or --event EVENT_ID)")
    settings = settings_from(args)
    with Enroller(settings) as enroller, FaceLibrary(settings.library) as library:
        enroller.enrol(library, args.name, args.images)
        return int(enroller.exit_code)


def run_import(args: argparse.Namespace) -> int:
    folder: Path = args.folder
    if not folder.is_dir():
        raise InputFileError(f"{folder}: not a folder (expected one sub-folder of photos per person)")
    people = [
        (sub.name, sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and not sub.name.startswith(".")
    ]
    people = [(name, images) for name, images in people if images]
    if not people:
        raise InputFileError(
            f"{folder}: no person folders with photos (expected {folder}/<name>/<photo>.jpg)"
        )
    settings = settings_from(args)
    with Enroller(settings) as enroller, FaceLibrary(settings.library) as library:
        progress = Progress("import", sum(len(images) for _, images in people), "images")
        try:
            added = sum(enroller.enrol(library, name, images, progress) for name, images in people)
        finally:
            progress.close()
        print(f"imported {added} sample(s) of {len(people)} people into {library.path}")
        return int(enroller.exit_code)


# --- the library -------------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    with FaceLibrary(library_from(args), create=False) as library:
        people = []
        for person in library.people():
            samples = library.samples(person)
            models = sorted({m for sample in samples for m in library.sample_models(sample.id)})
            people.append((person, samples, models))
        if args.json:
            record = {
                "library": str(library.path),
                "people": [
                    {
                        "id": person.id,
                        "name": person.name,
                        "slug": person.slug,
                        "samples": [{"id": s.id, "source": s.source, "created": s.created} for s in samples],
                        "models": models,
                    }
                    for person, samples, models in people
                ],
                "models": [{"id": m.id, "dim": m.dim, "samples": m.embedded} for m in library.models()],
            }
            print(json.dumps(record))
            return 0
        print(f"{library.path}: {len(people)} people")
        for person, samples, models in people:
            ids = ", ".join(str(s.id) for s in samples)
            used = ", ".join(models)
            print(f"  {person.name} ({person.slug}): {len(samples)} sample(s) [{ids}]; models: {used}")
        for model in library.models():
            print(f"model {model.id}: {model.dim} values, {model.embedded} sample(s) embedded")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    if faces_strangers.is_group(args.name) and args.sample is None:
        return faces_strangers.run_remove_group(args)
    with FaceLibrary(library_from(args), create=False) as library:
        person = library.require_person(args.name)
        if args.sample is None:
            count = len(library.samples(person))
            library.remove_person(person)
            print(f"removed {person.name} ({count} sample(s))")
            return 0
        sample = library.sample(args.sample)
        if sample is None or sample.person_id != person.id:
            raise PersonError(f"{person.name} has no sample {args.sample} (`nvr faces list` shows their ids)")
        library.remove_sample(sample.id)
        print(f"removed sample {sample.id} of {person.name}")
    return 0


def run_rename(args: argparse.Namespace) -> int:
    with FaceLibrary(library_from(args), create=False) as library:
        person = library.require_person(args.old)
        renamed = library.rename_person(person, args.new)
        print(f"renamed {person.name} ({person.slug}) to {renamed.name} ({renamed.slug})")
    return 0


# --- identification ----------------------------------------------------------------------------------------


def identify_faces(
    image: RgbImage, detections: Detections, embedder: Embedder, matcher: Matcher
) -> list[Match | None]:
    """A match per detected face (None where its landmarks cannot be aligned); faces embedded in one batch."""
    aligned = [align(image, face, detections.landmark_names) for face in detections]
    usable = [crop for crop in aligned if crop is not None]
    matches = iter(matcher.match(embedder.embed(np.stack(usable)))) if usable else iter(())
    return [next(matches) if crop is not None else None for crop in aligned]


def run_identify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    exit_code = ExitCode.OK
    with FaceLibrary(settings.library, create=False) as library:
        detector = open_detector(settings.detector, score_threshold=DETECT_THRESHOLD)
        embedder = open_embedder_for(settings)
        try:
            if sync_embeddings(library, embedder):
                print(f"nvr: embedded the library's crops with {embedder.model_id}", file=sys.stderr)
            matcher = load_matcher(
                library, embedder.model_id, threshold=settings.threshold, margin=settings.margin
            )
            for image_path in args.images:
                try:
                    image = load_image(image_path)
                except NvrError as exc:
                    print(f"nvr: error: {exc.message}", file=sys.stderr)
                    exit_code = exc.exit_code
                    continue
                detections = detector.detect(image)
                matches = identify_faces(image, detections, embedder, matcher)
                _report(args, image_path, image, detections, matches, embedder.model_id)
        finally:
            detector.close()
            embedder.close()
    return int(exit_code)


def _report(  # noqa: PLR0917 (one image's whole result)
    args: argparse.Namespace,
    image_path: Path,
    image: RgbImage,
    detections: Detections,
    matches: list[Match | None],
    model_id: str,
) -> None:
    height, width = image.shape[:2]
    unknown = {"name": None, "score": 0.0, "model": model_id}
    if args.json:
        faces = []
        for face, match in zip(detections, matches, strict=True):
            record = face.to_json()
            record["identity"] = match.identity.to_dict() if match is not None else unknown
            record["candidates"] = [c.to_dict() for c in match.candidates] if match is not None else []
            faces.append(record)
        out = {
            "image": str(image_path),
            "width": width,
            "height": height,
            "landmark_names": list(detections.landmark_names),
            "faces": faces,
        }
        print(json.dumps(out), flush=True)
    else:
        print(f"{image_path}: {len(detections)} face(s) in {width}x{height}")
        for face, match in zip(detections, matches, strict=True):
            x1, y1, x2, y2 = face.box
            if match is None:
                who = "(cannot align)"
            elif match.identity.name is None:
                best = (
                    f", closest {match.candidates[0].name} {match.candidates[0].score:.3f}"
                    if match.candidates
                    else ""
                )
                who = f"unknown (score {match.identity.score:.3f}{best})"
            else:
                who = f"{match.identity.name} (score {match.identity.score:.3f})"
            print(f"  {who}  box [{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")
    if args.draw is not None:
        from nvr.cli.draw import save_identified

        labels = [
            (m.identity.name or "unknown", m.identity.score) if m is not None else ("?", 0.0) for m in matches
        ]
        drawn = save_identified(image, detections, labels, args.draw, image_path)
        if not args.json:
            print(f"  drawn to {drawn}")
