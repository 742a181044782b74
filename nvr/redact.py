"""Keep secrets out of logs and events: camera URLs carry passwords, in the userinfo or the query string.

`redact_url` masks one URL; `redact_text` masks every URL inside a message (FFmpeg errors quote the URL
they failed on, credentials included). Passwords may contain anything (`@ : / ? # %`, percent-encoded or
not), so the userinfo is taken to run to the LAST `@` of the URL, not the first: a path with an `@` in it
is masked too, which is the safe mistake. On top of that, `register_secrets_of` remembers the user name and
password of each configured URL (in the forms they can take: as written, percent-decoded, percent-encoded)
and `redact_text` replaces them wherever they appear, even outside a URL (an error message that quotes a
password on its own). The registry is per process: the daemon registers its cameras' URLs, and each
capture process registers its own.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter user names / passwords are masked inside URLs only (not as bare words)

# Query keys cameras use for credentials (Dahua/Reolink style `?user=admin&password=...`, tokens).
_SECRET_NAMES = r"user(?:name)?|login|pass(?:word|wd)?|pwd|token|auth|key|secret|signature|sig"
_SECRET_KEYS = re.compile(rf"^(?:{_SECRET_NAMES})$", re.I)
# scheme://userinfo@ inside any text: the userinfo runs to the last '@' before whitespace or a quote.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s'\"<>]*)@")
_QUERY_SECRET = re.compile(
    rf"(?P<key>[?&;](?:{_SECRET_NAMES})=)"
    r"(?P<value>[^&;\s'\"#]*)",
    re.I,
)


class _Registry:
    """The secrets this process knows (from its configured URLs), as one compiled pattern."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.pattern: re.Pattern[str] | None = None
        self.lock = threading.Lock()

    def add(self, forms: set[str]) -> None:
        with self.lock:
            if not forms - self.secrets:
                return
            self.secrets |= forms
            # Longest first, so a secret that contains another is masked whole.
            alternatives = sorted(self.secrets, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(s) for s in alternatives))


_registry = _Registry()


def url_credentials(url: str) -> tuple[str, str]:
    """The user name and password written in `url` ("" when absent), as written (not decoded)."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return "", ""
    rest = url[scheme_end + 3 :]
    at = rest.rfind("@")
    if at < 0:
        return "", ""
    user, _, password = rest[:at].partition(":")
    return user, password


def register_secrets_of(url: str) -> None:
    """Remember `url`'s user name and password so that `redact_text` masks them anywhere."""
    forms: set[str] = set()
    for secret in url_credentials(url):
        if not secret:
            continue
        for form in (secret, unquote(secret), quote(unquote(secret), safe=""), quote(secret, safe="")):
            if len(form) >= MIN_SECRET_LENGTH:
                forms.add(form)
    _registry.add(forms)


def redact_url(url: str) -> str:
    """`url` with any user name, password and credential-like query values replaced by `***`."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return redact_text(url)
    head, rest = url[: scheme_end + 3], url[scheme_end + 3 :]
    at = rest.rfind("@")
    if at >= 0:
        rest = f"{MASK}@{rest[at + 1 :]}"
    masked = head + rest
    try:
        parts = urlsplit(masked)
    except ValueError:
        return redact_text(masked)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_KEYS.match(k) else v) for k, v in pairs], safe="*")
        masked = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return _mask_known(masked)


def redact_text(text: str) -> str:
    """`text` with the credentials of every URL in it masked (for error messages that quote URLs), and
    every registered user name and password masked wherever it appears."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)
    return _mask_known(text)


def _mask_known(text: str) -> str:
    pattern = _registry.pattern
    return text if pattern is None else pattern.sub(MASK, text)
