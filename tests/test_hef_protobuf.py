"""The tiny protobuf decoder behind the HEF reader: wire format, proto3 defaults, and damage detection."""

from __future__ import annotations

import struct

import pytest
from hef_synth import f32, key, msg, packed_doubles, string, uint, varint

from nvr.hef.protobuf import Message, ProtoError, read_varint


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32 - 1, 2**63, 2**64 - 1])
def test_varint_round_trip(value: int) -> None:
    encoded = varint(value)
    assert read_varint(encoded, 0, len(encoded)) == (value, len(encoded))


def test_varint_damage() -> None:
    with pytest.raises(ProtoError, match="runs past the end"):
        read_varint(b"\x80\x80", 0, 2)
    with pytest.raises(ProtoError, match="overflows 64 bits"):
        read_varint(b"\xff" * 9 + b"\x7f", 0, 10)
    with pytest.raises(ProtoError, match="longer than 10 bytes"):
        read_varint(b"\x80" * 11 + b"\x01", 0, 12)


def test_fields_and_defaults() -> None:
    inner = string(1, "conv42") + uint(2, 7)
    data = (
        uint(1, 3)
        + f32(2, 0.25)
        + msg(3, inner)
        + msg(3, inner + uint(2, 9))
        + string(4, "é")
        + uint(5, 2**64 - 1)
    )
    message = Message(data)
    assert message.uint(1) == 3 and message.bool(1)
    assert message.float32(2) == 0.25
    assert [m.string(1) for m in message.messages(3)] == ["conv42", "conv42"]
    assert message.message(3).uint(2) == 9  # last value of a singular field wins
    assert message.string(4) == "é" and message.strings(4) == ["é"]
    assert message.int32(5) == -1  # a negative enum
    # proto3 defaults for absent fields, and an empty sub-message.
    assert (message.uint(9), message.float32(9), message.string(9), message.strings(9)) == (0, 0.0, "", [])
    assert message.message(9).uint(1) == 0 and not message.has(9) and message.has(3)


def test_wrong_wire_type_is_an_unknown_field() -> None:
    # As in the C++ runtime: field 1 as fixed32 is not the varint the schema wants; it is skipped.
    message = Message(key(1, 5) + struct.pack("<I", 5) + string(2, "x"))
    assert message.uint(1) == 0 and message.string(2) == "x"
    assert message.message(1).uint(1) == 0 and not message.has(1)


def test_repeated_doubles_packed_or_not() -> None:
    unpacked = b"".join(key(6, 1) + struct.pack("<d", v) for v in (1.5, -2.0))
    message = Message(packed_doubles(6, [0.5, 0.25]) + unpacked)
    assert message.doubles(6) == [0.5, 0.25, 1.5, -2.0]
    with pytest.raises(ProtoError, match="not a multiple of 8"):
        Message(string(6, b"\0" * 12)).doubles(6)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (key(1, 2) + varint(10) + b"short", "claims 10 bytes, only 5 remain"),
        (key(1, 5) + b"\0\0", "runs past the end"),
        (key(1, 3), "unsupported wire type 3"),
        (key(1, 7), "unsupported wire type 7"),
        (b"\x00\x01", "field number 0"),
        (uint(1, 1) + b"\x80", "runs past the end"),
    ],
)
def test_damage_is_detected(data: bytes, error: str) -> None:
    with pytest.raises(ProtoError, match=error):
        Message(data)


def test_invalid_utf8_string() -> None:
    message = Message(string(1, b"\xff\xfe"))
    with pytest.raises(ProtoError, match="not valid UTF-8"):
        message.string(1)


def test_sub_messages_are_bounded_by_their_length() -> None:
    # A sub-message whose content claims more bytes than its own length fails, even if the parent has them.
    inner = key(1, 2) + varint(4) + b"ab"
    data = key(2, 2) + varint(len(inner)) + inner + string(3, "cd")
    with pytest.raises(ProtoError, match="claims 4 bytes, only 2 remain"):
        Message(data).message(2)
