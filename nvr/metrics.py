"""A small HTTP endpoint: `/metrics` in Prometheus text format and `/healthz`, on 127.0.0.1 by default.

Metrics are pulled at scrape time from a `collect()` callback that reads the stages' counters, so the
per-frame path pays nothing for them.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import structlog

from nvr.errors import ConfigError

log = structlog.get_logger(__name__)

MetricType = Literal["counter", "gauge"]


@dataclass
class MetricFamily:
    name: str  # without the nvr_ prefix
    type: MetricType
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> MetricFamily:
        self.samples.append((labels, value))
        return self


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(families: Iterable[MetricFamily], prefix: str = "nvr_") -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for family in families:
        name = prefix + family.name
        lines.append(f"# HELP {name} {family.help}")
        lines.append(f"# TYPE {name} {family.type}")
        for labels, value in family.samples:
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items())
            series = f"{name}{{{label_text}}}" if label_text else name
            lines.append(f"{series} {_number(value)}")
    return "\n".join(lines) + "\n"


Health = tuple[bool, dict[str, Any]]


class MetricsServer:
    """Serves `collect()` and `health()` over HTTP from a daemon thread."""

    def __init__(
        self,
        host: str,
        port: int,
        collect: Callable[[], list[MetricFamily]],
        health: Callable[[], Health],
    ) -> None:
        server_self = self
        self._collect = collect
        self._health = health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server_self._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the journal

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics endpoint listening", url=f"http://{self.address[0]}:{self.address[1]}/metrics")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                body = render(self._collect()).encode()
                self._reply(request, 200, "text/plain; version=0.0.4; charset=utf-8", body)
            elif path == "/healthz":
                healthy, details = self._health()
                body = json.dumps({"status": "ok" if healthy else "unhealthy", **details}).encode()
                self._reply(request, 200 if healthy else 503, "application/json", body)
            else:
                self._reply(request, 404, "text/plain", b"not found: try /metrics or /healthz\n")
        except Exception:  # a broken collector must not kill the endpoint
            log.exception("metrics request failed", path=path)
            self._reply(request, 500, "text/plain", b"internal error\n")

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
