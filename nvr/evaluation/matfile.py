"""A small reader for MATLAB level-5 MAT-files: just what the WIDER FACE ground truth needs.

The official ground truth ships as four MATLAB 5.0 files of nested cell arrays of strings and numeric
matrices. Reading them with scipy would add a ~40 MB dependency to a Raspberry Pi install for four files;
the subset of the documented v5 format they use (compressed elements, cell, char and numeric arrays) is
small enough to read here. Structs, sparse, complex and object arrays are refused with a clear error.

Values come back as: numeric/logical arrays -> numpy arrays (column-major data, MATLAB's shape),
char arrays -> str (rows joined with newlines), cell arrays -> numpy object arrays of those values.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from nvr.errors import InputFileError

_HEADER_SIZE = 128

# Data element types (the "mi" constants of the format).
_MI_MATRIX = 14
_MI_COMPRESSED = 15
_MI_DTYPES: dict[int, str] = {
    1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8",
    16: "u1", 17: "u2", 18: "u4",  # UTF-8/16/32 text, decoded by the char path
}  # fmt: skip
_MI_UTF8 = 16

# Array classes (the "mx" constants) found in the array-flags subelement.
_MX_CELL = 1
_MX_CHAR = 4
_MX_NUMERIC: dict[int, str] = {
    6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8",
}  # fmt: skip
_FLAG_COMPLEX = 0x0800
_FLAG_LOGICAL = 0x0200


class MatFileError(InputFileError):
    """A file that is not a MAT v5 file, or uses parts of the format this reader does not support."""


class _FormatError(ValueError):
    pass


def load_mat(path: str | Path) -> dict[str, Any]:
    """Read every top-level variable of a MAT v5 file into a dict {name: value}."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MatFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise MatFileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return _parse_file(data)
    except (_FormatError, zlib.error, struct.error, ValueError) as exc:
        raise MatFileError(f"{path}: not a readable MATLAB v5 MAT-file ({exc})") from None


def _parse_file(data: bytes) -> dict[str, Any]:
    if len(data) < _HEADER_SIZE or not data.startswith(b"MATLAB 5.0 MAT-file"):
        raise _FormatError("missing the 'MATLAB 5.0 MAT-file' header")
    endian_mark = data[126:128]
    if endian_mark == b"IM":
        order = "<"
    elif endian_mark == b"MI":
        order = ">"
    else:
        raise _FormatError(f"unknown byte-order mark {endian_mark!r}")
    variables: dict[str, Any] = {}
    pos = _HEADER_SIZE
    while pos + 8 <= len(data):
        mi_type, body, pos = _element(data, pos, order)
        if mi_type == _MI_COMPRESSED:
            # One compressed element holds exactly one uncompressed element (usually a matrix).
            inner = zlib.decompress(body)
            mi_type, body, _ = _element(inner, 0, order)
        if mi_type != _MI_MATRIX:
            continue  # the format allows other top-level elements; none carries a variable
        name, value = _matrix(body, order)
        variables[name] = value
    return variables


def _element(data: bytes, pos: int, order: str) -> tuple[int, bytes, int]:
    """Read the data element at `pos`: (type, body, position of the next element)."""
    (first,) = struct.unpack_from(order + "I", data, pos)
    if first >> 16:
        # Small data element: type and size share the first word, the data sits in the second.
        mi_type, size = first & 0xFFFF, first >> 16
        if size > 4:
            raise _FormatError(f"small element of {size} bytes at offset {pos}")
        return mi_type, data[pos + 4 : pos + 4 + size], pos + 8
    mi_type = first
    (size,) = struct.unpack_from(order + "I", data, pos + 4)
    start = pos + 8
    end = start + size
    if end > len(data):
        raise _FormatError(f"element at offset {pos} runs past the end of the data (truncated file?)")
    # Compressed elements are not padded; all others are padded to a multiple of 8 bytes.
    next_pos = end if mi_type == _MI_COMPRESSED else start + (size + 7) // 8 * 8
    return mi_type, data[start:end], next_pos


def _subelements(body: bytes, order: str) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 8 <= len(body):
        mi_type, sub, pos = _element(body, pos, order)
        out.append((mi_type, sub))
    return out


def _numbers(mi_type: int, raw: bytes, order: str) -> np.ndarray[Any, Any]:
    code = _MI_DTYPES.get(mi_type)
    if code is None:
        raise _FormatError(f"unsupported numeric data type {mi_type}")
    return np.frombuffer(raw, dtype=np.dtype(order + code) if code[1] != "1" else np.dtype(code))


def _matrix(body: bytes, order: str) -> tuple[str, Any]:
    """Decode one miMATRIX body: (array name, value)."""
    if not body:
        return "", np.zeros((0, 0))  # an empty matrix element is legal (e.g. an empty cell entry)
    parts = _subelements(body, order)
    if len(parts) < 3:
        raise _FormatError("matrix element without flags, dimensions and name")
    flags_word = int(_numbers(parts[0][0], parts[0][1], order)[0])
    array_class = flags_word & 0xFF
    dims = tuple(int(d) for d in _numbers(parts[1][0], parts[1][1], order))
    name = parts[2][1].decode("ascii", errors="replace")
    count = int(np.prod(dims)) if dims else 0
    if flags_word & _FLAG_COMPLEX:
        raise _FormatError(f"complex array {name!r} is not supported")
    if array_class == _MX_CELL:
        cells = np.empty(count, dtype=object)
        for i, (mi_type, sub) in enumerate(parts[3 : 3 + count]):
            if mi_type != _MI_MATRIX:
                raise _FormatError(f"cell {name!r} holds a non-matrix element (type {mi_type})")
            cells[i] = _matrix(sub, order)[1]
        return name, cells.reshape(dims, order="F")
    if array_class == _MX_CHAR:
        mi_type, raw = parts[3] if len(parts) > 3 else (_MI_UTF8, b"")
        if mi_type == _MI_UTF8:
            chars = raw.decode("utf-8")
        else:
            chars = "".join(map(chr, _numbers(mi_type, raw, order).tolist()))
        rows = dims[0] if dims else 0
        if rows <= 1:
            return name, chars
        grid = np.array(list(chars), dtype=object).reshape(dims, order="F")
        return name, "\n".join("".join(row) for row in grid)
    if array_class in _MX_NUMERIC:
        mi_type, raw = parts[3]
        values = _numbers(mi_type, raw, order).astype(
            bool if flags_word & _FLAG_LOGICAL else _MX_NUMERIC[array_class]
        )
        if values.size != count:
            raise _FormatError(f"array {name!r} has {values.size} values for dimensions {dims}")
        return name, values.reshape(dims, order="F")
    raise _FormatError(f"array {name!r} has unsupported class {array_class} (struct, object or sparse)")
