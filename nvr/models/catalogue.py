"""The model catalogue (`models/catalogue.yaml`): which model files nvr can fetch, from where, kept where.

A model lives in the model store under its file name (`models_dir()/det_2.5g.onnx`); the local mirror
(the asset folder) holds it at the catalogue's `path` (`assets_dir()/models/scrfd/det_2.5g.onnx`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from nvr.assets import assets_dir, models_dir
from nvr.errors import ConfigError


def _catalogue_path() -> Path:
    """The checkout's `models/catalogue.yaml`; an installed nvr (scripts/install.sh: `pip install`, not
    editable) has its copy in `<prefix>/share/nvr/` (pyproject's data-files)."""
    checkout = Path(__file__).resolve().parents[2] / "models" / "catalogue.yaml"
    return checkout if checkout.is_file() else Path(sys.prefix) / "share" / "nvr" / "catalogue.yaml"


CATALOGUE_PATH = _catalogue_path()
KINDS = ("hef", "onnx")
_NUMBERS = ("input_mean", "input_std", "match_threshold")


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    id: str
    family: str  # e.g. "scrfd_2.5g"
    kind: str  # "hef" or "onnx"
    url: str
    path: str  # where the local mirror (the asset folder) has it; its file name is its name in the store
    chip: str | None = None  # HEFs only
    member: str | None = None  # file inside an archive download
    sha256: str | None = None  # only a published value
    # Face embedders only: the input normalisation (x - mean) / std of float models (a HEF has its own
    # inside), and the default match threshold (cosine), which belongs to a model: score scales differ.
    input_mean: float | None = None
    input_std: float | None = None
    match_threshold: float | None = None

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def local_path(self) -> Path:
        """Where the model is (or will be, once pulled) in the model store."""
        return models_dir() / self.file_name

    @property
    def mirror_path(self) -> Path:
        """Where the local mirror (the asset folder) would have it."""
        return assets_dir() / self.path


def load_catalogue(path: Path = CATALOGUE_PATH) -> list[CatalogueEntry]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the model catalogue ({exc})") from None
    entries = []
    seen: set[str] = set()
    file_names: set[str] = set()
    for index, item in enumerate(document.get("models") or []):
        where = f"{path}: models[{index}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = set(item) - set(CatalogueEntry.__dataclass_fields__)
        missing = {"id", "family", "kind", "url", "path"} - set(item)
        if unknown or missing:
            raise ConfigError(f"{where}: unknown fields {sorted(unknown)} / missing fields {sorted(missing)}")
        fields: dict[str, Any] = {str(k): (str(v) if v is not None else None) for k, v in item.items()}
        for name in _NUMBERS:
            if fields.get(name) is not None:
                try:
                    fields[name] = float(item[name])
                except (TypeError, ValueError):
                    raise ConfigError(f"{where}: {name} must be a number, got {item[name]!r}") from None
        entry = CatalogueEntry(**fields)
        if entry.kind not in KINDS or (entry.kind == "hef") != (entry.chip is not None):
            raise ConfigError(f"{where} ({entry.id}): kind must be hef (with a chip) or onnx (without)")
        if entry.sha256 is not None and len(entry.sha256) != 64:
            raise ConfigError(f"{where} ({entry.id}): sha256 must be 64 hex digits")
        if entry.id in seen:
            raise ConfigError(f"{where}: duplicate id {entry.id}")
        if entry.file_name in file_names:  # the store is flat: one file per name
            raise ConfigError(f"{where} ({entry.id}): another model is already stored as {entry.file_name}")
        seen.add(entry.id)
        file_names.add(entry.file_name)
        entries.append(entry)
    return entries


def find(model_id: str, entries: list[CatalogueEntry] | None = None) -> CatalogueEntry | None:
    return next((e for e in entries or load_catalogue() if e.id == model_id), None)


def cpu_model_for(family: str, entries: list[CatalogueEntry] | None = None) -> CatalogueEntry | None:
    """The catalogue's first CPU (ONNX) model of a family: what runs when no Hailo is usable."""
    return next((e for e in entries or load_catalogue() if e.family == family and e.kind == "onnx"), None)
