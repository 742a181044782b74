"""SCRFD quantized path: uint8 maps with the real HEF's scale/zero-point decode to the float faces.

The outputs are the SCRFD-2.5G ONNX model's (the HEF's source model) float maps, reshaped to the HEF's
(H, W, C) layers and quantized with each layer's own parameters as read from the real HEF by
`nvr.hef.read_hef`, which is what a Hailo device hands over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from reference_scrfd import reference_decode
from scrfd_helpers import SCRFD_HEF, ScrfdOnnx, as_hef_maps, hef_output_layers, quantize_like_hef
from test_scrfd_postprocess import assert_same_faces, box_iou

from nvr.contracts.tensors import QuantInfo, RawOutput
from nvr.hef import HefLayer
from nvr.postprocess.scrfd import ScrfdPostprocessor

Asset = Callable[[str], Path]
IMAGES = [
    "insightface_t1.jpg",
    "hpc203_selfie.jpg",
    "cospectrum_solvay_conference_1927.png",
    "cospectrum_newton.png",
    "retinaface_test.jpg",
]
# What a forum thread guessed for SCRFD on a Hailo-8: scores / 255, boxes / 32, keypoints (q - 113) / 29.
FORUM_SCORE = QuantInfo.per_tensor(1 / 255, 0)
FORUM_BOX = QuantInfo.per_tensor(1 / 32, 0)
FORUM_KEYPOINTS = QuantInfo.per_tensor(1 / 29, 113)


@pytest.fixture(scope="module")
def scrfd() -> ScrfdOnnx:
    from conftest import asset_path

    return ScrfdOnnx(asset_path("models/scrfd/scrfd_2.5g_bnkps_shape640x640.onnx"))


@pytest.fixture(scope="module")
def layers() -> tuple[HefLayer, ...]:
    from conftest import asset_path

    return hef_output_layers(asset_path(SCRFD_HEF))


def test_hef_layers_are_what_the_model_zoo_recipe_promises(layers: tuple[HefLayer, ...]) -> None:
    assert [layer.shape for layer in layers] == [(g, g, c) for g in (80, 40, 20) for c in (8, 2, 20)]
    assert all(layer.dtype == "uint8" and not layer.quant.is_per_feature for layer in layers)


@pytest.mark.parametrize("image", IMAGES)
def test_quantized_outputs_decode_to_the_float_faces(
    asset: Asset, scrfd: ScrfdOnnx, layers: tuple[HefLayer, ...], image: str
) -> None:
    outputs, letterbox = scrfd.run(asset(f"images/{image}"))
    quantized = quantize_like_hef(outputs, layers)
    postprocessor = ScrfdPostprocessor()
    floats = postprocessor.decode(outputs, letterbox)
    ours = postprocessor.decode(quantized, letterbox)
    assert len(ours) == len(floats) > 0
    iou = box_iou(floats.boxes, ours.boxes)
    match = iou.argmax(axis=1)
    assert iou.max(axis=1).mean() >= 0.97
    assert len(set(match.tolist())) == len(floats)  # one quantized face per float face
    to_input = letterbox.scale_x  # landmark error in model-input (640) pixels
    assert np.abs(floats.landmarks - ours.landmarks[match]).max() * to_input <= 1.0
    # And the fast quantized decode is exactly the plain dequantize-everything decode.
    assert_same_faces(ours, reference_decode(quantized, letterbox), landmark_px=0.01)
    assert_same_faces(
        ScrfdPostprocessor(score_threshold=0.02).decode(quantized, letterbox),
        reference_decode(quantized, letterbox, 0.02),
        landmark_px=0.01,
    )


def test_maps_with_a_batch_axis(asset: Asset, scrfd: ScrfdOnnx, layers: tuple[HefLayer, ...]) -> None:
    outputs, letterbox = scrfd.run(asset("images/insightface_t1.jpg"))
    quantized = quantize_like_hef(outputs, layers)
    batched = [RawOutput(o.name, o.data[None], o.quant) for o in quantized]
    assert batched[0].data.shape == (1, 80, 80, 8)
    assert_same_faces(
        ScrfdPostprocessor().decode(batched, letterbox),
        ScrfdPostprocessor().decode(quantized, letterbox),
        1.0,
        0.0,
    )


def _thresholds(quant: QuantInfo) -> list[float]:
    """Thresholds at, just above and just below dequantized code values, and the usual ones."""
    values = [0.0, 0.02, 0.4, 0.5, 0.9, 1.0, 1.5]
    for code in (0, 1, 5, 6, 127, 128, 200, 254, 255):
        at = float(quant.dequantize(np.array([code], np.uint8))[0])
        values += [
            at,
            float(np.nextafter(np.float32(at), np.float32(2))),
            float(np.nextafter(np.float32(at), 0)),
        ]
    return values


def _survivor_scores(outputs: list[RawOutput], threshold: float) -> list[float]:
    """Dequantize every score, then compare: the straightforward way."""
    scores = [o.quant.dequantize(o.data).ravel() for o in outputs if o.data.shape[-1] == 2 and o.quant]
    kept = np.concatenate(scores)
    return sorted(kept[kept >= threshold].tolist(), reverse=True)


def test_quantized_threshold_keeps_exactly_what_dequantizing_keeps(
    asset: Asset, scrfd: ScrfdOnnx, layers: tuple[HefLayer, ...]
) -> None:
    outputs, letterbox = scrfd.run(asset("images/hpc203_selfie.jpg"))
    quantized = quantize_like_hef(outputs, layers)
    score_quant = next(layer.quant for layer in layers if layer.shape[2] == 2)
    for threshold in _thresholds(score_quant):
        # IoU 1.0 suppresses nothing, so the result is every anchor that passed the threshold.
        result = ScrfdPostprocessor(score_threshold=threshold, nms_iou=1.0).decode(quantized, letterbox)
        assert result.scores.tolist() == _survivor_scores(quantized, threshold), threshold


def _per_feature(layer: HefLayer) -> QuantInfo:
    """Per-channel parameters around the layer's real ones, as HEFs with per-feature scales carry."""
    channels = layer.shape[2]
    spread = np.linspace(0.8, 1.25, channels, dtype=np.float32)
    zero_points = layer.quant.zero_point + np.arange(channels, dtype=np.float32) % 3
    return QuantInfo(layer.quant.scale * spread, zero_points.astype(np.float32))


def test_per_feature_quantization(asset: Asset, scrfd: ScrfdOnnx, layers: tuple[HefLayer, ...]) -> None:
    outputs, letterbox = scrfd.run(asset("images/insightface_t1.jpg"))
    maps = as_hef_maps(outputs, layers)
    quantized = []
    for m, layer in zip(maps, layers, strict=True):
        quant = _per_feature(layer)
        quantized.append(RawOutput(layer.name, quant.quantize(m.data.astype(np.float32)), quant))
    for threshold in (0.5, 0.02):
        ours = ScrfdPostprocessor(score_threshold=threshold).decode(quantized, letterbox)
        assert_same_faces(ours, reference_decode(quantized, letterbox, threshold), landmark_px=0.01)
    score_quant = next(q.quant for q in quantized if q.data.shape[-1] == 2 and q.quant)
    assert score_quant.is_per_feature
    for threshold in _thresholds(score_quant):
        result = ScrfdPostprocessor(score_threshold=threshold, nms_iou=1.0).decode(quantized, letterbox)
        assert result.scores.tolist() == _survivor_scores(quantized, threshold), threshold
    faces = ScrfdPostprocessor().decode(quantized, letterbox)
    assert len(faces) == 6


def test_new_quantization_parameters_are_not_served_from_a_stale_plan(
    asset: Asset, scrfd: ScrfdOnnx, layers: tuple[HefLayer, ...]
) -> None:
    outputs, letterbox = scrfd.run(asset("images/insightface_t1.jpg"))
    postprocessor = ScrfdPostprocessor()
    hef_codes = quantize_like_hef(outputs, layers)
    first = postprocessor.decode(hef_codes, letterbox)
    # The same codes read with other box parameters (new QuantInfo objects) must decode as the reference does.
    rescaled = [
        RawOutput(o.name, o.data, QuantInfo(o.quant.scale * 1.1, o.quant.zero_point))
        if o.quant and o.data.shape[-1] == 8
        else o
        for o in hef_codes
    ]
    second = postprocessor.decode(rescaled, letterbox)
    assert_same_faces(second, reference_decode(rescaled, letterbox), landmark_px=0.01)
    assert len(second) == len(first) and not np.allclose(first.boxes, second.boxes, atol=1.0)


def _forum(outputs: list[RawOutput]) -> list[RawOutput]:
    guessed = {2: FORUM_SCORE, 8: FORUM_BOX, 20: FORUM_KEYPOINTS}
    return [RawOutput(o.name, o.data, guessed[o.data.shape[-1]]) for o in outputs]


def test_forum_constants_are_measurably_off(
    asset: Asset, scrfd: ScrfdOnnx, layers: tuple[HefLayer, ...]
) -> None:
    """The regression this project exists to fix, in numbers."""
    box_8 = next(layer.quant for layer in layers if layer.shape == (80, 80, 8))
    kps_8 = next(layer.quant for layer in layers if layer.shape == (80, 80, 20))
    # The score guess happens to be right: every score layer is 1/255 with zero-point 0.
    for layer in layers:
        if layer.shape[2] == 2:
            assert layer.quant.scale == FORUM_SCORE.scale and layer.quant.zero_point == 0
    # "/ 32" against the real stride-8 box scale: distances, hence boxes, 57 % too large.
    assert float(FORUM_BOX.scale / box_8.scale) == pytest.approx(1.574, abs=0.001)

    outputs, letterbox = scrfd.run(asset("images/hpc203_selfie.jpg"))
    quantized = quantize_like_hef(outputs, layers)
    # Only stride-8 anchors (silence the other strides' scores): compare anchor by anchor, no NMS.
    stride_8 = [
        RawOutput(o.name, np.zeros_like(o.data), o.quant)
        if o.data.shape[-1] == 2 and o.data.shape[0] != 80
        else o
        for o in quantized
    ]
    every_anchor = ScrfdPostprocessor(nms_iou=1.0)
    ours = every_anchor.decode(stride_8, letterbox)
    guessed = every_anchor.decode(_forum(stride_8), letterbox)
    np.testing.assert_array_equal(ours.scores, guessed.scores)  # same anchors, same order
    assert len(ours) > 300
    width = (ours.boxes[:, 2] - ours.boxes[:, 0]) * letterbox.scale_x  # model-input pixels
    guessed_width = (guessed.boxes[:, 2] - guessed.boxes[:, 0]) * letterbox.scale_x
    # (q / 32) = (d / scale + zp) / 32: widths scale by 1.574 and grow by 2·zp·8/32 = 2 px.
    bias = 2 * float(box_8.zero_point) * 8 / 32
    np.testing.assert_allclose(guessed_width, width * float(FORUM_BOX.scale / box_8.scale) + bias, atol=0.02)
    assert np.median(guessed_width / width) > 1.6
    # Keypoints: (q - 113) / 29 against (q - zp) · scale.
    offset_error = np.abs(guessed.landmarks - ours.landmarks) * letterbox.scale_x
    assert np.median(offset_error) > 1.0 and float(FORUM_KEYPOINTS.scale / kps_8.scale) == pytest.approx(
        1.319, abs=0.001
    )

    # What a user sees on the whole picture: the float model's faces, and the guessed ones far from them.
    postprocessor = ScrfdPostprocessor()
    floats = postprocessor.decode(outputs, letterbox)
    ours_faces = postprocessor.decode(quantized, letterbox)
    forum_faces = postprocessor.decode(_forum(quantized), letterbox)
    assert box_iou(floats.boxes, ours_faces.boxes).max(axis=1).mean() >= 0.97
    assert box_iou(floats.boxes, forum_faces.boxes).max(axis=1).mean() < 0.5
