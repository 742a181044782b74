"""Who may use the web UI: browser sessions (cookie + CSRF token), bearer tokens for scripts, login limits.

- With a password: a browser logs in once and gets an HttpOnly, SameSite=Strict session cookie; every
  state-changing request must also carry the session's CSRF token (header `X-CSRF-Token`). Scripts send
  `Authorization: Bearer <password>` instead and need no CSRF token (no browser sends that header by itself).
- Without a password (loopback only): every request from this machine is allowed, but a browser still gets a
  session and its CSRF token, so another web site open in the same browser cannot make it act, and the Host
  header must name the loopback interface (a DNS-rebinding page cannot borrow the address).
Secrets are compared with `hmac.compare_digest`; failed logins are limited per client and overall.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from nvr.web.config import is_loopback

SESSION_COOKIE = "nvr_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS = 1000


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    csrf: str
    expires: float


@dataclass(frozen=True, slots=True)
class Caller:
    """The outcome of authentication for one request."""

    kind: str  # "session", "bearer", "local" (no password configured) or "none"
    session: Session | None = None

    @property
    def allowed(self) -> bool:
        return self.kind != "none"


def _digest(secret: str) -> bytes:
    # Compare fixed-length digests so neither the length nor the content of the secret leaks through timing.
    return hashlib.sha256(secret.encode()).digest()


class LoginLimiter:
    """At most `per_client` failed logins per client per `window` seconds, and `overall` from everyone."""

    def __init__(
        self,
        per_client: int = 5,
        overall: int = 30,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_client, self._overall, self._window, self._clock = per_client, overall, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._all: deque[float] = deque()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            waits = [0.0]
            mine = self._failures.get(client)
            if mine is not None and len(mine) >= self._per_client:
                waits.append(mine[0] + self._window - now)
            if len(self._all) >= self._overall:
                waits.append(self._all[0] + self._window - now)
            return max(waits)

    def failed(self, client: str) -> None:
        now = self._clock()
        with self._lock:
            self._failures.setdefault(client, deque()).append(now)
            self._all.append(now)

    def _expire(self, now: float) -> None:
        horizon = now - self._window
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        for client in list(self._failures):
            times = self._failures[client]
            while times and times[0] <= horizon:
                times.popleft()
            if not times:
                del self._failures[client]


class Authenticator:
    def __init__(
        self,
        password: str | None,
        session_seconds: float,
        clock: Callable[[], float] = time.time,
        limiter: LoginLimiter | None = None,
    ) -> None:
        self._password = _digest(password) if password is not None else None
        self._session_seconds = session_seconds
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self.limiter = limiter or LoginLimiter()

    @property
    def needs_password(self) -> bool:
        return self._password is not None

    def check_password(self, attempt: str) -> bool:
        if self._password is None:
            return True
        return hmac.compare_digest(_digest(attempt), self._password)

    def new_session(self) -> Session:
        session = Session(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._clock() + self._session_seconds
        )
        with self._lock:
            self._drop_expired()
            if len(self._sessions) >= MAX_SESSIONS:  # bounded: the oldest login goes first
                oldest = min(self._sessions, key=lambda key: self._sessions[key].expires)
                del self._sessions[oldest]
            self._sessions[_digest(session.token).hex()] = session
        return session

    def end_session(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(_digest(token).hex(), None)

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            # Keyed by a digest of the token: a dict look-up's timing then tells an attacker nothing about
            # the tokens themselves.
            found = self._sessions.get(_digest(token).hex())
            if found is None or found.expires < self._clock():
                return None
        return found if hmac.compare_digest(found.token.encode(), token.encode()) else None

    def identify(self, cookie_token: str | None, authorization: str | None) -> Caller:
        session = self.session(cookie_token)
        if session is not None:
            return Caller("session", session)
        if authorization is not None and self._password is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value and self.check_password(value.strip()):
                return Caller("bearer")
            return Caller("none")
        if self._password is None:
            return Caller("local")
        return Caller("none")

    @staticmethod
    def csrf_ok(caller: Caller, sent: str | None) -> bool:
        """A state-changing request: bearer callers pass; browsers must send their session's token."""
        if caller.kind == "bearer":
            return True
        if caller.session is None or not sent:
            return False
        return hmac.compare_digest(caller.session.csrf.encode(), sent.encode())

    def host_ok(self, host_header: str | None) -> bool:
        """Without a password only loopback names are served (defeats DNS rebinding)."""
        if self._password is not None:
            return True
        if not host_header:
            return False
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        return is_loopback(host)

    def _drop_expired(self) -> None:
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expires < now]:
            del self._sessions[key]
