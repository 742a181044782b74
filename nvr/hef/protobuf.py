"""A tiny, lazy reader of the protobuf wire format: just what the HEF reader needs, no schema compiler.

A `Message` indexes the fields of one message level (field number -> raw values) without descending
into nested messages; accessors decode a field when asked. So reading a few metadata fields of a large
HEF costs time proportional to what is read, not to the size of the embedded configuration data.

Decoding follows the C++ protobuf runtime where it matters for agreeing with HailoRT: the last value of
a singular field wins, a field whose wire type does not match the schema is ignored as unknown, repeated
scalars may be packed or not, and proto3 strings must be valid UTF-8. Any structural damage (a varint or
a length running past the end, an invalid wire type) raises `ProtoError`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT, FIXED64, LEN, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5

_MAX_VARINT_BYTES = 10
_FLOAT32 = struct.Struct("<f")
_FLOAT64 = struct.Struct("<d")


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message."""


def read_varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; returns (value, position after it)."""
    result = 0
    shift = 0
    limit = min(end, pos + _MAX_VARINT_BYTES)
    while pos < limit:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >> 64:
                raise ProtoError(f"varint at byte {pos} overflows 64 bits")
            return result, pos
        shift += 7
    if pos >= end:
        raise ProtoError(f"varint runs past the end of its message at byte {pos}")
    raise ProtoError(f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {pos}")


# One raw field value: varint/fixed values as int, length-delimited as a (start, end) slice of `data`.
_Raw = tuple[int, int | tuple[int, int]]


class Message:
    """One protobuf message inside `data[start:end]`, with its fields indexed but not decoded."""

    __slots__ = ("_data", "_fields", "end", "start")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self._data = data
        self.start = start
        self.end = len(data) if end is None else end
        self._fields: dict[int, list[_Raw]] = {}
        self._index()

    @classmethod
    def empty(cls) -> Message:
        """An absent sub-message: every field has its default value (proto3 semantics)."""
        return cls(b"")

    def _index(self) -> None:
        data, pos, end = self._data, self.start, self.end
        fields = self._fields
        while pos < end:
            key, pos = read_varint(data, pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise ProtoError(f"field number 0 at byte {pos}")
            value: int | tuple[int, int]
            if wire == VARINT:
                value, pos = read_varint(data, pos, end)
            elif wire == LEN:
                length, pos = read_varint(data, pos, end)
                if length > end - pos:
                    raise ProtoError(f"field {number} claims {length} bytes, only {end - pos} remain")
                value = (pos, pos + length)
                pos += length
            elif wire in (FIXED32, FIXED64):
                size = 4 if wire == FIXED32 else 8
                if size > end - pos:
                    raise ProtoError(f"fixed-width field {number} runs past the end of its message")
                value = int.from_bytes(data[pos : pos + size], "little")
                pos += size
            else:
                # Groups (3, 4) are deprecated and never used by HEFs; 6 and 7 are not wire types.
                raise ProtoError(f"unsupported wire type {wire} for field {number}")
            fields.setdefault(number, []).append((wire, value))

    def _values(self, number: int, wire: int) -> Iterator[int | tuple[int, int]]:
        # A value with the wrong wire type is an unknown field to the C++ runtime: skip it.
        for raw_wire, value in self._fields.get(number, ()):
            if raw_wire == wire:
                yield value

    def _last(self, number: int, wire: int) -> int | tuple[int, int] | None:
        last = None
        for value in self._values(number, wire):
            last = value
        return last

    def has(self, number: int) -> bool:
        """Whether a length-delimited field (a sub-message, e.g. one branch of a oneof) is present."""
        return any(wire == LEN for wire, _value in self._fields.get(number, ()))

    # --- sub-messages -------------------------------------------------------------------------

    def message(self, number: int) -> Message:
        """A singular sub-message; an empty one when absent. (Last occurrence; HEFs never split them.)"""
        span = self._last(number, LEN)
        if span is None:
            return Message.empty()
        assert isinstance(span, tuple)
        return Message(self._data, span[0], span[1])

    def messages(self, number: int) -> list[Message]:
        return [Message(self._data, span[0], span[1]) for span in self._spans(number)]

    def _spans(self, number: int) -> Iterator[tuple[int, int]]:
        for value in self._values(number, LEN):
            assert isinstance(value, tuple)
            yield value

    # --- scalars ------------------------------------------------------------------------------

    def uint(self, number: int) -> int:
        value = self._last(number, VARINT)
        assert value is None or isinstance(value, int)
        return value or 0

    def int32(self, number: int) -> int:
        """A protobuf int32/enum: negative values travel as 64-bit two's complement."""
        value = self.uint(number) & 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value

    def bool(self, number: int) -> bool:
        return self.uint(number) != 0

    def float32(self, number: int) -> float:
        value = self._last(number, FIXED32)
        assert value is None or isinstance(value, int)
        return 0.0 if value is None else float(_FLOAT32.unpack(value.to_bytes(4, "little"))[0])

    def string(self, number: int) -> str:
        span = self._last(number, LEN)
        if span is None:
            return ""
        assert isinstance(span, tuple)
        return self._decode_utf8(number, span)

    def strings(self, number: int) -> list[str]:
        return [self._decode_utf8(number, span) for span in self._spans(number)]

    def doubles(self, number: int) -> list[float]:
        """A `repeated double`, packed (one length-delimited run) or one fixed64 value per entry."""
        out: list[float] = []
        for wire, value in self._fields.get(number, ()):
            if wire == LEN:
                assert isinstance(value, tuple)
                start, stop = value
                if (stop - start) % 8:
                    raise ProtoError(
                        f"packed double field {number} is {stop - start} bytes, not a multiple of 8"
                    )
                out.extend(v for (v,) in _FLOAT64.iter_unpack(self._data[start:stop]))
            elif wire == FIXED64:
                assert isinstance(value, int)
                out.append(_FLOAT64.unpack(value.to_bytes(8, "little"))[0])
        return out

    def _decode_utf8(self, number: int, span: tuple[int, int]) -> str:
        try:
            return bytes(self._data[span[0] : span[1]]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtoError(f"string field {number} is not valid UTF-8 ({exc.reason})") from None
