"""The model-family registry: one line per family (module path); each module exposes `FAMILY`.

A family is chosen by name (`detector.family`, `--detector`) or, with "auto", recognised from the model's
output shapes. Importing a family loads numpy and its decode code only, never a runtime.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import cast

from nvr.errors import ModelError
from nvr.families.base import DetectorFamily, InputSpec, ModelFamily, Role, Shape

__all__ = [
    "FAMILY_MODULES",
    "DetectorFamily",
    "InputSpec",
    "ModelFamily",
    "Shape",
    "detector_family",
    "family",
    "family_names",
    "recognise",
]  # fmt: skip

FAMILY_MODULES: dict[str, str] = {
    "scrfd": "nvr.families.scrfd",
    "blazeface": "nvr.families.blazeface",
    "arcface": "nvr.families.arcface",
}


@cache
def family(name: str) -> ModelFamily:
    module = FAMILY_MODULES.get(name)
    if module is None:
        raise ModelError(f"unknown model family {name!r}: choose one of {', '.join(FAMILY_MODULES)}")
    found = cast(ModelFamily, importlib.import_module(module).FAMILY)
    assert found.name == name, f"{module} registers {found.name!r} under {name!r}"
    return found


def family_names(role: Role | None = None) -> tuple[str, ...]:
    return tuple(n for n in FAMILY_MODULES if role is None or family(n).role == role)


def detector_family(name: str) -> DetectorFamily:
    found = family(name)
    if found.role != "detector":
        raise ModelError(f"{name} is a {found.role} family, not a face detector")
    return cast(DetectorFamily, found)


def recognise(output_shapes: Sequence[Shape], role: Role, what: str = "model") -> ModelFamily:
    """The one family of `role` whose outputs look like these; a ModelError naming `what` otherwise."""
    matches = [family(n) for n in family_names(role) if family(n).recognises(output_shapes)]
    if len(matches) == 1:
        return matches[0]
    shapes = [tuple(s) for s in output_shapes]
    if not matches:
        names = ", ".join(family_names(role))
        raise ModelError(f"{what}: outputs {shapes} are not those of a known {role} family ({names})")
    both = " and ".join(m.name for m in matches)
    raise ModelError(f"{what}: outputs {shapes} could be {both}: name the family")
