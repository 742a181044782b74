"""Request and reply types of the web server, and the few HTTP details every handler shares."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl

from nvr.web.auth import Caller

# One policy for every response: only our own scripts, styles and images; no framing; no plugins.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # (no-referrer would make browsers send `Origin: null`)
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class HttpError(Exception):
    """Ends a request with `status` and a JSON `{"error": message}` body."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Request:
    method: str
    path: str  # the raw path, not percent-decoded: routes match it with strict patterns
    query: dict[str, str]
    headers: Message
    client: str
    caller: Caller
    params: dict[str, str] = field(default_factory=dict)  # filled by the router
    body: bytes = b""

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "the request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise HttpError(400, "the request body must be a JSON object")
        return value

    def text_field(self, data: Mapping[str, Any], name: str) -> str:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise HttpError(400, f"'{name}' is required (a non-empty string)")
        return value.strip()

    def int_query(self, name: str, default: int, low: int = 0, high: int = 10**12) -> int:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HttpError(400, f"query parameter '{name}' must be an integer") from None
        return max(low, min(high, value))


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value, separators=(",", ":"), allow_nan=False).encode())


def parse_query(raw: str) -> dict[str, str]:
    return dict(parse_qsl(raw, keep_blank_values=True, max_num_fields=50))


def parse_cookies(header: str | None) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in (header or "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in cookies:
            cookies[name] = value
    return cookies
