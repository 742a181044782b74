"""A real GStreamer RTSP server (scripts/rtsp_server.py, run by the system python3) that tests can kill,
restart on the same port, stall and corrupt."""

from __future__ import annotations

import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = PROJECT_ROOT / "scripts" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # GStreamer's Python bindings (gi) come from the OS


class RtspServer:
    def __init__(self, file: Path, path: str = "/cam", loop: bool = True, codec: str = "h264") -> None:
        self.file = file
        self.path = path
        self.loop = loop
        self.codec = codec
        self.port = 0  # chosen by the first start, kept by restarts
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self, timeout: float = 20.0) -> None:
        argv = [SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.file), "--port", str(self.port)]
        argv += ["--path", self.path, "--codec", self.codec] + (["--loop"] if self.loop else [])
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        line = self._read_line(timeout)
        if not line.startswith("ready "):
            self.stop()
            pytest.fail(f"RTSP server did not start: {line!r}", pytrace=False)
        self.port = int(line.split()[1])

    def command(self, command: str, timeout: float = 5.0) -> None:
        """Send a stdin command (stall, resume, corrupt N) and wait for its acknowledgement."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(f"{command}\n".encode())
        self._proc.stdin.flush()
        line = self._read_line(timeout)
        assert line == f"ok {command.split(maxsplit=1)[0]}", line

    def stop(self) -> None:
        """Kill the server abruptly, as a camera losing power would: connections just drop."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(10)
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _read_line(self, timeout: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                return proc.stdout.readline().decode().strip()
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                return f"exited {proc.returncode}: {err.strip()}"
        return "timeout"


@pytest.fixture
def rtsp_server() -> Iterator[type[RtspServer]]:
    """Make servers with `rtsp_server(file, ...)`; every one made is killed at the end of the test."""
    made: list[RtspServer] = []

    class _Tracked(RtspServer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            made.append(self)

    yield _Tracked
    for server in made:
        server.stop()
