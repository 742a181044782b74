"""The CPU backend loads every SCRFD export in the assets, whatever its input and output naming."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nvr.backends.onnx import OnnxBackend
from nvr.errors import ExitCode, InputFileError
from nvr.families import detector_family

SCRFD = detector_family("scrfd").input

SCRFD_FILES = [
    "det_500m.onnx",
    "det_2.5g.onnx",
    "scrfd_500m_bnkps_shape640x640.onnx",
    "scrfd_2.5g_bnkps_shape640x640.onnx",
    "scrfd_500m_kps_opencv.onnx",
    "scrfd_2.5g_kps_opencv.onnx",
]


@pytest.mark.parametrize("name", SCRFD_FILES)
def test_every_scrfd_export_runs(asset: Callable[[str], Path], name: str) -> None:
    backend = OnnxBackend(asset(f"models/scrfd/{name}"), mean=SCRFD.mean, std=SCRFD.std)
    assert (backend.input_width, backend.input_height) == (640, 640)
    outputs = backend.infer(np.zeros((640, 640, 3), np.uint8))
    assert len(outputs) == 9
    # Per stride 8/16/32: 12800, 3200, 800 anchors; channels 1/4/10, with or without a batch axis.
    sizes = sorted((int(np.prod(o.data.shape[:-1])), o.data.shape[-1]) for o in outputs)
    assert sizes == sorted((n, k) for n in (12800, 3200, 800) for k in (1, 4, 10))
    assert all(o.quant is None and o.data.dtype == np.float32 for o in outputs)


def test_dynamic_input_takes_requested_size(asset: Callable[[str], Path]) -> None:
    backend = OnnxBackend(
        asset("models/scrfd/det_500m.onnx"), input_width=320, input_height=256, mean=SCRFD.mean, std=SCRFD.std
    )
    outputs = backend.infer(np.zeros((256, 320, 3), np.uint8))
    assert sorted(o.data.shape[0] for o in outputs if o.data.shape[-1] == 1) == [160, 640, 2560]
    with pytest.raises(ValueError, match="256x320x3"):
        backend.infer(np.zeros((640, 640, 3), np.uint8))


def test_fixed_input_overrides_requested_size(asset: Callable[[str], Path]) -> None:
    backend = OnnxBackend(
        asset("models/scrfd/scrfd_2.5g_kps_opencv.onnx"),
        input_width=320,
        input_height=320,
        mean=SCRFD.mean,
        std=SCRFD.std,
    )
    assert (backend.input_width, backend.input_height) == (640, 640)


def test_bad_model_files(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such model file"):
        OnnxBackend(tmp_path / "missing.onnx", mean=SCRFD.mean, std=SCRFD.std)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf")
    with pytest.raises(InputFileError) as caught:  # the file is at fault, like a missing one: exit 4
        OnnxBackend(junk, mean=SCRFD.mean, std=SCRFD.std)
    assert str(junk) in caught.value.message and caught.value.exit_code == ExitCode.INPUT
