"""The web server: a ThreadingHTTPServer that authenticates, routes, and answers with security headers.

Routes match the raw (not percent-decoded) path against strict patterns, so `..`, encoded slashes and
other tricks never reach a handler; no handler opens a file named by a request (static files are package
data loaded at start, snapshots are looked up by a validated event id).
"""

from __future__ import annotations

import re
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog

from nvr.errors import ConfigError
from nvr.web.auth import CSRF_HEADER, SESSION_COOKIE, Authenticator, Caller
from nvr.web.config import WebConfig, is_loopback, server_tls_context
from nvr.web.http import SECURITY_HEADERS, HttpError, Reply, Request, json_reply, parse_cookies, parse_query

log = structlog.get_logger("nvr.web")

Handler = Callable[[Request], Reply]
Streamer = Callable[[Request, Callable[[bytes], None], threading.Event], None]
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}  # fmt: skip
MAX_JSON_BODY = 64 * 1024
# A refused request's body is read and thrown away up to these sizes before the answer is sent, so the
# client, still sending, gets the error instead of a connection reset; beyond them the connection is cut.
DISCARD_SIGNED_IN = 256 * 1024 * 1024
DISCARD_ANONYMOUS = 64 * 1024


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler | None = None
    streamer: Streamer | None = None
    max_body: int = MAX_JSON_BODY


class Exchange(BaseHTTPRequestHandler):
    """One connection's handler; `body_read` says whether the current request's body has been consumed."""

    body_read = False


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # HTTPS: each new connection takes the context current when it starts; a certificate reload swaps the
    # whole context (never modified in place: a half-loaded one would break every handshake).
    tls: ssl.SSLContext | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away, stalls past the timeout or fails the TLS handshake is routine: one debug
        # line, not socketserver's traceback on stderr. Anything else is a bug and logged as one.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            reason = f"{type(error).__name__}: {error}"
            log.debug("web connection ended", client=client_address[0], error=reason)
        else:
            log.exception("web connection failed", client=client_address[0])


def load_static() -> dict[str, bytes]:
    """Every file shipped in nvr/web/static, read once: the only files the server ever serves."""
    folder = resources.files("nvr.web") / "static"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.is_file()}


class WebServer:
    def __init__(self, config: WebConfig, auth: Authenticator, routes: list[Route]) -> None:
        self.config = config
        self.auth = auth
        self._routes = routes
        self._static = load_static()
        self._stopping = threading.Event()
        server_self = self

        class RequestHandler(Exchange):
            protocol_version = "HTTP/1.1"
            timeout = 60  # a client that stops sending does not hold a thread forever
            # Headers and body in one buffered write, no Nagle: keep-alive requests are not held back by
            # delayed ACKs (40 ms each otherwise).
            wbufsize = 64 * 1024
            disable_nagle_algorithm = True
            server_version = "nvr"
            sys_version = ""

            def setup(self) -> None:
                tls = server_self._server.tls
                if tls is not None:
                    self.request = tls.wrap_socket(
                        self.request, server_side=True, do_handshake_on_connect=False
                    )
                super().setup()  # the connection's timeout, its files

            def handle(self) -> None:
                if isinstance(self.connection, ssl.SSLSocket):
                    # Here, in the connection's own thread and under its timeout, not in accept(): a slow
                    # or silent client cannot hold up everyone else's connections.
                    self.connection.do_handshake()
                super().handle()

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    if isinstance(self.connection, ssl.SSLSocket):
                        self.connection.close()  # the server closes only the plain socket it accepted

            def do_GET(self) -> None:
                server_self._handle(self)

            def do_POST(self) -> None:
                server_self._handle(self)

            def do_DELETE(self) -> None:
                server_self._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        tls = server_tls_context(config.tls) if config.tls is not None else None
        try:
            self._server = HttpServer((config.host, config.port), RequestHandler)
        except OSError as exc:
            raise ConfigError(
                f"web: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
        self._server.tls = tls
        self._thread = threading.Thread(target=self._server.serve_forever, name="web-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self.config.tls is not None else "http"
        return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"

    def start(self) -> None:
        self._thread.start()
        log.info("web UI listening", url=self.url, password=self.auth.needs_password)
        if self.config.tls is None and not is_loopback(self.config.host):
            log.warning(
                "web UI without TLS: the password and the faces cross the network in clear",
                hint="set web.tls (cert_file, key_file) or put a TLS proxy in front",
            )

    def reload_certificate(self) -> None:
        """Read `web.tls`'s files again (a renewed certificate) for the connections from now on; raises
        ConfigError, keeping the previous certificate, when they cannot be read or do not match."""
        if self.config.tls is not None:
            self._server.tls = server_tls_context(self.config.tls)

    def stop(self) -> None:
        self._stopping.set()
        started = self._thread.is_alive()
        if started:
            self._server.shutdown()
        self._server.server_close()
        if started:
            self._thread.join(timeout=2)

    # -- one request ------------------------------------------------------------------------------------

    def _handle(self, http: Exchange) -> None:
        http.body_read = False  # keep-alive: the same handler serves the connection's next request
        try:
            reply = self._dispatch(http)
        except HttpError as exc:
            reply = json_reply({"error": exc.message}, exc.status)
            reply.headers.update(exc.headers)
            if http.command != "GET":
                http.close_connection = True  # a body left unread must not be taken for the next request
                self._discard_body(http)
        except Exception:  # a bug in one handler must not take the server down
            log.exception("web request failed", method=http.command, path=urlsplit(http.path).path)
            reply = json_reply({"error": "internal error"}, 500)
            http.close_connection = True
        if reply is not None:
            self._send(http, reply)

    def _dispatch(self, http: Exchange) -> Reply | None:
        parts = urlsplit(http.path)
        path, method = parts.path, http.command
        if not self.auth.host_ok(http.headers.get("Host")):
            raise HttpError(421, "this address is served on its loopback name only (http://127.0.0.1:...)")
        cookies = parse_cookies(http.headers.get("Cookie"))
        caller = self.auth.identify(cookies.get(SESSION_COOKIE), http.headers.get("Authorization"))
        request = Request(
            method, path, parse_query(parts.query), http.headers, http.client_address[0], caller
        )
        if method != "GET":
            self._check_origin(http)
        if path.startswith("/static/") and method == "GET":
            return self._static_file(path.removeprefix("/static/"))
        if path == "/login":
            return self._login(request, http)
        if path in ("/", "/index.html") and method == "GET":
            return self._page(request)
        if not caller.allowed:
            raise HttpError(401, "log in, or send Authorization: Bearer <password>",
                            {"WWW-Authenticate": 'Bearer realm="nvr"'})  # fmt: skip
        if path == "/logout" and method == "POST":
            self._require_csrf(request)
            if caller.session is not None:
                self.auth.end_session(caller.session.token)
            return Reply(303, b"", "text/plain", {"Location": "/login", "Set-Cookie": self._cookie("", 0)})
        route = self._route(method, path, request)
        if method != "GET":
            self._require_csrf(request)
            request.body = self._read_body(http, route.max_body)
        if route.streamer is not None:
            self._stream(http, route.streamer, request)
            return None
        assert route.handler is not None
        return route.handler(request)

    def _route(self, method: str, path: str, request: Request) -> Route:
        allowed = False
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                request.params = match.groupdict()
                return route
            allowed = True
        raise HttpError(405 if allowed else 404, "method not allowed" if allowed else "not found")

    def _require_csrf(self, request: Request) -> None:
        if not self.auth.csrf_ok(request.caller, request.headers.get(CSRF_HEADER)):
            raise HttpError(403, f"missing or wrong CSRF token (send the {CSRF_HEADER} header)")

    def _check_origin(self, http: Exchange) -> None:
        origin = http.headers.get("Origin")
        if origin is None:
            return
        if urlsplit(origin).netloc != http.headers.get("Host"):
            raise HttpError(403, "cross-origin request refused")

    def _discard_body(self, http: Exchange) -> None:
        """Read a refused request's body, if it is not too big, so that closing does not reset the client."""
        if http.body_read:
            return
        try:
            length = int(http.headers.get("Content-Length") or 0)
        except ValueError:
            return
        caller = self.auth.identify(
            parse_cookies(http.headers.get("Cookie")).get(SESSION_COOKIE), http.headers.get("Authorization")
        )
        if not 0 < length <= (DISCARD_SIGNED_IN if caller.allowed else DISCARD_ANONYMOUS):
            return
        try:
            while length > 0 and (chunk := http.rfile.read(min(length, 1 << 16))):
                length -= len(chunk)
        except OSError:  # the client gave up or stalled past the timeout: closing is all that is left
            pass

    def _read_body(self, http: Exchange, limit: int) -> bytes:
        raw = http.headers.get("Content-Length")
        if raw is None:
            if http.headers.get("Transfer-Encoding"):
                http.close_connection = True
                raise HttpError(411, "send Content-Length (chunked uploads are not accepted)")
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        if length < 0 or length > limit:
            raise HttpError(413, f"request too large: at most {limit // 1024} KiB")
        http.body_read = True
        return http.rfile.read(length)

    # -- pages and login --------------------------------------------------------------------------------

    def _static_file(self, name: str) -> Reply:
        body = self._static.get(name)
        suffix = name[name.rfind(".") :] if "." in name else ""
        if body is None or suffix not in STATIC_TYPES or name.startswith("."):
            raise HttpError(404, "not found")
        return Reply(200, body, STATIC_TYPES[suffix], {"Cache-Control": "no-cache"})

    def _page(self, request: Request) -> Reply:
        caller = request.caller
        if not caller.allowed or caller.kind == "bearer":
            return Reply(303, b"", "text/plain", {"Location": "/login"})
        reply = Reply(200, self._static["index.html"], STATIC_TYPES[".html"], {"Cache-Control": "no-store"})
        if caller.session is None:  # no password: a session anyway, for its CSRF token
            session = self.auth.new_session()
            reply.headers["Set-Cookie"] = self._cookie(session.token, self.config.session_hours * 3600)
        return reply

    def _login(self, request: Request, http: Exchange) -> Reply:
        if not self.auth.needs_password:
            return Reply(303, b"", "text/plain", {"Location": "/"})
        if request.method == "GET":
            return Reply(
                200, self._static["login.html"], STATIC_TYPES[".html"], {"Cache-Control": "no-store"}
            )
        if request.method != "POST":
            raise HttpError(405, "method not allowed")
        wait = self.auth.limiter.retry_after(request.client)
        if wait > 0:
            raise HttpError(
                429, "too many failed logins: try again later", {"Retry-After": str(int(wait) + 1)}
            )
        form = dict(parse_qsl(self._read_body(http, 4096).decode("utf-8", "replace"), max_num_fields=5))
        if not self.auth.check_password(form.get("password", "")):
            self.auth.limiter.failed(request.client)
            log.warning("web login failed", client=request.client)
            return Reply(303, b"", "text/plain", {"Location": "/login?failed=1"})
        session = self.auth.new_session()
        log.info("web login", client=request.client)
        cookie = self._cookie(session.token, self.config.session_hours * 3600)
        return Reply(303, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})

    def _cookie(self, token: str, max_age: float) -> str:
        secure = "; Secure" if self.config.tls is not None else ""  # never sent back over plain HTTP
        return f"{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(max_age)}{secure}"

    # -- output -----------------------------------------------------------------------------------------

    def _send(self, http: Exchange, reply: Reply) -> None:
        http.send_response(reply.status)
        http.send_header("Content-Type", reply.content_type)
        http.send_header("Content-Length", str(len(reply.body)))
        for name, value in SECURITY_HEADERS.items():
            http.send_header(name, value)
        if "Cache-Control" not in reply.headers:
            http.send_header("Cache-Control", "no-store")
        for name, value in reply.headers.items():
            http.send_header(name, value)
        if http.close_connection:
            http.send_header("Connection", "close")
        http.end_headers()
        if http.command != "HEAD":
            http.wfile.write(reply.body)

    def _stream(self, http: Exchange, streamer: Streamer, request: Request) -> None:
        http.close_connection = True
        started = False

        def write(chunk: bytes) -> None:
            nonlocal started
            if not started:  # headers with the first message: the stream has taken its starting point
                started = True
                http.send_response(200)
                http.send_header("Content-Type", "text/event-stream")
                http.send_header("Cache-Control", "no-store")
                for name, value in SECURITY_HEADERS.items():
                    http.send_header(name, value)
                http.send_header("Connection", "close")
                http.end_headers()
            http.wfile.write(chunk)
            http.wfile.flush()

        try:
            streamer(request, write, self._stopping)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the browser went away
        except Exception:  # the headers are out: end the stream, never a second response
            log.exception("web event stream failed")


def caller_summary(caller: Caller) -> dict[str, Any]:
    return {"auth": caller.kind, "csrf": caller.session.csrf if caller.session else None}
