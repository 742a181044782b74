"""The HEF reader: real HEFs against expected.json, synthetic HEFs for the paths no real file uses, and
one clear `HefError` for every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import asset_path
from hef_synth import (
    Layer,
    context,
    core,
    edge,
    hef_proto,
    msg,
    mux_body,
    mux_edge,
    net_flow_group,
    rewrap,
    simple_group,
    split,
    string,
    uint,
    wrap,
)

from nvr.errors import ExitCode, InputFileError
from nvr.hef import HefError, HefInfo, HefLayer, parse_hef, read_hef

# The HEFs in ../shared/assets/hef; test_every_asset_hef_is_covered keeps this list honest.
HEF_FILES = (
    "arcface_mobilefacenet.hailo8.hef",
    "arcface_mobilefacenet_v1.hailo8.hef",
    "hand_landmark_lite.hailo8.hef",
    "lightface_slim.hailo8l.hef",
    "mnist_cnn.hailo8.hef",
    "scrfd_2.5g.hailo10h.hef",
)


def expected_for(name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(asset_path("hef/expected.json").read_text())[name]
    return entries


def test_every_asset_hef_is_covered() -> None:
    folder = asset_path("hef")
    expected = json.loads((folder / "expected.json").read_text())
    assert sorted(path.name for path in folder.glob("*.hef")) == sorted(HEF_FILES)
    assert sorted(expected) == sorted(HEF_FILES)


def _assert_quant_equal(actual: np.ndarray[Any, Any], expected: float | list[float]) -> None:
    # The HEF stores float32 (scalars) or doubles that HailoRT narrows to float32 (per-feature vectors).
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual, np.asarray(expected, np.float32))


@pytest.mark.parametrize("name", HEF_FILES)
def test_real_hef_matches_expected(name: str) -> None:
    info = read_hef(asset_path(f"hef/{name}"))
    expected = expected_for(name)
    assert len(info.network_groups) == len(expected)
    for group, want in zip(info.network_groups, expected, strict=True):
        assert group.name == want["network_group"]
        assert info.hw_arch == want["hw_arch"]
        assert info.hw_arch_name == want["hw_arch_name"].split()[0]
        assert info.header_version == want["header_version"]
        assert [layer.name for layer in group.outputs] == [o["name"] for o in want["outputs"]]
        for layer, out in zip(group.outputs, want["outputs"], strict=True):
            assert layer.shape == tuple(out["shape_hwc"]), layer.name
            assert layer.dtype == out["dtype"]
            assert layer.device_format == out["device_format"]
            _assert_quant_equal(layer.quant.zero_point, out["qp_zp"])
            _assert_quant_equal(layer.quant.scale, out["qp_scale"])
            assert layer.quant.is_per_feature == isinstance(out["qp_scale"], list)
            assert layer.limvals == tuple(float(np.float32(v)) for v in out["limvals"])
        assert info.per_feature_quant == any(isinstance(o["qp_scale"], list) for o in want["outputs"])


@pytest.mark.parametrize(
    ("name", "input_name", "shape"),
    [
        ("scrfd_2.5g.hailo10h.hef", "scrfd_2_5g/input_layer1", (640, 640, 3)),
        ("arcface_mobilefacenet.hailo8.hef", "arcface_mobilefacenet/input_layer1", (112, 112, 3)),
        ("lightface_slim.hailo8l.hef", "lightface_slim/input_layer1", (240, 320, 3)),
        ("mnist_cnn.hailo8.hef", "MNIST_CNN/input_layer1", (32, 32, 1)),
    ],
)
def test_real_hef_input(name: str, input_name: str, shape: tuple[int, int, int]) -> None:
    (layer,) = read_hef(asset_path(f"hef/{name}")).default_group.inputs
    assert (layer.name, layer.shape, layer.dtype) == (input_name, shape, "uint8")
    # Normalisation is compiled into these HEFs: the input takes raw 0..255 values, identity quantization.
    assert (float(layer.quant.zero_point), float(layer.quant.scale)) == (0.0, 1.0)
    assert not layer.quant.is_per_feature  # even in lightface's per-feature HEF: inputs stay per tensor
    assert layer.limvals == (0.0, 255.0)


def test_real_hef_details() -> None:
    scrfd = read_hef(asset_path("hef/scrfd_2.5g.hailo10h.hef"))
    assert scrfd.arch_family == "Hailo-10H/15H"
    assert scrfd.min_hailort == (4, 21)
    assert "5.2.0" in scrfd.sdk_version
    assert scrfd.default_group.network_name == "scrfd_2_5g/scrfd_2_5g"
    assert [o.frame_size for o in scrfd.default_group.outputs[:3]] == [80 * 80 * 8, 80 * 80 * 2, 80 * 80 * 20]

    arcface = read_hef(asset_path("hef/arcface_mobilefacenet.hailo8.hef"))
    (fc1,) = arcface.default_group.outputs
    assert (fc1.shape, fc1.hailort_shape) == ((1, 1, 512), (512,))  # NC: HailoRT reports (C,)
    assert arcface.sdk_version == "3.29.0"
    assert arcface.arch_family == "Hailo-8"

    # The group name differs from the vstream prefix; the network comes from networks_names (ext 8).
    old = read_hef(asset_path("hef/arcface_mobilefacenet_v1.hailo8.hef"))
    assert old.default_group.name == "auto_group_0"
    assert old.default_group.network_name == "auto_group_0/arcface_mobilenet_v1"

    lightface = read_hef(asset_path("hef/lightface_slim.hailo8l.hef"))
    assert lightface.arch_family == "Hailo-8L"
    assert lightface.per_feature_quant and 25 in lightface.extensions
    conv23 = lightface.default_group.outputs[0]
    assert conv23.quant.scale.shape == conv23.quant.zero_point.shape == (12,)


def test_per_feature_quant_dequantizes_per_channel() -> None:
    conv12 = read_hef(asset_path("hef/lightface_slim.hailo8l.hef")).default_group.outputs[3]
    q = np.full((15, 20, 4), 130, np.uint8)
    real = conv12.quant.dequantize(q)
    np.testing.assert_allclose(real[0, 0], (130 - conv12.quant.zero_point) * conv12.quant.scale)
    assert len(set(real[0, 0].tolist())) > 1  # channels really differ


# --- synthetic HEFs: every header version and the paths real files do not take ----------------------

OUT = Layer("net/conv1", (4, 6, 8), zp=4.0, scale=0.25)


def _read(tmp_path: Path, data: bytes, name: str = "synthetic.hef") -> HefInfo:
    path = tmp_path / name
    path.write_bytes(data)
    return read_hef(path)


def _error(tmp_path: Path, data: bytes, name: str = "bad.hef") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(HefError) as caught:
        read_hef(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_every_header_version_reads(tmp_path: Path, version: int) -> None:
    proto = hef_proto([simple_group("net", [OUT])])
    info = _read(tmp_path, wrap(proto, version, v3_padding=100, v3_extra=17))
    assert info.header_version == version
    (layer,) = info.default_group.outputs
    assert (layer.name, layer.shape, layer.device_format) == ("net/conv1", (4, 6, 8), "NHCW")
    assert (float(layer.quant.zero_point), float(layer.quant.scale), layer.limvals) == (
        4.0,
        0.25,
        (-1.5, 126.0),
    )


def test_first_group_is_the_last_in_the_protobuf(tmp_path: Path) -> None:
    proto = hef_proto(
        [simple_group("first", [Layer("first/out")]), simple_group("second", [Layer("second/out")])]
    )
    info = _read(tmp_path, wrap(proto, 1))
    assert [g.name for g in info.network_groups] == ["second", "first"]
    assert info.default_group.outputs[0].name == "second/out"


def test_output_order_rules(tmp_path: Path) -> None:
    a, b, c = Layer("n/a"), Layer("n/b"), Layer("n/c")
    edges = [edge(Layer("n/in"), output=False)] + [edge(x, output=True) for x in (a, b, c)]

    def order(**kwargs: Any) -> list[str]:
        group_order = kwargs.pop("group_order", [])
        ctx_order = kwargs.pop("ctx_order", [])
        group = core("n", [context(edges, ctx_order)], group_order, **kwargs)
        return [o.name for o in _read(tmp_path, wrap(hef_proto([group]), 1)).default_group.outputs]

    assert order(group_order=["n/c", "n/a", "n/b"]) == ["n/c", "n/a", "n/b"]
    # Fused-layer metadata overrides the group's order; the last context's order is the oldest fallback.
    assert order(group_order=["n/c", "n/a", "n/b"], fused_order=["n/b", "n/c", "n/a"]) == [
        "n/b",
        "n/c",
        "n/a",
    ]
    assert order(ctx_order=["n/b", "n/a", "n/c"]) == ["n/b", "n/a", "n/c"]
    with pytest.raises(HefError, match=r"'n/c' is missing from the HEF's sorted output order"):
        order(group_order=["n/a", "n/b"])
    with pytest.raises(HefError, match="has no sorted output order"):
        order()


def test_only_boundary_layers_and_transposition(tmp_path: Path) -> None:
    wide = Layer("n/wide", (2, 5, 3), transposed=True)
    nc = Layer("n/vector", (1, 1, 10), fmt=2, transposed=True)
    internal = Layer("n/internal", (9, 9, 9))
    edges = [
        edge(Layer("n/in"), output=False),
        edge(wide, output=True),
        edge(nc, output=True),
        edge(internal, output=True, connection=1),  # INTERMEDIATE: not a vstream
    ]
    group = core("n", [context(edges)], ["n/wide", "n/vector", "n/internal"])
    outputs = _read(tmp_path, wrap(hef_proto([group]), 2)).default_group.outputs
    assert [(o.name, o.shape, o.device_format) for o in outputs] == [
        ("n/wide", (5, 2, 3), "NHCW"),  # H and W swapped
        ("n/vector", (1, 1, 10), "NC"),  # NC never swaps
    ]
    # transposed_net on the group swaps every non-NC layer.
    group = core(
        "n",
        [context([edge(Layer("n/in"), output=False), edge(Layer("n/t", (3, 7, 1)), output=True)])],
        ["n/t"],
        transposed_net=True,
    )
    assert _read(tmp_path, wrap(hef_proto([group]), 2)).default_group.outputs[0].shape == (7, 3, 1)


def test_mux_predecessors_are_expanded_recursively(tmp_path: Path) -> None:
    inner = mux_body("n/mux_inner", [Layer("n/c"), Layer("n/d")])
    edges = [edge(Layer("n/in"), output=False), mux_edge("n/mux", [Layer("n/a"), inner, Layer("n/b")])]
    group = core("n", [context(edges)], ["n/d", "n/c", "n/b", "n/a"])
    info = _read(tmp_path, wrap(hef_proto([group]), 1))
    assert [o.name for o in info.default_group.outputs] == ["n/d", "n/c", "n/b", "n/a"]


def test_net_flow_core_op_and_multi_layout(tmp_path: Path) -> None:
    out = Layer("n/out", (2, 2, 4))
    core_op = simple_group("n", [out])
    proto = hef_proto([net_flow_group("n", core_op, ["n/out"])], extensions=[13])
    info = _read(tmp_path, wrap(proto, 3))
    assert (info.default_group.name, info.default_group.outputs[0].name) == ("n", "n/out")

    # Hailo-8L: the layers are in the first partial core op, not in the full-chip one.
    full = core(
        "n",
        [context([edge(Layer("n/in"), output=False), edge(Layer("n/full"), output=True)])],
        ["n/out"],
        partials=[simple_group("n", [out])],
    )
    proto = hef_proto([net_flow_group("n", full, ["n/out"])], extensions=[13], hw_arch=3)
    assert [o.name for o in _read(tmp_path, wrap(proto, 3)).default_group.outputs] == ["n/out"]

    nms = msg(8, string(1, "nms_postprocess") + msg(5, uint(1, 1)))
    proto = hef_proto([net_flow_group("n", core_op, ["n/out"], extra_ops=[nms])], extensions=[13])
    assert "post-process ops (nms_postprocess)" in _error(tmp_path, wrap(proto, 3))


def test_multi_layout_legacy_partial_groups(tmp_path: Path) -> None:
    partial = simple_group("lf", [Layer("lf/b"), Layer("lf/a")], sorted_order=["lf/a", "lf/b"])
    proto = hef_proto([core("", [], partials=[partial, partial])], hw_arch=4)  # HAILO15M
    group = _read(tmp_path, wrap(proto, 2)).default_group
    assert (group.name, [o.name for o in group.outputs]) == ("lf", ["lf/a", "lf/b"])
    with pytest.raises(HefError, match="no partial network group"):
        _read(tmp_path, wrap(hef_proto([simple_group("lf", [Layer("lf/a")])], hw_arch=3), 2))


def test_network_names_need_optional_extension_8(tmp_path: Path) -> None:
    group = simple_group("grp", [Layer("sub/out")], networks=["sub"])
    assert _read(tmp_path, wrap(hef_proto([group]), 1)).default_group.network_name == "grp/grp"
    info = _read(tmp_path, wrap(hef_proto([group], optional_extensions=[8]), 1))
    assert info.default_group.network_name == "grp/sub"
    bad = core(
        "grp",
        [context([edge(Layer("in"), output=False), edge(Layer("o"), output=True, network_index=2)])],
        ["o"],
        networks=["sub"],
    )
    assert "refers to network 2" in _error(tmp_path, wrap(hef_proto([bad], optional_extensions=[8]), 1))


def test_per_feature_only_with_extension_25(tmp_path: Path) -> None:
    vectors = Layer("n/o", (2, 2, 3), zps=[1.0, 2.0, 3.0], scales=[0.5, 0.25, 0.125])
    proto = hef_proto([simple_group("n", [vectors], inputs=[Layer("n/in", zps=[9.0] * 2, scales=[9.0] * 2)])])
    (layer,) = _read(tmp_path, wrap(proto, 1)).default_group.outputs
    # Without extension 25 the per-feature vectors are ignored.
    assert not layer.quant.is_per_feature and float(layer.quant.scale) == 0.5

    info = _read(tmp_path, wrap(hef_proto([simple_group("n", [vectors])], extensions=[25]), 1))
    (layer,) = info.default_group.outputs
    np.testing.assert_array_equal(layer.quant.zero_point, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(layer.quant.scale, [0.5, 0.25, 0.125])
    assert not info.default_group.inputs[0].quant.is_per_feature

    short = Layer("n/o", (2, 2, 3), zps=[1.0, 2.0], scales=[0.5, 0.25])
    message = _error(tmp_path, wrap(hef_proto([simple_group("n", [short])], extensions=[25]), 1))
    assert "has 2 zero-points and 2 scales for 3 features" in message


def test_protobuf_version_0_takes_features_from_included_features(tmp_path: Path) -> None:
    vectors = Layer("n/o", (1, 1, 2), zps=[1.0, 2.0], scales=[0.5, 0.25])
    # included_features: is_multi_context (4) -> extension 4, padded_ddr_buffers (7) -> extension 3.
    proto = hef_proto(
        [simple_group("n", [vectors])],
        proto_version=0,
        extensions=[25],
        optional_extensions=[8],
        included_features=uint(4, 1) + uint(7, 1),
    )
    info = _read(tmp_path, wrap(proto, 0))
    assert info.extensions == frozenset({3, 4})  # the `extensions` list is not consulted
    assert not info.default_group.outputs[0].quant.is_per_feature


def test_uint16_layers_and_device_formats(tmp_path: Path) -> None:
    wide = Layer("n/o16", (2, 3, 4), fmt=3, data_bytes=2)
    (layer,) = _read(tmp_path, wrap(hef_proto([simple_group("n", [wide])]), 1)).default_group.outputs
    assert (layer.dtype, layer.device_format, layer.frame_size) == ("uint16", "FCR", 48)
    assert "unknown device format code 9" in _error(
        tmp_path, wrap(hef_proto([simple_group("n", [Layer("n/o", fmt=9)])]), 1)
    )
    assert "4 bytes per element" in _error(
        tmp_path, wrap(hef_proto([simple_group("n", [Layer("n/o", data_bytes=4)])]), 1)
    )


def test_structural_errors(tmp_path: Path) -> None:
    assert "no network group" in _error(tmp_path, wrap(hef_proto([]), 1))
    twice = hef_proto([simple_group("n", [Layer("n/a")]), simple_group("n", [Layer("n/a")])])
    assert "network group name 'n' appears twice" in _error(tmp_path, wrap(twice, 1))
    no_outputs = core("n", [context([edge(Layer("n/in"), output=False)])], ["n/a"])
    assert "has no boundary outputs" in _error(tmp_path, wrap(hef_proto([no_outputs]), 1))
    # A length prefix running past the end of the protobuf.
    assert "malformed metadata protobuf" in _error(tmp_path, wrap(b"\x12\x7f" + b"\0" * 10, 1))


# --- files that are not (valid) HEFs --------------------------------------------------------------


def test_missing_empty_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.hef"
    with pytest.raises(HefError, match=r"nope\.hef: no such file$"):
        read_hef(missing)
    assert "too short to be a HEF (0 bytes" in _error(tmp_path, b"")
    with pytest.raises(HefError, match="is a directory"):
        read_hef(tmp_path)
    # HefError is an input-file error: the CLI exits with ExitCode.INPUT.
    assert issubclass(HefError, InputFileError) and HefError.exit_code == ExitCode.INPUT


def test_wrong_magic_and_version(tmp_path: Path) -> None:
    good = wrap(hef_proto([simple_group("n", [OUT])]), 2)
    assert "not a HEF file (starts with 89 50 4e 47" in _error(tmp_path, b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert "unsupported HEF header version 4" in _error(tmp_path, good[:7] + b"\x04" + good[8:])


@pytest.mark.parametrize(
    "name",
    [
        "mnist_cnn.hailo8.hef",
        "arcface_mobilefacenet.hailo8.hef",
        "lightface_slim.hailo8l.hef",
        "scrfd_2.5g.hailo10h.hef",
    ],
)
def test_real_hef_corruption_is_named(tmp_path: Path, name: str) -> None:
    data = asset_path(f"hef/{name}").read_bytes()
    version = data[7]
    digest = {0: "MD5", 1: "CRC32", 2: "XXH3", 3: "XXH3"}[version]
    flipped = bytearray(data)
    flipped[-1] ^= 0x01  # the last config-word byte (v1-v3) or proto byte (v0)
    message = _error(tmp_path, bytes(flipped), name)
    assert f"checksum mismatch ({digest} of the body is " in message
    assert message.endswith("the file is corrupted or truncated")
    assert "size mismatch" in _error(tmp_path, data[:-1], name)
    assert "size mismatch" in _error(tmp_path, data + b"\0", name)


def test_header_sizes_are_checked(tmp_path: Path) -> None:
    proto = hef_proto([simple_group("n", [OUT])])
    data = bytearray(wrap(proto, 3, v3_padding=64))
    data[28:32] = (10_000).to_bytes(4, "big")  # padding larger than the padded config-word section
    assert "header is inconsistent" in _error(tmp_path, bytes(data))
    assert "truncated: 20 bytes, shorter than the 56-byte v3 header" in _error(tmp_path, bytes(data[:20]))


def test_parse_hef_names_the_source() -> None:
    with pytest.raises(HefError, match=r"^memory\.hef: not a HEF file"):
        parse_hef(b"hello world, this is text", "memory.hef")


def test_rewrap_round_trip() -> None:
    data = asset_path("hef/scrfd_2.5g.hailo10h.hef").read_bytes()
    _version, proto, _tail = split(data)
    assert rewrap(data, proto) == data
    layer: HefLayer = parse_hef(rewrap(data, proto), "x.hef").default_group.outputs[0]
    assert layer.name == "scrfd_2_5g/conv43"
