"""Fuzz the HEF reader: whatever the bytes, it returns a HefInfo or raises a one-line HefError naming the
file; never another exception.

Corrupting a real file mostly exercises the header and checksum checks; the tests that mutate the
protobuf recompute the checksum (`rewrap`) so the damage reaches the protobuf decoder and the walk.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from conftest import asset_path
from hef_synth import RESERVED_HEADER_BYTES, rewrap, split
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvr.hef import HefError, HefInfo, parse_hef, read_hef
from nvr.hef.describe import hef_to_json
from nvr.hef.header import MAGIC

# Small and medium files, one per header version (v0 keeps everything in its protobuf).
FUZZ_FILES = (
    "mnist_cnn.hailo8.hef",
    "arcface_mobilefacenet.hailo8.hef",
    "lightface_slim.hailo8l.hef",
    "scrfd_2.5g.hailo10h.hef",
)
SOURCE = "fuzzed.hef"
V3_PADDING_FIELD = range(28, 32)  # u32 hef_padding_size
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def real(name: str) -> bytes:
    return asset_path(f"hef/{name}").read_bytes()


@cache
def reference(name: str) -> HefInfo:
    return parse_hef(real(name), SOURCE)


def parse_or_error(data: bytes) -> HefInfo | None:
    """Parse; a HefError must be one line naming the source. Any other exception fails the test."""
    try:
        return parse_hef(data, SOURCE)
    except HefError as exc:
        message = str(exc)
        assert message.startswith(f"{SOURCE}: ") and "\n" not in message and len(message) < 600, message
        return None


files = st.sampled_from(FUZZ_FILES)


@FUZZ
@given(name=files, data=st.data())
def test_truncation_anywhere_is_an_error(name: str, data: st.DataObject) -> None:
    blob = real(name)
    cut = data.draw(st.integers(0, len(blob) - 1), label="cut")
    assert parse_or_error(blob[:cut]) is None


@FUZZ
@given(name=files, data=st.data())
def test_byte_flip_in_header_or_body(name: str, data: st.DataObject) -> None:
    blob = real(name)
    version = blob[7]
    # Half the flips land in the header, where each field has its own check.
    position = data.draw(st.one_of(st.integers(0, 63), st.integers(0, len(blob) - 1)), label="position")
    position = min(position, len(blob) - 1)
    mask = data.draw(st.integers(1, 255), label="xor mask")
    flipped = bytearray(blob)
    flipped[position] ^= mask
    result = parse_or_error(bytes(flipped))
    if position in RESERVED_HEADER_BYTES[version]:
        # Reserved words are not validated (nor by HailoRT): the file still reads the same.
        assert result is not None and hef_to_json(result) == hef_to_json(reference(name))
    elif version == 3 and position in V3_PADDING_FIELD:
        # HailoRT only checks padding <= the padded config-word size; the metadata does not depend on it.
        assert result is None or hef_to_json(result) == hef_to_json(reference(name))
    else:
        assert result is None  # every other byte is covered by the magic, version, sizes or checksum


@FUZZ
@given(blob=st.binary(max_size=4096))
def test_random_bytes(blob: bytes) -> None:
    assert parse_or_error(blob) is None


@FUZZ
@given(version=st.integers(0, 5), rest=st.binary(max_size=512))
def test_random_bytes_behind_a_valid_magic(version: int, rest: bytes) -> None:
    assert parse_or_error(MAGIC + version.to_bytes(4, "big") + rest) is None


# --- damage inside the protobuf, with a valid checksum ------------------------------------------


@st.composite
def mutated_proto(draw: st.DrawFn, name: str) -> bytes:
    _version, proto, _tail = split(real(name))
    out = bytearray(proto)
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        if not out:
            break
        kind = draw(st.sampled_from(["flip", "set", "delete", "insert", "truncate"]), label="kind")
        at = draw(st.integers(0, len(out) - 1), label="at")
        if kind == "flip":
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            out[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x12, 0x1A, 0x22, 0x0D]))
        elif kind == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        elif kind == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del out[at:]
    return bytes(out)


# The SCRFD protobuf is 16 KB of pure metadata, so nearly every mutation hits a field the reader uses.
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(proto=mutated_proto("scrfd_2.5g.hailo10h.hef"))
def test_mutated_protobuf_scrfd(proto: bytes) -> None:
    parse_or_error(rewrap(real("scrfd_2.5g.hailo10h.hef"), proto))


@FUZZ
@given(proto=mutated_proto("mnist_cnn.hailo8.hef"))
def test_mutated_protobuf_v0(proto: bytes) -> None:
    parse_or_error(rewrap(real("mnist_cnn.hailo8.hef"), proto))


@FUZZ
@given(proto=mutated_proto("lightface_slim.hailo8l.hef"))
def test_mutated_protobuf_multi_layout(proto: bytes) -> None:
    parse_or_error(rewrap(real("lightface_slim.hailo8l.hef"), proto))


@pytest.mark.parametrize("name", FUZZ_FILES)
def test_corrupted_files_on_disk(tmp_path: Path, name: str) -> None:
    """The same guarantee through read_hef and a real file (the fuzz above works on bytes)."""
    blob = real(name)
    for index, bad in enumerate([blob[: len(blob) // 2], blob[:100], b"\0" * 64, blob[:-4] + b"\0\0\0\1"]):
        path = tmp_path / f"bad{index}.hef"
        path.write_bytes(bad)
        with pytest.raises(HefError) as caught:
            read_hef(path)
        assert str(caught.value).startswith(f"{path}: ")
