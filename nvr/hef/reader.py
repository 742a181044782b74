"""Read a `.hef` file's metadata without HailoRT: what HailoRT's `HEF(path)` reports about its vstreams.

The walk mirrors HailoRT 4.23's `hef.cpp` (`fill_core_ops`, `fill_networks_metadata`, `fill_layer_info`,
`get_output_vstream_infos`); ../shared/reference/hailort.md §2 lists the field paths and rules. Only the
protobuf is parsed; the config words after it are hashed for the integrity check and never decoded.

Every problem with the file (missing, unreadable, truncated, corrupted, not a HEF, or metadata HailoRT
would refuse) raises `HefError` with a one-line message that names the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nvr.contracts.tensors import QuantInfo
from nvr.errors import InputFileError
from nvr.hef.header import PREFIX_SIZE, HeaderError, check_prefix, parse_header
from nvr.hef.model import HefInfo, HefLayer, HwArch, NetworkGroup
from nvr.hef.protobuf import Message, ProtoError

# Extension type indexes (`ProtoHEFExtensionType`).
EXT_MULTI_NETWORK = 8  # MULTI_NETWORK_VARIABLE_BATCH_SIZE; an *optional* extension
EXT_NET_FLOW = 13  # HAILO_NET_FLOW: the core op sits in `ops`
EXT_OUTPUT_SCALE_PER_FEATURE = 25

# A protobuf header `version` of 0 lists features as booleans (ProtoHEFIncludedFeatures field -> extension).
_INCLUDED_FEATURE_EXTENSIONS = {1: 0, 2: 1, 3: 2, 4: 4, 5: 5, 6: 6, 7: 3}

# Chips with partial-cluster layouts: their layers live in the first partial network group / core op.
_MULTI_LAYOUT_ARCHS = frozenset({HwArch.HAILO8L, HwArch.HAILO15M})

# `ProtoHEFEdgeLayerBase.format` -> HailoRT device format order (`HailoRTDefaults::get_device_format_order`).
_DEVICE_FORMATS = {
    0: "NHWC", 1: "NHCW", 2: "NC", 3: "FCR", 4: "BAYER_RGB", 5: "NHW", 6: "HAILO_NMS_ON_CHIP", 7: "F8CR",
    8: "RGB888", 11: "YUY2", 13: "NHWC", 14: "HAILO_YYUV", 15: "HAILO_YYVU", 16: "HAILO_YYYYUV",
}  # fmt: skip
_PLANES_FORMATS = {0: "NV12", 1: "NV21", 2: "I420"}
_DTYPES = {1: "uint8", 2: "uint16"}
_NMS_QP_COUNT = 3  # HailoRT's NMS_NUMBER_OF_QPS: per-feature vectors of an NMS layer have 3 entries
_MAX_NAME_BYTES = 127  # HAILO_MAX_STREAM_NAME_SIZE minus the terminating NUL
_MAX_MUX_DEPTH = 16  # real muxes nest once or twice; bounds recursion on a hostile file

_BOUNDARY = 0
_DEVICE_TO_HOST = 1
_EDGE_INFO, _EDGE_MUX, _EDGE_PLANES = 0, 1, 2


class HefError(InputFileError):
    """A .hef file that is missing, truncated, corrupted or not a HEF; the message names the file."""


class _MetadataError(ValueError):
    """Metadata HailoRT would refuse; the message says what (read_hef adds the file name)."""


def read_hef(path: str | Path) -> HefInfo:
    """Read and validate a HEF file: header, integrity check, network groups and their vstreams."""
    path = Path(path)
    return parse_hef(_load(path), path)


def parse_hef(data: bytes, source: str | Path) -> HefInfo:
    """Validate and decode the bytes of a whole HEF file; `source` names it in errors and in the result."""
    path = Path(source)
    try:
        header = parse_header(data)
    except HeaderError as exc:
        raise HefError(f"{path}: {exc}") from None
    try:
        proto = Message(data, header.header_size, header.header_size + header.proto_size)
        return _decode(path, header.version, proto)
    except ProtoError as exc:
        raise HefError(f"{path}: malformed metadata protobuf ({exc}): the file is corrupted") from None
    except _MetadataError as exc:
        raise HefError(f"{path}: {exc}") from None


def _load(path: Path) -> bytes:
    """The file's bytes; anything that is not a HEF is refused after its first bytes, not read whole."""
    try:
        with path.open("rb") as file:
            prefix = file.read(PREFIX_SIZE)
            check_prefix(prefix)
            return prefix + file.read()
    except HeaderError as exc:
        raise HefError(f"{path}: {exc}") from None
    except FileNotFoundError:
        raise HefError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise HefError(f"{path}: is a directory, not a .hef file") from None
    except PermissionError:
        raise HefError(f"{path}: permission denied") from None
    except OSError as exc:
        raise HefError(f"{path}: cannot read ({exc.strerror or exc})") from None


@dataclass(frozen=True, slots=True)
class _Features:
    hw_arch: int
    extensions: frozenset[int]
    optional_extensions: frozenset[int]

    @property
    def net_flow(self) -> bool:
        return EXT_NET_FLOW in self.extensions

    @property
    def per_feature(self) -> bool:
        return EXT_OUTPUT_SCALE_PER_FEATURE in self.extensions

    @property
    def multi_network(self) -> bool:
        return EXT_MULTI_NETWORK in self.optional_extensions

    @property
    def multi_layout(self) -> bool:
        return self.hw_arch in _MULTI_LAYOUT_ARCHS


def _decode(path: Path, header_version: int, hef: Message) -> HefInfo:
    proto_header = hef.message(1)
    hw_arch = proto_header.int32(1)
    # The protobuf header's own version decides where the feature list lives (not the file header's).
    if proto_header.uint(4) == 0:
        included = hef.message(4)
        extensions = frozenset(
            ext for field, ext in _INCLUDED_FEATURE_EXTENSIONS.items() if included.bool(field)
        )
        optional: frozenset[int] = frozenset()
    else:
        extensions = frozenset(ext.uint(1) for ext in hef.messages(5))
        optional = frozenset(ext.uint(1) for ext in hef.messages(6))
    features = _Features(hw_arch, extensions, optional)

    protos = hef.messages(2)
    if not protos:
        raise _MetadataError("the HEF contains no network group")
    # HailoRT moves groups out of the message with ReleaseLast(): its first group is the last one here.
    groups = tuple(_network_group(proto, features) for proto in reversed(protos))
    names = [group.name for group in groups]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise _MetadataError(f"network group name {duplicate!r} appears twice")
    return HefInfo(
        path=path,
        header_version=header_version,
        hw_arch=hw_arch,
        sdk_version=proto_header.string(3),
        extensions=extensions,
        network_groups=groups,
    )


def _network_group(ng: Message, features: _Features) -> NetworkGroup:
    partials = ng.messages(7)
    name = (partials[0].message(1) if partials else ng).message(1).string(1)
    label = f"network group {name!r}" if name else "an unnamed network group"

    # The core op: the group itself, or (net-flow HEFs) the op that holds it.
    if features.net_flow:
        ops = ng.messages(8)
        post_process = [op.string(1) or "unnamed" for op in ops if op.has(5) or op.has(6)]
        if post_process:
            raise _MetadataError(
                f"{label} ends in HailoRT post-process ops ({', '.join(post_process)}); this reader lists "
                "core outputs only and does not support such HEFs"
            )
        core = next((op.message(4) for op in ops if op.has(4)), None)
        if core is None:
            raise _MetadataError(f"{label} is a net-flow group without a core op")
        layer_op = core
        if features.multi_layout:
            partial_ops = core.messages(7)
            if not partial_ops:
                raise _MetadataError(f"{label} has no partial core op for its multi-layout architecture")
            layer_op = partial_ops[0].message(1)
    else:
        core = layer_op = ng
        if features.multi_layout:
            if not partials:
                raise _MetadataError(
                    f"{label} has no partial network group for its multi-layout architecture"
                )
            layer_op = partials[0].message(1)

    layer_meta = layer_op.message(1)
    networks = layer_op.strings(6) if features.multi_network else []
    inputs, outputs = _boundary_layers(layer_op, features, label)
    if not inputs or not outputs:
        raise _MetadataError(f"{label} has no boundary {'inputs' if not inputs else 'outputs'}")
    order = _sorted_output_names(ng, core, layer_op, partials, features=features, label=label)
    rank = {output_name: index for index, output_name in enumerate(order)}
    missing = [layer.name for layer in outputs if layer.name not in rank]
    if missing:
        raise _MetadataError(f"{label}: output {missing[0]!r} is missing from the HEF's sorted output order")
    group_name = layer_meta.string(1)
    return NetworkGroup(
        name=name,
        network_name=f"{group_name}/{networks[0] if networks else group_name}",
        inputs=tuple(inputs),
        outputs=tuple(sorted(outputs, key=lambda layer: rank[layer.name])),
    )


def _sorted_output_names(
    ng: Message, core: Message, layer_op: Message, partials: list[Message], *, features: _Features, label: str
) -> list[str]:
    """HailoRT's output order: the first non-empty of four places, newest HEFs first."""
    fused = core.message(5)
    if fused.bool(1):
        return fused.strings(2)
    if not features.net_flow and partials:
        legacy = partials[0].message(1).strings(4)
        if legacy:
            return legacy
    order = ng.strings(4)
    if order:
        return order
    # Very old HEFs keep it in the last context's metadata.
    contexts = core.messages(3) or layer_op.messages(3)
    order = contexts[-1].message(3).strings(5) if contexts else []
    if not order:
        raise _MetadataError(f"{label} has no sorted output order")
    return order


def _boundary_layers(core: Message, features: _Features, label: str) -> tuple[list[HefLayer], list[HefLayer]]:
    """The host-visible streams of a core op: boundary edge layers of every context, muxes expanded."""
    transposed_net = core.message(1).bool(3)
    networks = core.strings(6)
    inputs: list[HefLayer] = []
    outputs: list[HefLayer] = []
    seen: set[tuple[bool, str]] = set()
    for context in core.messages(3):
        for edge in context.message(3).messages(2):
            if edge.message(5).int32(3) != _BOUNDARY:
                continue
            is_output = edge.int32(1) == _DEVICE_TO_HOST
            if features.multi_network and edge.uint(6) >= len(networks):
                raise _MetadataError(
                    f"{label}: edge layer refers to network {edge.uint(6)}, it has {len(networks)}"
                )
            for layer in _edge_layers(edge, is_output, transposed_net, features, label):
                if (is_output, layer.name) not in seen:
                    seen.add((is_output, layer.name))
                    (outputs if is_output else inputs).append(layer)
    return inputs, outputs


def _edge_layers(
    edge: Message, is_output: bool, transposed_net: bool, features: _Features, label: str
) -> Iterator[HefLayer]:
    kind = edge.int32(2)
    if kind == _EDGE_INFO:
        yield _layer(edge.message(3), is_output, transposed_net, features, label)
    elif kind == _EDGE_MUX:
        yield from _mux_predecessors(
            edge.message(4), is_output, transposed_net, features, label=label, depth=0
        )
    elif kind == _EDGE_PLANES:
        yield _planes_layer(edge.message(8), label)
    else:
        raise _MetadataError(f"{label}: edge layer of unknown type {kind}")


def _mux_predecessors(
    mux: Message, is_output: bool, transposed_net: bool, features: _Features, *, label: str, depth: int
) -> Iterator[HefLayer]:
    """A mux carries several streams on one channel; the vstreams are its (possibly nested) predecessors."""
    if depth >= _MAX_MUX_DEPTH:
        raise _MetadataError(f"{label}: mux layers nested more than {_MAX_MUX_DEPTH} deep")
    for edge in mux.messages(5):
        if edge.has(1):
            yield _layer(edge.message(1), is_output, transposed_net, features, label)
        elif edge.has(2):
            nested = edge.message(2)
            yield from _mux_predecessors(
                nested, is_output, transposed_net, features, label=label, depth=depth + 1
            )
        else:
            raise _MetadataError(
                f"{label}: a predecessor of mux {mux.string(1)!r} is neither a layer nor a mux"
            )


def _layer(info: Message, is_output: bool, transposed_net: bool, features: _Features, label: str) -> HefLayer:
    name = info.string(1)
    if not name or len(name.encode()) > _MAX_NAME_BYTES:
        raise _MetadataError(
            f"{label}: an edge layer has {'no name' if not name else 'a name over 127 bytes'}"
        )
    base = info.message(2)
    format_code = base.uint(7)
    device_format = _DEVICE_FORMATS.get(format_code)
    if device_format is None:
        raise _MetadataError(f"layer {name!r} has unknown device format code {format_code}")
    dtype = _DTYPES.get(base.uint(12))
    if dtype is None:
        raise _MetadataError(
            f"layer {name!r} has {base.uint(12)} bytes per element (HailoRT supports 1 and 2)"
        )
    if base.bool(14):
        raise _MetadataError(
            f"layer {name!r} uses the legacy host argmax, which HailoRT refuses: recompile it"
        )
    height, width, features_count = base.uint(1), base.uint(3), base.uint(5)
    if (transposed_net or info.bool(6)) and device_format != "NC":
        height, width = width, height

    numeric = info.message(3)
    limvals = (numeric.float32(3), numeric.float32(4))
    if features.per_feature and is_output:
        count = _NMS_QP_COUNT if device_format == "HAILO_NMS_ON_CHIP" else features_count
        zps, scales = numeric.doubles(5), numeric.doubles(6)
        if len(zps) != count or len(scales) != count:
            raise _MetadataError(
                f"layer {name!r} has {len(zps)} zero-points and {len(scales)} scales for {count} features"
            )
        quant = QuantInfo.per_feature(scales, zps)
    else:
        # Without extension 25 the vectors may still hold copies of the scalar: HailoRT ignores them.
        quant = QuantInfo.per_tensor(numeric.float32(2), numeric.float32(1))
    return HefLayer(
        name=name,
        shape=(height, width, features_count),
        dtype=dtype,
        device_format=device_format,
        quant=quant,
        limvals=limvals,
    )


def _planes_layer(planes: Message, label: str) -> HefLayer:
    """A multi-planar input (NV12, NV21, I420): one logical vstream, without quantization."""
    name = planes.string(1)
    planes_format = _PLANES_FORMATS.get(planes.int32(2))
    if not name or planes_format is None:
        raise _MetadataError(f"{label}: malformed multi-planar layer {name!r}")
    return HefLayer(
        name=name,
        shape=(planes.uint(4), planes.uint(5), planes.uint(6)),
        dtype="uint8",
        device_format=planes_format,
        quant=QuantInfo.per_tensor(0.0, 0.0),
        limvals=(0.0, 0.0),
    )
