"""A stand-in for the daemon's MQTT side, run as its own process so tests can SIGKILL and restart it.

    python tests/mqtt_child.py CONFIG.json --camera a --camera b --first 0 --count 250

It opens the real `MqttSink` (outbox + publisher) from an `MqttConfig` in JSON, publishes `count` face events
per camera (numbered from `first`: event k has frame_time EPOCH + k, so order can be checked downstream),
prints `produced N` once they are all committed to the outbox, then runs until SIGTERM, when it stops
cleanly (`offline`, disconnect) and prints `stopped pending=N`. With --wait-connected it first waits for the
broker and prints `connected`; with --wait-go it produces only after SIGUSR1.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from nvr.contracts.faces import SCRFD_LANDMARKS
from nvr.events.payload import EventType, FaceEvent, FaceObservation
from nvr.logsetup import configure_logging
from nvr.mqtt.config import MqttConfig
from nvr.mqtt.sink import MqttSink
from nvr.wakeup import Wakeup

EPOCH = 1_763_683_200.0
EVENTS_PER_FACE = 5  # new, 3 updates, end


def synthetic_event(camera: str, k: int) -> FaceEvent:
    """Event k of a camera: faces come and go, EVENTS_PER_FACE messages each, frame_time = EPOCH + k."""
    face_index, step = divmod(k, EVENTS_PER_FACE)
    start = EPOCH + face_index * EVENTS_PER_FACE
    t = EPOCH + k
    observation = FaceObservation(
        t,
        (100.0 + step, 80.0, 180.0, 190.0),
        0.9,
        tuple((120.0 + 10 * i, 120.0) for i in range(5)),
        SCRFD_LANDMARKS,
    )
    kind: EventType = "new" if step == 0 else "end" if step == EVENTS_PER_FACE - 1 else "update"
    return FaceEvent(
        type=kind,
        id=f"{start:.6f}-{camera[:1]}{face_index:05d}",
        camera=camera,
        start_time=start,
        end_time=t if kind == "end" else None,
        frame_size=(640, 360),
        frames=step + 1,
        face=observation,
        best=observation,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--camera", action="append", default=[])
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--wait-connected", action="store_true")
    parser.add_argument("--wait-go", action="store_true", help="produce only after SIGUSR1")
    parser.add_argument(
        "--no-flush", action="store_true",
        help="print `produced` without waiting for the commit; then, after commit_interval, `due`",
    )  # fmt: skip
    args = parser.parse_args()
    # The daemon's own logging set-up, on stderr: structlog's default would print to stdout, where its lines
    # could interleave with the `produced N` lines the tests read.
    configure_logging("info", "console", sys.stderr)
    config = MqttConfig.model_validate(json.loads(args.config.read_text()))
    faulthandler.enable()  # a hung child's SIGABRT (from `terminate`) prints every thread's stack
    # The daemon's way: handlers only note the signal and set a Wakeup (a threading.Event can deadlock in a
    # handler), and any signal wakes the main thread, whichever of the client's threads it landed on.
    received: set[int] = set()
    wakeup = Wakeup()

    def on_signal(signum: int, _frame: object) -> None:
        received.add(signum)
        wakeup.set()

    def wait_for(signum: int) -> None:
        while signum not in received:
            wakeup.wait()
            wakeup.clear()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)
    wakeup.wake_on_signals()
    sink = MqttSink(config, cameras=args.camera)
    if args.wait_connected:
        sink.publisher.wait_connected(10)
        print("connected", flush=True)
    if args.wait_go:
        print("waiting", flush=True)
        wait_for(signal.SIGUSR1)
    for k in range(args.first, args.first + args.count):
        for camera in args.camera:
            sink.publish_event(synthetic_event(camera, k))
    if args.no_flush:
        print(f"produced {args.count * len(args.camera)}", flush=True)
        # The promise under test: committed within commit_interval of being made, without anyone waiting.
        time.sleep(config.outbox.commit_interval)
        print("due", flush=True)
    else:
        sink.flush()
        print(f"produced {args.count * len(args.camera)}", flush=True)
    wait_for(signal.SIGTERM)
    sink.close(timeout=5.0)
    print(f"stopped pending={sink.publisher.outbox_pending}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())


class ChildProcess:
    """The test side: start the child, read its progress lines, stop or kill it."""

    def __init__(self, config: MqttConfig, config_path: Path, *args: str) -> None:
        config_path.write_text(config.model_dump_json(exclude_none=True))
        self.stderr_path = config_path.with_suffix(".stderr")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in terminate/kill)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(config_path), *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.strip())
        self._queue.put(None)

    def expect(self, prefix: str, timeout: float = 30.0) -> str:
        """Wait for the next stdout line starting with `prefix`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"child did not print {prefix!r}: {self.lines} / {self.stderr_text()}")

    def stderr_text(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler: the stacks of the hung threads
            self.proc.wait(10)
            stacks = self.stderr_text()
            raise AssertionError(f"child still running {timeout} s after SIGTERM:\n{stacks}") from None
        self._stderr.close()
        return code

    def go(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._stderr.close()
