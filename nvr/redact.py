"""Keep secrets out of logs and events: camera URLs carry passwords, in the userinfo or the query string.

`redact_url` masks one URL; `redact_text` masks every URL inside a message (FFmpeg errors quote the URL
they failed on, credentials included).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"

# Query keys cameras use for credentials (Dahua/Reolink style `?user=admin&password=...`, tokens).
_SECRET_NAMES = r"user(?:name)?|login|pass(?:word|wd)?|pwd|token|auth|key|secret|signature|sig"
_SECRET_KEYS = re.compile(rf"^(?:{_SECRET_NAMES})$", re.I)
# scheme://user:password@ or scheme://user@ inside any text; stops at whitespace, quotes and the next '/'.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s/@'\"]+)@")
_QUERY_SECRET = re.compile(
    rf"(?P<key>[?&;](?:{_SECRET_NAMES})=)"
    r"(?P<value>[^&;\s'\"#]*)",
    re.I,
)


def redact_url(url: str) -> str:
    """`url` with any user name, password and credential-like query values replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if not parts.scheme or not parts.netloc:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_KEYS.match(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """`text` with the credentials of every URL in it masked (for error messages that quote URLs)."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)
