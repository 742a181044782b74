"""Build HEF bytes for tests: a minimal protobuf encoder and the four header versions with their checksums.

Real HEFs cover header v0-v3, multi-layout and per-feature quantization; these synthetic ones reach the
paths no available file uses (net-flow ops, muxes, several groups, transposed layers, fused order...).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import xxhash

from nvr.hef.header import HEADER_SIZES, MAGIC

# --- protobuf encoder -------------------------------------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/enum values travel as 64-bit two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def uint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def f32(number: int, value: float) -> bytes:
    return key(number, 5) + struct.pack("<f", value)


def string(number: int, value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return key(number, 2) + varint(len(raw)) + raw


def msg(number: int, *parts: bytes) -> bytes:
    return string(number, b"".join(parts))


def packed_doubles(number: int, values: Iterable[float]) -> bytes:
    values = list(values)
    return string(number, struct.pack(f"<{len(values)}d", *values))


def strings(number: int, values: Iterable[str]) -> bytes:
    return b"".join(string(number, value) for value in values)


# --- HEF model pieces -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    name: str
    shape: tuple[int, int, int] = (4, 4, 2)
    fmt: int = 1  # NHCW
    data_bytes: int = 1
    zp: float = 3.0
    scale: float = 0.5
    limvals: tuple[float, float] = (-1.5, 126.0)
    zps: Sequence[float] = ()
    scales: Sequence[float] = ()
    transposed: bool = False

    def info(self) -> bytes:
        h, w, c = self.shape
        base = uint(1, h) + uint(2, h) + uint(3, w) + uint(4, w) + uint(5, c) + uint(6, c)
        base += uint(7, self.fmt) + uint(12, self.data_bytes)
        numeric = f32(1, self.zp) + f32(2, self.scale) + f32(3, self.limvals[0]) + f32(4, self.limvals[1])
        if self.zps:
            numeric += packed_doubles(5, self.zps)
        if self.scales:
            numeric += packed_doubles(6, self.scales)
        body = string(1, self.name) + msg(2, base) + msg(3, numeric) + string(4, "hw_" + self.name)
        return body + (uint(6, 1) if self.transposed else b"")


def edge(layer: Layer, *, output: bool, connection: int = 0, network_index: int = 0) -> bytes:
    """A `ProtoHEFEdgeLayer` of type INFO."""
    return (
        uint(1, 1 if output else 0)
        + uint(2, 0)
        + msg(3, layer.info())
        + msg(5, uint(3, connection))
        + uint(6, network_index)
    )


def mux_edge(name: str, predecessors: Sequence[Layer | bytes], *, output: bool = True) -> bytes:
    """A MUX edge layer; a `bytes` predecessor is a nested mux body made with `mux_body`."""
    return (
        uint(1, 1 if output else 0) + uint(2, 1) + msg(4, mux_body(name, predecessors)) + msg(5, uint(3, 0))
    )


def mux_body(name: str, predecessors: Sequence[Layer | bytes]) -> bytes:
    parts = [string(1, name), msg(2, uint(1, 1) + uint(3, 1) + uint(5, 1) + uint(12, 1))]
    for pred in predecessors:
        parts.append(msg(5, msg(1, pred.info()) if isinstance(pred, Layer) else msg(2, pred)))
    return b"".join(parts)


def context(edges: Iterable[bytes], sorted_order: Iterable[str] = ()) -> bytes:
    """A `ProtoHEFContext` whose metadata holds the given edge layers."""
    metadata = b"".join(msg(2, e) for e in edges) + strings(5, sorted_order)
    return uint(1, 0) + msg(3, metadata)


def core(
    name: str,
    contexts: Iterable[bytes],
    sorted_order: Iterable[str] = (),
    *,
    networks: Iterable[str] = (),
    transposed_net: bool = False,
    fused_order: Iterable[str] | None = None,
    partials: Iterable[bytes] = (),
) -> bytes:
    """A `ProtoHEFNetworkGroup` or `ProtoHEFCoreOp` body (they share field numbers 1, 3-7)."""
    meta = string(1, name) + (uint(3, 1) if transposed_net else b"")
    body = msg(1, meta) + b"".join(msg(3, c) for c in contexts) + strings(4, sorted_order)
    if fused_order is not None:
        body += msg(5, uint(1, 1) + strings(2, fused_order))
    body += strings(6, networks)
    body += b"".join(msg(7, msg(1, p) + msg(2, uint(1, 0x33))) for p in partials)
    return body


def simple_group(
    name: str,
    outputs: Sequence[Layer],
    inputs: Sequence[Layer] = (),
    *,
    sorted_order: Sequence[str] | None = None,
    networks: Iterable[str] = (),
) -> bytes:
    """One group, one context: the inputs (a default 8x8x3 one if none) and `outputs`, in that order."""
    inputs = inputs or [Layer(f"{name}/input_layer1", (8, 8, 3), zp=0.0, scale=1.0, limvals=(0.0, 255.0))]
    edges = [edge(layer, output=False) for layer in inputs] + [edge(layer, output=True) for layer in outputs]
    order = [layer.name for layer in outputs] if sorted_order is None else sorted_order
    return core(name, [context(edges)], order, networks=networks)


def hef_proto(
    groups: Iterable[bytes],
    *,
    hw_arch: int = 1,
    proto_version: int = 5,
    extensions: Iterable[int] = (),
    optional_extensions: Iterable[int] = (),
    included_features: bytes = b"",
    sdk: str = "3.29.0",
    ops_groups: bool = False,
) -> bytes:
    """A `ProtoHEFHef`. With `ops_groups` the group bodies are already net-flow `ProtoHEFNetworkGroup`s."""
    header = uint(1, hw_arch) + uint(2, 1700000000) + string(3, sdk) + uint(4, proto_version)
    body = msg(1, header) + b"".join(msg(2, g) for g in groups)
    if included_features:
        body += msg(4, included_features)
    body += b"".join(msg(5, uint(1, e) + string(2, f"ext{e}")) for e in extensions)
    body += b"".join(msg(6, uint(1, e) + string(2, f"opt{e}")) for e in optional_extensions)
    return body


def net_flow_group(
    name: str, core_op: bytes, sorted_order: Iterable[str] = (), *, extra_ops: Iterable[bytes] = ()
) -> bytes:
    """A net-flow `ProtoHEFNetworkGroup`: metadata for the name, the core op inside `ops`."""
    body = msg(1, string(1, name)) + strings(4, sorted_order)
    return body + msg(8, string(1, name + "_core") + msg(4, core_op)) + b"".join(extra_ops)


# --- HEF container ----------------------------------------------------------------------------------


def wrap(
    proto: bytes, version: int, ccws: bytes = b"\xa5" * 64, *, v3_padding: int = 0, v3_extra: int = 0
) -> bytes:
    """A complete HEF: header `version` with correct sizes and checksum, then proto, then config words."""
    if version == 0:
        body = proto
        rest = struct.pack(">I16s", 0, hashlib.md5(body).digest())
    elif version == 1:
        body = proto + ccws
        rest = struct.pack(">IQI", zlib.crc32(body), len(ccws), 0)
    elif version == 2:
        body = proto + ccws
        rest = struct.pack(">QQQQ", xxhash.xxh3_64_intdigest(body), len(ccws), 7, 0)
    else:
        body = proto + b"\0" * v3_padding + ccws + b"\x5a" * v3_extra
        rest = struct.pack(
            ">QQIQQQ", xxhash.xxh3_64_intdigest(body), v3_padding + len(ccws), v3_padding, v3_extra, 9, 0
        )
    header = struct.pack(">4sII", MAGIC, version, len(proto)) + rest
    assert len(header) == HEADER_SIZES[version]
    return header + body


def split(data: bytes) -> tuple[int, bytes, bytes]:
    """(header version, proto, everything after the proto) of a HEF."""
    version, proto_size = struct.unpack_from(">II", data, 4)
    start = HEADER_SIZES[version]
    return version, data[start : start + proto_size], data[start + proto_size :]


def rewrap(data: bytes, proto: bytes) -> bytes:
    """`data` (a valid HEF) with its protobuf replaced and the header's size and checksum recomputed."""
    version, _old, tail = split(data)
    head = bytearray(data[: HEADER_SIZES[version]])
    struct.pack_into(">I", head, 8, len(proto))
    body = proto + tail
    if version == 0:
        head[16:32] = hashlib.md5(body).digest()
    elif version == 1:
        struct.pack_into(">I", head, 12, zlib.crc32(body))
    else:
        struct.pack_into(">Q", head, 12, xxhash.xxh3_64_intdigest(body))
    return bytes(head) + body


# Header byte ranges no check covers (HailoRT does not validate them either).
RESERVED_HEADER_BYTES: dict[int, range] = {
    0: range(12, 16),
    1: range(24, 28),
    2: range(28, 44),
    3: range(40, 56),
}


# --- a synthetic Hailo-8 build of a real HEF ------------------------------------------------------------

SYNTHETIC_LABEL = "SYNTHETIC: hw_arch rewritten by tests/hef_synth.py, not a Dataflow Compiler build"


def retarget(data: bytes, hw_arch: int, label: str = SYNTHETIC_LABEL) -> bytes:
    """`data` (a valid HEF) claiming chip `hw_arch`, its SDK version string replaced by `label`.

    Everything else (layers, order, quantization, header version) stays the real file's. The new header
    message is the old one with two overriding fields appended; it goes last in the protobuf, where the
    last occurrence of a singular field wins (protobuf semantics; HailoRT and nvr's reader agree).
    """
    from nvr.hef.protobuf import Message

    _version, proto, _tail = split(data)
    top = Message(proto)
    old = top.message(1)
    header = proto[old.start : old.end] + uint(1, hw_arch) + string(3, label)
    return rewrap(data, proto + msg(1, header))


def synthetic_hailo8_scrfd(source: str | bytes | object, target: object) -> None:
    """Write a Hailo-8 (hw_arch 1, HAILO8P) copy of the real Hailo-10H SCRFD-2.5G HEF to `target`.

    Why: no real chip runs both our SCRFD HEF (a Hailo-10H build, the only one available) and the ArcFace
    HEF (a Hailo-8 build); tests that put both networks on one simulated Hailo-8 use this copy, labelled
    SYNTHETIC in its SDK version string (`nvr models inspect` shows it).
    """
    from pathlib import Path

    Path(str(target)).write_bytes(retarget(Path(str(source)).read_bytes(), 1))
