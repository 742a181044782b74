"""People's names and slugs in the face library.

People have a stable id, a display name and a slug: lower-case ASCII letters, digits and `_`, safe as an
MQTT topic level, unique, and never a reserved word (`person`, `unknown`, `unknown_*`, ...); a name without
ASCII letters (e.g. in another script) gets its id as slug.
"""

from __future__ import annotations

import re
import unicodedata

from nvr.errors import ExitCode, NvrError

MAX_NAME_LENGTH = 64
MAX_SLUG_LENGTH = 48

# Slugs that topics, the web UI or the stranger groups already use.
RESERVED_SLUGS = frozenset(
    {"person", "people", "unknown", "stranger", "strangers", "none", "null", "all", "face", "faces", "count"}
)
_RESERVED_PREFIXES = ("unknown_", "stranger_")


class PersonError(NvrError):
    """A name or person given on the command line is not acceptable (collision, reserved, not found)."""

    exit_code = ExitCode.USAGE


def slugify(name: str) -> str:
    """The topic-safe form of `name`: ASCII lower-case letters, digits, single `_`; "" without a letter."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")[:MAX_SLUG_LENGTH].rstrip("_")
    return slug if re.search(r"[a-z]", slug) else ""


def is_reserved_slug(slug: str) -> bool:
    return slug in RESERVED_SLUGS or slug.startswith(_RESERVED_PREFIXES)


def check_name(name: str) -> str:
    """`name` stripped, or PersonError saying why it cannot be a person's name."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise PersonError("a person's name must not be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise PersonError(f"name {cleaned[:20]!r}...: longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in cleaned):
        raise PersonError(f"name {cleaned!r}: contains control characters")
    return cleaned


def name_key(name: str) -> str:
    """The key names are unique by: two names that differ only in case or Unicode form are the same person."""
    return unicodedata.normalize("NFKC", name).casefold()
