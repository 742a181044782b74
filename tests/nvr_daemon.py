"""Run `nvr run` as a subprocess, the way systemd does: read its JSON log, talk sd_notify, signal it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT_ROOT

from nvr.contracts.frameslots import remove_stale_segments

LogLine = dict[str, Any]


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def is_resource_tracker(pid: int) -> bool:
    return "resource_tracker" in command_line(pid)


def command_line(pid: int) -> str:
    """The process's command line; empty once it is exiting (or gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def child_commands(pid: int) -> dict[int, str]:
    """Direct children of `pid` with their command lines, taken while they run (see `outliving`)."""
    return {child: command_line(child) for child in child_pids(pid)}


def outliving(children: dict[int, str], tracker_grace: float = 5.0) -> list[str]:
    """Which of a stopped daemon's former `children` (from `child_commands`) still run. The daemon joins
    its decoders before it exits, so they must be gone at once; multiprocessing's resource tracker is not
    joined (it exits on its own when it reads EOF from the daemon, a moment later), so it gets
    `tracker_grace` seconds. Told apart by the command lines taken before the stop: an exiting process
    has none left."""
    trackers = [pid for pid, command in children.items() if "resource_tracker" in command]
    running = [pid for pid in children if pid not in trackers and alive(pid)]
    deadline = time.monotonic() + tracker_grace
    while any(alive(pid) for pid in trackers) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [f"{pid}: {children[pid]}" for pid in running + trackers if alive(pid)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class NotifySocket:
    """A stand-in for systemd's notification socket, recording every datagram."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self._socket.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self._socket.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def fields(self) -> list[str]:
        return [field for message in list(self.messages) for field in message.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()


class NvrDaemon:
    def __init__(
        self, workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None, notify: bool = False
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "nvr.yml"
        self.write_config(config)
        self.lines: list[LogLine] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self.notify = NotifySocket(workdir / "notify.sock") if notify else None
        environment = {**os.environ, **(env or {})}
        environment.pop("JOURNAL_STREAM", None)
        if self.notify is not None:
            environment["NOTIFY_SOCKET"] = str(self.notify.path)
            environment.setdefault("WATCHDOG_USEC", "2000000")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nvr", "run", str(self.config_path), "--log-format", "json"],
            cwd=PROJECT_ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def write_config(self, config: dict[str, Any]) -> None:
        self.instance: str | None = config.get("instance")
        # The web UI is on by default (port 9121): tests that run daemons side by side take free ports.
        config = config if "web" in config else {**config, "web": {"port": 0}}
        temporary = self.config_path.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(temporary, self.config_path)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.raw.append(raw.rstrip("\n"))
                try:
                    self.lines.append(json.loads(raw))
                except json.JSONDecodeError:
                    self.lines.append({"event": raw.rstrip("\n"), "level": "raw"})

    def logs(self) -> list[LogLine]:
        with self._lock:
            return list(self.lines)

    def mark(self) -> int:
        """A position in the log: pass it as `since` to wait only for lines logged after now."""
        with self._lock:
            return len(self.lines)

    def wait_for_log(
        self, predicate: Callable[[LogLine], bool], timeout: float = 30.0, what: str = "", since: int = 0
    ) -> LogLine:
        deadline = time.monotonic() + timeout
        seen = since
        while time.monotonic() < deadline:
            lines = self.logs()
            for line in lines[seen:]:
                if predicate(line):
                    return line
            seen = len(lines)
            if self.proc.poll() is not None and seen == len(self.logs()):
                break
            time.sleep(0.05)
        tail = "\n".join(self.raw[-30:])
        pytest.fail(f"no log line {what!r} within {timeout} s (exit {self.proc.poll()}); last lines:\n{tail}")

    def wait_for_event(self, message: str, timeout: float = 30.0, since: int = 0, **fields: Any) -> LogLine:
        return self.wait_for_log(
            lambda line: line.get("event") == message and all(line.get(k) == v for k, v in fields.items()),
            timeout, what=message, since=since,
        )  # fmt: skip

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds taken). Fails if it takes longer than `timeout`."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"nvr did not exit within {timeout} s of SIGTERM")
        self._reader.join(5)
        return code, time.monotonic() - started

    def stop_reading(self) -> None:
        """Wait until the whole output of an exited daemon has been read."""
        self._reader.join(5)

    def kill(self) -> None:
        """SIGKILL the daemon and its decoders, but not multiprocessing's resource tracker: once they are
        gone it unlinks the named semaphores of the daemon's frame queue (/dev/shm/sem.mp-*), which
        would otherwise outlive the test. The instance's rings are removed as the next start would."""
        trackers = []
        for pid in child_pids(self.proc.pid):
            if is_resource_tracker(pid):
                trackers.append(pid)
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in trackers) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.instance is not None:
            remove_stale_segments(self.instance)  # what the next start would do: no ring outlives a test

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        if self.notify is not None:
            self.notify.close()
