"""The BlazeFace exporter: its network is MediaPipe's, and the ONNX files compute what PyTorch computes."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from conftest import PROJECT_ROOT

from nvr.backends.onnx import OnnxBackend
from nvr.backends.tflite import TfliteBackend
from nvr.contracts.imaging import letterbox_into, load_rgb
from nvr.families import detector_family

INPUT_MEAN = detector_family("blazeface").input.mean
INPUT_STD = detector_family("blazeface").input.std


@pytest.fixture(scope="module")
def exporter() -> ModuleType:
    path = PROJECT_ROOT / "scripts" / "export_blazeface_onnx.py"
    spec = importlib.util.spec_from_file_location("export_blazeface_onnx", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tflite_weights(model: Path) -> dict[str, torch.Tensor]:
    """MediaPipe's short-range weights renamed into the exporter's front network (TFLite is OHWI)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(interpreter.get_tensor(index[name]).astype(np.float32))

    state = {
        "backbone1.0.weight": tensor("conv2d/Kernel").permute(0, 3, 1, 2),
        "backbone1.0.bias": tensor("conv2d/Bias"),
    }
    blocks = [f"backbone1.{i}" for i in range(2, 13)] + [f"backbone2.{i}" for i in range(5)]
    for k, block in enumerate(blocks):
        depthwise = "depthwise_conv2d" + (f"_{k}" if k else "")
        pointwise = f"conv2d_{k + 1}"
        state[f"{block}.convs.0.weight"] = tensor(f"{depthwise}/Kernel").permute(3, 0, 1, 2)
        state[f"{block}.convs.0.bias"] = tensor(f"{depthwise}/Bias")
        state[f"{block}.convs.1.weight"] = tensor(f"{pointwise}/Kernel").permute(0, 3, 1, 2)
        state[f"{block}.convs.1.bias"] = tensor(f"{pointwise}/Bias")
    for head in ("classificator_8", "classificator_16", "regressor_8", "regressor_16"):
        ours = head.replace("classificator", "classifier")
        state[f"{ours}.weight"] = tensor(f"{head}/Kernel").permute(0, 3, 1, 2)
        state[f"{ours}.bias"] = tensor(f"{head}/Bias")
    return state


def model_input(asset: Callable[[str], Path], size: int) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    letterbox_into(load_rgb(asset("images/insightface_t1.jpg")), image)  # non-square: padding included
    return image


def test_the_front_network_is_mediapipes_short_range_graph(
    exporter: ModuleType, asset: Callable[[str], Path]
) -> None:
    """With the short-range TFLite weights, the exporter's network reproduces that model's outputs."""
    tflite_model = asset("models/mediapipe/face_detection_short_range.tflite")
    network = exporter.BlazeFace(back=False)
    network.load_state_dict(tflite_weights(tflite_model), strict=True)
    network.eval()
    image = model_input(asset, 128)
    x = torch.from_numpy((image.astype(np.float32) - INPUT_MEAN) / INPUT_STD).permute(2, 0, 1)[None]
    with torch.no_grad():
        boxes, scores = network(x)
    tflite = TfliteBackend(tflite_model, mean=INPUT_MEAN, std=INPUT_STD)
    expected = {o.name: o.data.astype(np.float32) for o in tflite.infer(image)}
    # TFLite stores these weights as float16 and runs XNNPACK: agreement to 0.2% of each output's range.
    for got, name in ((boxes, "regressors"), (scores, "classificators")):
        np.testing.assert_allclose(got.numpy(), expected[name], atol=2e-3 * np.abs(expected[name]).max())


@pytest.mark.parametrize(
    ("weights", "back", "size"), [("blazeface.pth", False, 128), ("blazefaceback.pth", True, 256)]
)
def test_the_onnx_export_computes_what_pytorch_computes(
    exporter: ModuleType, asset: Callable[[str], Path], tmp_path: Path, weights: str, back: bool, size: int
) -> None:
    weights_path = asset(f"models/blazeface/{weights}")
    out = tmp_path / "blazeface.onnx"
    exporter.export(weights_path, back, size, out)
    backend = OnnxBackend(out, mean=INPUT_MEAN, std=INPUT_STD)
    assert (backend.input_width, backend.input_height) == (size, size)
    assert backend.output_shapes == [(1, 896, 16), (1, 896, 1)]
    image = model_input(asset, size)
    got = {o.name: o.data.astype(np.float32) for o in backend.infer(image)}
    x = torch.from_numpy((image.astype(np.float32) - INPUT_MEAN) / INPUT_STD).permute(2, 0, 1)[None]
    with torch.no_grad():
        boxes, scores = exporter.load(weights_path, back)(x)
    np.testing.assert_allclose(got["regressors"], boxes.numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got["classificators"], scores.numpy(), rtol=1e-4, atol=1e-3)
