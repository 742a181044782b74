"""`nvr models pull | list | verify`: fetch catalogue models, see what is here, check a HEF against ONNX.

Registered into `nvr models` by `nvr/cli/models.py`'s action list.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nvr.assets import ASSETS_ENV, MODELS_ENV, assets_dir, models_dir
from nvr.errors import ExitCode, InputFileError, ModelError
from nvr.models.catalogue import CATALOGUE_PATH, CatalogueEntry, cpu_model_for, load_catalogue
from nvr.progress import Progress

CPU = "cpu"


def register_pull(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "pull",
        help="fetch a catalogue model into the model store (HEF for your chip, or ONNX for the CPU)",
        description=f"Put a model into the model store (${MODELS_ENV}; default $STATE_DIRECTORY/models "
        "under systemd, else ~/.local/share/nvr/models): copied from the local mirror "
        f"(${ASSETS_ENV}) when it has the file, else downloaded from its official URL with resume; "
        "a published checksum is verified. NAME is a catalogue id (see `nvr models list`) or a family "
        "such as scrfd_2.5g, which picks the HEF for the Hailo chip found here (or --chip), else the "
        "CPU model.",
    )
    parser.add_argument("name", metavar="NAME", help="catalogue id or model family")
    parser.add_argument("--chip", help="hailo8, hailo8l, hailo10h, or cpu (default: the chip found here)")
    parser.add_argument("--force", action="store_true", help="fetch again even if the model is in the store")
    _catalogue_option(parser)
    parser.set_defaults(handler=run_pull)


def register_list(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "list", help="show the model catalogue, what is in the model store and what the local mirror has"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per model")
    _catalogue_option(parser)
    parser.set_defaults(handler=run_list)


def register_verify(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "verify",
        help="compare a HEF on the Hailo with its float ONNX model, image by image",
        description="Run the same images through the Hailo backend and the float ONNX model and report, "
        "per image and overall, matched faces, box IoU, landmark error in pixels, missed and extra faces.",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders")
    parser.add_argument("--hef", required=True, help="the .hef to check: a file or a catalogue name")
    parser.add_argument(
        "--onnx", help="float reference, a file or a catalogue name (default: the CPU model of the family)"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="score threshold (default 0.5)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(handler=run_verify)


def _catalogue_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalogue", type=Path, default=CATALOGUE_PATH, help="catalogue file (default: the built-in one)"
    )


def resolve(name: str, chip: str | None, entries: list[CatalogueEntry]) -> CatalogueEntry:
    """A catalogue id as is; a family with the given (or detected) chip, or its CPU model."""
    for entry in entries:
        if entry.id == name:
            return entry
    families = sorted({e.family for e in entries})
    if name not in families:
        raise ModelError(
            f"unknown model {name!r}: choose an id from `nvr models list` or a family: {', '.join(families)}"
        )
    wanted = (chip or detect_chip() or CPU).lower()
    if wanted == CPU:
        found = cpu_model_for(name, entries)
    else:
        found = next((e for e in entries if e.family == name and e.chip == wanted), None)
    if found is None:
        offered = ", ".join(e.id for e in entries if e.family == name)
        raise ModelError(f"the catalogue has no {name} model for {wanted}: it offers {offered}")
    return found


def detect_chip() -> str | None:
    """The catalogue chip key of the Hailo device here, or None without HailoRT or a device."""
    try:
        from nvr.backends.hailo_diagnostics import DEVICE_ARCHS, device_arch_of, import_hailort

        hailo = import_hailort()
        vdevice = hailo.VDevice()
    except Exception:  # no HailoRT, no device, or a busy one: fall back to the CPU model
        return None
    try:
        arch = device_arch_of(hailo, vdevice)
    finally:
        vdevice.release()
    return DEVICE_ARCHS[arch][1] if arch in DEVICE_ARCHS else None


def run_pull(args: argparse.Namespace) -> int:
    from nvr.models.store import pull

    entry = resolve(args.name, args.chip, load_catalogue(args.catalogue))
    result = pull(entry, force=args.force)
    if result.source == "mirror":
        print(f"{entry.id}: copied from the local mirror {entry.mirror_path} to {result.path}")
    elif result.source == "download":
        print(f"{entry.id}: downloaded to {result.path}")
    else:
        print(f"{entry.id}: already present at {result.path}")
    if result.checksum_verified:
        print(f"sha256 {result.sha256} (matches the catalogue)")
    else:
        print(f"sha256 {result.sha256} (no published checksum to compare with)")
    return int(ExitCode.OK)


def run_list(args: argparse.Namespace) -> int:
    from nvr.models.store import local_state

    states = [local_state(entry) for entry in load_catalogue(args.catalogue)]
    if args.json:
        for s in states:
            record = {
                "id": s.entry.id, "family": s.entry.family, "kind": s.entry.kind, "chip": s.entry.chip,
                "url": s.entry.url, "path": str(s.entry.local_path), "present": s.present, "size": s.size,
                "partial_bytes": s.partial, "sha256_published": s.entry.sha256 is not None,
                "mirror_path": str(s.entry.mirror_path), "mirrored": s.mirrored,
            }  # fmt: skip
            print(json.dumps(record))
        return int(ExitCode.OK)
    print(f"model store: {models_dir()} (set {MODELS_ENV} to use another folder)")
    print(f"local mirror: {assets_dir()} (set {ASSETS_ENV}; a model it has is copied, not downloaded)")
    width = max(len(s.entry.id) for s in states) if states else 2
    print(f"{'ID':<{width}}  {'KIND':<4}  {'CHIP':<8}  {'MIRROR':<6}  STORE")
    for s in states:
        if s.present:
            local = f"present, {(s.size or 0) / 1e6:.1f} MB  {s.entry.file_name}"
        elif s.partial:
            local = f"partial download, {s.partial / 1e6:.1f} MB (pull again to resume)"
        else:
            local = "-"
        mirrored = "yes" if s.mirrored else "-"
        print(f"{s.entry.id:<{width}}  {s.entry.kind:<4}  {s.entry.chip or '-':<8}  {mirrored:<6}  {local}")
    return int(ExitCode.OK)


def run_verify(args: argparse.Namespace) -> int:
    from nvr.contracts.imaging import load_rgb
    from nvr.detector import open_detector
    from nvr.models.resolve import cpu_counterpart, resolve_model
    from nvr.models.verify import image_files, report_json, report_text, verify

    if not 0.0 <= args.threshold <= 1.0:
        raise ModelError(f"--threshold must be between 0 and 1, got {args.threshold}")
    hef = resolve_model(args.hef, backend="hailo")
    if args.onnx is not None:
        onnx = resolve_model(args.onnx, backend="onnx")
    else:
        onnx = cpu_counterpart(
            hef, "compare with", lambda missing: ModelError(f"{hef.path}: {missing}; or pass --onnx")
        )
    files = image_files(args.images)
    if not files:
        raise InputFileError(f"no images in {', '.join(map(str, args.images))}")
    progress = Progress("verifying", len(files), "images")

    def images() -> Any:
        for path in files:
            yield str(path), load_rgb(path)
            progress.advance(note=path.name)

    with (
        open_detector(onnx.pinned(), score_threshold=args.threshold) as reference,
        open_detector(hef.pinned(), score_threshold=args.threshold) as hailo,
    ):
        report = verify(images(), reference, hailo)
    progress.close()
    if args.json:
        print(json.dumps(report_json(report, hef.path, onnx.path)))
    else:
        print(report_text(report, hef.path, onnx.path))
    return int(ExitCode.OK if report.consistent else ExitCode.MODEL)
