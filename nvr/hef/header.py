"""The fixed binary header in front of a HEF's protobuf, and the integrity check each version carries.

Layout (big-endian, packed): `magic, version, hef_proto_size` (3 x u32), then per version:

- v0 (32 bytes): u32 reserved, u8 md5[16]; MD5 of the protobuf, which fills the rest of the file.
- v1 (28 bytes): u32 crc32, u64 ccws_size, u32 reserved; CRC32 of everything after the header.
- v2 (44 bytes): u64 xxh3, u64 ccws_size, u64 reserved x2; XXH3-64 of everything after the header.
- v3 (56 bytes): u64 xxh3, u64 ccws_size_with_padding, u32 padding, u64 additional_info_size,
  u64 reserved x2; XXH3-64 of everything after the header.

In every version the protobuf starts right after the header; what follows it (config words, padding,
additional info) must account exactly for the rest of the file, as HailoRT checks.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

import xxhash

MAGIC = b"\x01HEF"
_COMMON = struct.Struct(">4sII")
_V0 = struct.Struct(">I16s")
_V1 = struct.Struct(">IQI")
_V2 = struct.Struct(">QQQQ")
_V3 = struct.Struct(">QQIQQQ")
HEADER_SIZES: dict[int, int] = {0: 32, 1: 28, 2: 44, 3: 56}


class HeaderError(ValueError):
    """The header is missing, not a HEF's, or does not match the file; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class HefHeader:
    version: int
    header_size: int
    proto_size: int


PREFIX_SIZE = _COMMON.size  # magic, version and proto size: enough to tell a HEF from anything else


def check_prefix(data: bytes) -> tuple[int, int, int]:
    """Check the magic and the version at the start of `data`; returns (version, header size, proto size)."""
    if len(data) < PREFIX_SIZE:
        raise HeaderError(f"too short to be a HEF ({len(data)} bytes; the header alone is at least 28 bytes)")
    magic, version, proto_size = _COMMON.unpack_from(data)
    if magic != MAGIC:
        raise HeaderError(f"not a HEF file (starts with {magic.hex(' ')}, a HEF starts with 01 48 45 46)")
    header_size = HEADER_SIZES.get(version)
    if header_size is None:
        raise HeaderError(
            f"unsupported HEF header version {version} (this reader knows versions 0-3; a newer Hailo "
            "Dataflow Compiler wrote it, or the file is corrupted)"
        )
    return version, header_size, proto_size


def parse_header(data: bytes) -> HefHeader:
    """Validate the header, the sizes and the checksum of a whole HEF file held in `data`."""
    version, header_size, proto_size = check_prefix(data)
    if len(data) < header_size:
        raise HeaderError(
            f"truncated: {len(data)} bytes, shorter than the {header_size}-byte v{version} header"
        )
    body = memoryview(data)[header_size:]
    if version == 0:
        _reserved, md5 = _V0.unpack_from(data, _COMMON.size)
        _check_size(len(body), proto_size, 0, "")
        _check_digest("MD5 of the body", hashlib.md5(body).digest().hex(), md5.hex())
    elif version == 1:
        crc, ccws_size, _reserved = _V1.unpack_from(data, _COMMON.size)
        _check_size(len(body), proto_size, ccws_size, f" + {ccws_size} bytes of config words")
        _check_digest("CRC32 of the body", f"{zlib.crc32(body):08x}", f"{crc:08x}")
    elif version == 2:
        xxh3, ccws_size, _res1, _res2 = _V2.unpack_from(data, _COMMON.size)
        _check_size(len(body), proto_size, ccws_size, f" + {ccws_size} bytes of config words")
        _check_digest("XXH3 of the body", f"{xxhash.xxh3_64_intdigest(body):016x}", f"{xxh3:016x}")
    else:
        xxh3, ccws_padded, padding, additional, _res1, _res2 = _V3.unpack_from(data, _COMMON.size)
        if padding > ccws_padded:
            raise HeaderError(
                f"header is inconsistent (padding of {padding} bytes is larger than the {ccws_padded}-byte "
                "config-word section that includes it): the file is corrupted"
            )
        _check_size(
            len(body),
            proto_size,
            ccws_padded + additional,
            f" + {ccws_padded} bytes of padded config words + {additional} bytes of additional info",
        )
        _check_digest("XXH3 of the body", f"{xxhash.xxh3_64_intdigest(body):016x}", f"{xxh3:016x}")
    return HefHeader(version=version, header_size=header_size, proto_size=proto_size)


def _check_size(actual: int, proto_size: int, rest_size: int, rest: str) -> None:
    if actual != proto_size + rest_size:
        raise HeaderError(
            f"size mismatch (the header promises {proto_size + rest_size} bytes after it: a "
            f"{proto_size}-byte protobuf{rest}; the file has {actual}): the file is truncated or corrupted"
        )


def _check_digest(what: str, computed: str, stored: str) -> None:
    if computed != stored:
        raise HeaderError(
            f"checksum mismatch ({what} is {computed}, header says {stored}): "
            "the file is corrupted or truncated"
        )
