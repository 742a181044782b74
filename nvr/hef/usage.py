"""What a user wants to know about a HEF before copying it to their Pi: which chips run it, and what nvr
can use it as (which HailoRT it needs is `nvr.backends.hailo_diagnostics.hailort_compatibility`). Worked out
from the HEF's metadata alone (no HailoRT, no device).

Chips: HailoRT's `DeviceBase::is_hef_compatible` (../shared/reference/hailort.md §1c): a Hailo-8 runs
HAILO8P/8R/8L builds (8L ones at lower performance), a Hailo-8L only HAILO8L builds; the Hailo-10H/15
builds never run on a Hailo-8 or 8L.

Use: recognised by output shapes, as nvr's model families do: SCRFD's 9 score/box/landmark maps (a face
detector), or a single vector per image (NC format) from a 112x112 face (an ArcFace-style face embedder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nvr.hef.model import HefInfo, HefLayer, HwArch, NetworkGroup

# Chip -> the HEF hw_arch values it runs (HailoRT's is_hef_compatible), in the order users meet them.
RUNS: dict[str, frozenset[int]] = {
    "Hailo-8": frozenset({HwArch.HAILO8P, HwArch.HAILO8R, HwArch.HAILO8L}),
    "Hailo-8L": frozenset({HwArch.HAILO8L}),
    "Hailo-10H": frozenset({HwArch.HAILO15M, HwArch.HAILO10H, HwArch.HAILO15H}),
    "Hailo-15H": frozenset({HwArch.HAILO15M, HwArch.HAILO10H, HwArch.HAILO15H}),
    "Hailo-15M": frozenset({HwArch.HAILO15M}),
    "Hailo-15L": frozenset({HwArch.HAILO15L}),
}
HAILO8_CHIPS = ("Hailo-8", "Hailo-8L")

# SCRFD: channels per output map (2 anchors per cell x 1 score, 4 box distances, 10 landmark values).
SCRFD_CHANNELS = {2: "score", 8: "box", 20: "landmarks"}
SCRFD_STRIDES = (8, 16, 32)
EMBEDDER_INPUT = (112, 112, 3)  # an aligned face (the ArcFace template)

Use = Literal["face detector", "face embedder"]


@dataclass(frozen=True, slots=True)
class Usage:
    use: Use | None  # None: nvr cannot use the network
    family: str | None  # the model family nvr would run it as ("scrfd", "arcface")
    why: str  # one line: what in the outputs makes it so


def runs_on(hw_arch: int) -> tuple[str, ...]:
    """The chips that run a HEF compiled for `hw_arch` (empty for an arch no chip accepts)."""
    return tuple(chip for chip, accepted in RUNS.items() if hw_arch in accepted)


def chips_line(info: HefInfo) -> str:
    chips = runs_on(info.hw_arch)
    if not chips:
        return f"no Hailo chip: HailoRT accepts hw_arch {info.hw_arch} ({info.hw_arch_name}) on none"
    if info.hw_arch == HwArch.HAILO8L:
        return "Hailo-8L, and Hailo-8 (at lower performance: use a Hailo-8 build there)"
    missing = [chip for chip in HAILO8_CHIPS if chip not in chips]
    never = f"; never on {' or '.join(missing)}" if missing else ""
    return ", ".join(chips) + never


def usage(info: HefInfo) -> Usage:
    """What nvr can run the default network group as, and why."""
    group = info.default_group
    if _is_scrfd(group):
        return Usage("face detector", "scrfd", "SCRFD: 9 outputs, score/box/landmarks at strides 8, 16, 32")
    if _is_embedding(group):
        return Usage(
            "face embedder", "arcface", f"one {group.outputs[0].shape[2]}-value vector per 112x112 face"
        )
    inputs = ", ".join("x".join(str(d) for d in layer.shape) for layer in group.inputs) or "none"
    outputs = len(group.outputs)
    if outputs == 1 and group.outputs[0].shape[:2] == (1, 1):
        return Usage(None, None, f"one vector output, but from a {inputs} input, not a 112x112x3 face")
    return Usage(
        None, None,
        f"{outputs} output{'s' if outputs != 1 else ''} {_shapes(group.outputs)} from a {inputs} input: "
        "neither SCRFD's 9 score/box/landmark maps (a face detector) nor one vector (a face embedder)",
    )  # fmt: skip


def _is_scrfd(group: NetworkGroup) -> bool:
    if len(group.inputs) != 1 or group.inputs[0].shape[2] != 3:
        return False
    height, width, _ = group.inputs[0].shape
    expected = {(role, stride) for role in SCRFD_CHANNELS.values() for stride in SCRFD_STRIDES}
    found = [_scrfd_output(output, height, width) for output in group.outputs]
    return len(found) == len(expected) and set(found) == expected


def _scrfd_output(layer: HefLayer, height: int, width: int) -> tuple[str, int] | None:
    h, w, c = layer.shape
    role = SCRFD_CHANNELS.get(c)
    for stride in SCRFD_STRIDES:
        if role is not None and (h, w) == (-(-height // stride), -(-width // stride)):
            return role, stride
    return None


def _is_embedding(group: NetworkGroup) -> bool:
    if len(group.inputs) != 1 or len(group.outputs) != 1:
        return False
    h, w, c = group.outputs[0].shape
    return group.inputs[0].shape == EMBEDDER_INPUT and (h, w) == (1, 1) and c >= 64


def _shapes(layers: tuple[HefLayer, ...]) -> str:
    return "[" + ", ".join("x".join(str(d) for d in layer.shape) for layer in layers) + "]"
