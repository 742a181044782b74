"""The one resolver: from what a user names to a model file, the backend to run it on, and its family.

A user names a model as a catalogue id (`scrfd_2.5g-onnx`), a catalogue model family (`scrfd_2.5g`: the
pulled HEF when the backend is hailo, or auto with HailoRT installed; else the CPU model), or a file path
(`.onnx`, `.tflite`, `.hef`, ...: the backend registry knows which backend runs which suffix). Catalogue
models are found in the model store only (never the local mirror): users pull first, and a missing one is
named with the `nvr models pull` command that fetches it.

The one fallback policy: with backend `auto`, a HEF that cannot run here (no HailoRT, no device, device
busy, wrong chip) runs as the catalogue's CPU model of the same family, from the store
(`open_with_fallback`). Every command (`run`, `detect`, `eval`, `bench`, `models verify`, `check-config`)
resolves through here, so each error is written once.
"""

from __future__ import annotations

import difflib
import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import structlog

from nvr.assets import MODELS_ENV, models_dir, systemd_state_directory
from nvr.backends import BACKEND_MODULES, backend_for_suffix, model_suffixes, plugin
from nvr.errors import ConfigError, DeviceError, InputFileError, ModelError, NvrError
from nvr.families import FAMILY_MODULES
from nvr.models.catalogue import CatalogueEntry, cpu_model_for, load_catalogue

if TYPE_CHECKING:
    from nvr.config import DetectorConfig

log = structlog.get_logger(__name__)
T = TypeVar("T")

HAILO = "hailo"  # the backend whose models may fall back to the CPU


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    path: Path
    backend: str  # the registry key it runs on
    family: str  # a detector family name, or "auto": recognised from the outputs when opened
    requested_backend: str  # "auto" lets a HEF fall back to the CPU; a key pins the backend
    catalogue_family: str | None = None  # e.g. "scrfd_2.5g", when it came from the catalogue

    @property
    def may_fall_back(self) -> bool:
        return self.requested_backend == "auto" and self.backend == HAILO

    def pinned(self) -> ResolvedModel:
        """The same model without the fallback: measured (or compared) on its own backend or not at all."""
        return replace(self, requested_backend=self.backend)


def resolve_model(
    name: str | Path, *, backend: str = "auto", family: str = "auto", base_dir: Path | None = None
) -> ResolvedModel:
    """Resolve a catalogue id, a catalogue family or a file path (relative to `base_dir`, default: cwd)."""
    if backend != "auto":
        plugin(backend)  # an unknown key is a one-line ModelError listing the known ones
    if family != "auto" and family not in FAMILY_MODULES:
        raise ModelError(f"unknown model family {family!r}: choose one of auto, {', '.join(FAMILY_MODULES)}")
    text = str(name)
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if isinstance(name, Path) or "/" in text or path.suffix.lower() in model_suffixes() or path.is_file():
        return _from_file(path, backend, family)
    return _from_catalogue(text, backend, family)


def resolve_configured(detector: DetectorConfig, config_dir: Path) -> ResolvedModel:
    """The `detector:` section's model; paths are relative to the config file's folder. Errors are
    configuration errors (exit 3) naming `detector.model`."""
    try:
        return resolve_model(
            detector.model, backend=detector.backend, family=detector.family, base_dir=config_dir
        )
    except NvrError as exc:
        raise ConfigError(f"detector.model: {exc.message}") from None


def _from_file(path: Path, backend: str, family: str) -> ResolvedModel:
    if not path.is_file():
        raise InputFileError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    owner = backend_for_suffix(suffix)
    if owner is None:
        expected = ", ".join(model_suffixes())
        raise ModelError(f"{path}: unsupported model file type {suffix or '(none)'!r}; expected {expected}")
    if backend not in ("auto", owner.key):
        raise ModelError(f"{path}: {suffix} models run on the {owner.key} backend, not {backend}")
    return ResolvedModel(path, owner.key, family, backend)


def _from_catalogue(name: str, backend: str, family: str) -> ResolvedModel:
    entries = load_catalogue()
    named = [e for e in entries if e.id == name] or [e for e in entries if e.family == name]
    if not named:
        families = sorted({e.family for e in entries})
        close = difflib.get_close_matches(name, [*families, *(e.id for e in entries)], n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ModelError(
            f"{name!r} is neither a model file nor a catalogue model ({hint}`nvr models list` shows them; "
            f"families: {', '.join(families)})"
        )
    if len(named) == 1 and named[0].id == name:  # an id names one file: like a path, in the store
        entry = named[0]
        if not entry.local_path.is_file():
            raise ModelError(
                f"{name!r} is not in the model store {models_dir()}: run `{pull_command(entry.id)}`"
            )
        found = _from_file(entry.local_path, backend, family)
        return replace(found, catalogue_family=entry.family)
    preferred = _backend_preference(backend)
    for key in preferred:
        for entry in named:
            if _backend_of(entry) == key and entry.local_path.is_file():
                return ResolvedModel(entry.local_path, key, family, backend, entry.family)
    if backend == "auto":
        ids = name  # `nvr models pull FAMILY` picks the build for the chip found here, else the CPU model
    else:
        wanted = [e for e in named if _backend_of(e) == preferred[0]] or named
        ids = " or ".join(e.id for e in wanted)
    raise ModelError(f"{name!r} is not in the model store {models_dir()}: run `{pull_command(ids)}`")


def _backend_preference(backend: str) -> list[str]:
    """Backends to look for, best first: the one asked for; with auto, the Hailo when HailoRT is installed,
    then the CPU backends in registry order."""
    if backend != "auto":
        return [backend]
    keys = [k for k in BACKEND_MODULES if k != HAILO]
    return [HAILO, *keys] if plugin(HAILO).available() else keys


def _backend_of(entry: CatalogueEntry) -> str | None:
    found = backend_for_suffix(Path(entry.file_name).suffix)
    return found.key if found is not None else None


def pull_command(ids: str) -> str:
    """The `nvr models pull` that fills the store this process reads: under systemd (or with NVR_MODELS
    set) a user's shell would pick another store, so the command names it."""
    as_service = systemd_state_directory() is not None
    if not os.environ.get(MODELS_ENV) and not as_service:
        return f"nvr models pull {ids}"
    command = f"{MODELS_ENV}={models_dir()} nvr models pull {ids}"
    return f"sudo -u {getpass.getuser()} {command}" if as_service else command


# -- the one fallback policy -----------------------------------------------------------------------------


def cpu_counterpart(model: ResolvedModel, purpose: str, missing: Callable[[str], NvrError]) -> ResolvedModel:
    """The catalogue's CPU model of `model`'s family, from the store. When there is none, raises
    `missing("no CPU model of <family> to <purpose> (nvr models pull <id>)")`."""
    variant = model.catalogue_family or _hef_family(model.path)
    entry = cpu_model_for(variant)
    if entry is None or not entry.local_path.is_file():
        pull = f" ({pull_command(entry.id)})" if entry is not None else ""
        raise missing(f"no CPU model of {variant} to {purpose}{pull}")
    cpu = _backend_of(entry) or "onnx"
    return ResolvedModel(entry.local_path, cpu, model.family, model.requested_backend, variant)


def open_with_fallback(model: ResolvedModel, open_model: Callable[[ResolvedModel], T]) -> T:
    """`open_model(model)`; with backend auto, a HEF that cannot be opened here runs on the CPU instead."""
    try:
        return open_model(model)
    except NvrError as exc:
        if not model.may_fall_back:
            raise
        reason = exc.message
    fallback = cpu_counterpart(model, "fall back on", lambda missing: DeviceError(f"{reason}; {missing}"))
    log.warning(
        "the Hailo cannot be used: running the CPU model instead",
        model=model.path.name, cpu_model=fallback.path.name, reason=reason,
    )  # fmt: skip
    return open_model(fallback)


def _hef_family(path: Path) -> str:
    from nvr.backends.hailo_diagnostics import model_family
    from nvr.hef import read_hef

    return model_family(read_hef(path))


def backend_choices() -> tuple[str, ...]:
    return ("auto", *BACKEND_MODULES)


def family_choices() -> tuple[str, ...]:
    from nvr.families import family_names

    return ("auto", *family_names("detector"))
