"""Render `HefInfo` for people (an aligned text report) and for programs (a JSON-ready dict).

The JSON shape is documented in `nvr.cli.models` (`nvr models inspect --json`); keys are stable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nvr.hef.model import HefInfo, HefLayer, NetworkGroup
from nvr.hef.usage import chips_line, runs_on, usage

JSON_FORMAT_VERSION = 1


def hef_to_json(info: HefInfo) -> dict[str, Any]:
    return {
        "format_version": JSON_FORMAT_VERSION,
        "file": str(info.path),
        "header_version": info.header_version,
        "min_hailort": "{}.{}".format(*info.min_hailort),
        "hw_arch": info.hw_arch,
        "hw_arch_name": info.hw_arch_name,
        "arch_family": info.arch_family,
        "sdk_version": info.sdk_version,
        "extensions": sorted(info.extensions),
        "per_feature_quantization": info.per_feature_quant,
        "network_groups": [_group_to_json(group) for group in info.network_groups],
        **_answers_to_json(info),
    }


def _answers_to_json(info: HefInfo) -> dict[str, Any]:
    """The user's questions: which chips run it, what nvr can use it as."""
    use = usage(info)
    return {
        "runs_on": list(runs_on(info.hw_arch)),
        "usable_as": use.use,
        "family": use.family,
        "usable_because": use.why,
    }


def _group_to_json(group: NetworkGroup) -> dict[str, Any]:
    return {
        "name": group.name,
        "network_name": group.network_name,
        "inputs": [_layer_to_json(layer) for layer in group.inputs],
        "outputs": [_layer_to_json(layer) for layer in group.outputs],
    }


def _layer_to_json(layer: HefLayer) -> dict[str, Any]:
    quant = layer.quant
    return {
        "name": layer.name,
        "shape": list(layer.shape),
        "hailort_shape": list(layer.hailort_shape),
        "dtype": layer.dtype,
        "device_format": layer.device_format,
        "frame_size": layer.frame_size,
        "per_feature": quant.is_per_feature,
        # float32 values widened exactly to float, as HailoRT's float32 fields print in Python.
        "qp_zp": quant.zero_point.tolist(),
        "qp_scale": quant.scale.tolist(),
        "limvals": [layer.limvals[0], layer.limvals[1]],
    }


def hef_to_text(info: HefInfo) -> str:
    use = usage(info)
    lines = [
        f"file           {info.path}",
        f"runs on        {chips_line(info)}",
        f"use in nvr     {use.use} ({use.why})" if use.use else f"use in nvr     none: {use.why}",
        f"header         v{info.header_version} (needs HailoRT >= {'{}.{}'.format(*info.min_hailort)})",
        f"architecture   {info.hw_arch_name} ({info.arch_family} family)",
        f"compiled with  {info.sdk_version or 'unknown SDK version'}",
    ]
    for index, group in enumerate(info.network_groups):
        default = " (default)" if index == 0 and len(info.network_groups) > 1 else ""
        lines += ["", f"network group  {group.name}{default}, network {group.network_name}"]
        lines += _layer_table("inputs", group.inputs)
        lines += _layer_table("outputs, in HailoRT's sorted order", group.outputs)
    if info.per_feature_quant:
        lines += [
            "",
            "note: this HEF quantizes each output feature (channel) separately (extension 25); zp and",
            "      scale show the range over features (--json lists every value). HailoRT's Python API",
            "      reports an invalid all-zero quant_info for such outputs; FLOAT32 output is still right.",
        ]
    return "\n".join(lines)


_HEADERS = ("#", "name", "shape (HxWxC)", "dtype", "format", "zp", "scale", "limvals")


def _layer_table(title: str, layers: tuple[HefLayer, ...]) -> list[str]:
    rows = [_HEADERS] + [_layer_row(index, layer) for index, layer in enumerate(layers)]
    widths = [max(len(row[col]) for row in rows) for col in range(len(_HEADERS))]
    rendered = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return [f"{title}:"] + ["  " + line for line in rendered]


def _layer_row(index: int, layer: HefLayer) -> tuple[str, ...]:
    h, w, c = layer.shape
    return (
        str(index),
        layer.name,
        f"{h}x{w}x{c}",
        layer.dtype,
        layer.device_format,
        _values(layer.quant.zero_point),
        _values(layer.quant.scale),
        f"{_number(layer.limvals[0])} .. {_number(layer.limvals[1])}",
    )


def _values(values: np.ndarray[Any, np.dtype[np.float32]]) -> str:
    if values.ndim == 0:
        return _number(float(values))
    if values.size == 0:
        return "-"
    low, high = float(values.min()), float(values.max())
    return _number(low) if low == high else f"{_number(low)}..{_number(high)}"


def _number(value: float) -> str:
    # float32 values: 7 significant digits are all they carry.
    return f"{value:.7g}"
