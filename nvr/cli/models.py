"""`nvr models ...`: inspect model files (HEF reader); pull/list/verify come with the model catalogue.

Each action is a `_register_<action>(actions)` function listed in `_ACTIONS`; it adds its sub-parser and
sets `handler=`. A new action is one more function and one more entry.

`nvr models inspect FILE.hef --json` prints one JSON document (keys are stable; new keys may be added,
existing ones keep their meaning; `format_version` changes only if one does not):

    {
      "format_version": 1,
      "file": "models/scrfd_2.5g.hef",
      "header_version": 3,                 # HEF container version, 0-3
      "min_hailort": "4.21",               # oldest HailoRT that reads this header version
      "hw_arch": 103,                      # ProtoHEFHwArch value
      "hw_arch_name": "HAILO15H",
      "arch_family": "Hailo-10H/15H",      # the chip family a user recognises
      "sdk_version": "...",                # Dataflow Compiler version string as stored
      "extensions": [0, 3, 12, 20, 26, 28],
      "per_feature_quantization": false,   # extension 25: outputs carry one zp/scale per feature
      "network_groups": [                  # HailoRT's order: [0] is the default group
        {
          "name": "scrfd_2_5g",
          "network_name": "scrfd_2_5g/scrfd_2_5g",
          "inputs": [LAYER, ...],
          "outputs": [LAYER, ...]          # in HailoRT's sorted output order
        }
      ],
      "runs_on": ["Hailo-10H", "Hailo-15H"],  # chips whose HailoRT accepts this hw_arch ([] for none)
      "usable_as": "face detector",        # or "face embedder", or null: nvr cannot use it
      "family": "scrfd",                   # the model family nvr runs it as ("scrfd", "arcface"), or null
      "usable_because": "SCRFD: 9 outputs, ...",  # one line: why (or why not)
      "hailort": {                         # which HailoRT loads it, versus the one installed here
        "needs": ">= 5.0, < 6.0",          # header version and chip family (Hailo-8/8L: 4.x)
        "installed": "4.23.0",             # null when hailo_platform cannot be imported
        "ok": false                        # null when HailoRT is not installed
      }
    }

    LAYER = {
      "name": "scrfd_2_5g/conv43",         # vstream name
      "shape": [80, 80, 8],                # host (H, W, C); NC layers are [1, 1, C]
      "hailort_shape": [80, 80, 8],        # what HailoRT's vstream info reports ([C] for NC)
      "dtype": "uint8",                    # or "uint16"
      "device_format": "NHCW",             # device order; host buffers are always NHWC
      "frame_size": 51200,                 # bytes of one host frame
      "per_feature": false,
      "qp_zp": 4.0,                        # a list of C values when per_feature is true
      "qp_scale": 0.01984935812652111,     # likewise; real = (q - qp_zp) * qp_scale
      "limvals": [-0.07939743250608444, 4.982188701629639]
    }
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nvr.cli import models_store
from nvr.errors import ExitCode
from nvr.hef.describe import hef_to_json, hef_to_text
from nvr.hef.reader import read_hef


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("models", help="inspect and manage model files")
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for register_action in _ACTIONS:
        register_action(actions)


def _register_inspect(actions: Any) -> None:
    parser: argparse.ArgumentParser = actions.add_parser(
        "inspect",
        help="show what a compiled Hailo model (.hef) is for and contains",
        description="Read a .hef file without HailoRT: which chips run it, which HailoRT it needs, what nvr "
        "can use it as (face detector, face embedder, or nothing, and why), then the header and integrity "
        "check, network groups, and every input and output with shape, dtype and quantization.",
    )
    parser.add_argument("file", type=Path, metavar="FILE.hef", help="the .hef file to read")
    parser.add_argument("--json", action="store_true", help="print one JSON document for programs")
    parser.set_defaults(handler=_inspect)


def _inspect(args: argparse.Namespace) -> int:
    from nvr.backends.hailo_diagnostics import hailort_compatibility

    info = read_hef(args.file)
    hailort = hailort_compatibility(info)  # which HailoRT the HEF needs versus what is installed
    if args.json:
        json.dump({**hef_to_json(info), "hailort": hailort.to_json()}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        text = hef_to_text(info).split("\n")
        text.insert(2, f"HailoRT        {hailort.line()}")
        print("\n".join(text))
    return int(ExitCode.OK)


_ACTIONS: tuple[Callable[[Any], None], ...] = (
    _register_inspect,
    models_store.register_pull,
    models_store.register_list,
    models_store.register_verify,
)
