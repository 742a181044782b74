#!/usr/bin/env python3
"""The detection thread against a slow disk: events committed inline (the old way) or by the outbox writer.

Drives the real tracking and event stages (`FaceStages`) + `MqttSink` + mosquitto at a camera's pace
(`--fps` frames per second per camera, `--faces` faces each, an event per face per frame) and measures, per
mode, in the same run:

  * detection fps: frames the detection thread got through per second (it cannot beat the pace; it falls
    behind when the sink blocks it), and its time per frame in the event stage (mean and p99);
  * frame-to-event latency: from a frame being due (by the pace) to a subscriber receiving its event,
    so a detection thread that falls behind shows in it.

For the writer it also prints the commits' lag (submit to committed: `commit_interval` bounds it) as
percentiles and the share of late ones, how long a commit takes, the latency split at the commit, the WAL
checkpoints, and with `--strace-log` (a `strace -f -ttt -o LOG` of the same run) how many fsyncs each commit
made.

Modes: `inline` commits each frame's events on the detection thread (a transaction with synchronous=full,
as before the writer); `writer` hands them to the outbox writer. Make fsync slow on purpose, as on an SD
card, by running the whole script under strace's fault injection:

    strace -f --seccomp-bpf -e trace=fdatasync,fsync -e inject=fdatasync:delay_enter=50ms \\
        -e inject=fsync:delay_enter=50ms -o /dev/null .venv/bin/python scripts/bench_outbox_writer.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "scripts"))

import paho.mqtt.client as mqtt  # noqa: E402
from bench_events import events_config, frames, mosquitto, run_paced  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from nvr.daemon.stages import FaceStages  # noqa: E402
from nvr.events.payload import FaceEvent  # noqa: E402
from nvr.mqtt.config import MqttConfig, OutboxConfig  # noqa: E402
from nvr.mqtt.outbox import NewMessage  # noqa: E402
from nvr.mqtt.sink import MqttSink  # noqa: E402
from nvr.mqtt.writer import Batch, OutboxWriter  # noqa: E402


class InlineSink(MqttSink):
    """The baseline: each frame's messages committed on the calling (detection) thread."""

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        messages: list[NewMessage] = []
        for event in events:
            messages += self._messages(event)
        if messages:
            outbox = self.publisher.outbox
            outbox.put(messages)
            if outbox.writer.on_commit is not None:
                outbox.writer.on_commit()


def pct(values: Sequence[float], q: float) -> float:
    return values[int(q * (len(values) - 1))] if values else 0.0


Commit = tuple[int, float, float, float, int]  # thread id, wall start, wall end, lag s, messages


def record_commits(
    writer: OutboxWriter, committed: dict[float, float]
) -> tuple[list[Commit], Callable[[], None]]:
    """Wrap the writer's commit function: a record per commit, and a function that fills `committed`
    (frame_time -> monotonic time its event was committed) after the run from the batches kept."""
    records: list[Commit] = []
    batches: list[tuple[float, list[NewMessage]]] = []
    commit = writer._commit

    def timed(batch: Batch) -> object:
        start = time.time()
        result = commit(batch)
        now = time.monotonic()
        lag = now - (batch.since or now)
        records.append((threading.get_native_id(), start, time.time(), lag, len(batch.messages)))
        batches.append((now, batch.messages))
        return result

    def fill() -> None:
        for when, messages in batches:
            for m in messages:
                if m.topic.endswith("/face"):
                    committed.setdefault(json.loads(m.payload)["frame_time"], when)

    writer._commit = timed
    return records, fill


def fsyncs_per_commit(log_path: str, commits: Sequence[tuple[int, float, float, float, int]]) -> None:
    """Count the fsync/fdatasync calls (from `strace -f -ttt -o LOG`) each commit made, and those outside."""
    import bisect
    import collections
    import re

    calls: list[tuple[float, int, str]] = []
    pattern = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(fsync|fdatasync)\((\d+)")
    with open(log_path) as f:
        for line in f:
            m = pattern.match(line)
            if m:
                calls.append((float(m.group(2)), int(m.group(1)), m.group(3) + "(" + m.group(4) + ")"))
    calls.sort()
    times = [c[0] for c in calls]
    per_commit: collections.Counter[int] = collections.Counter()
    late_by_count: collections.Counter[int] = collections.Counter()
    inside = 0
    for tid, start, end, lag, _ in commits:
        window = calls[bisect.bisect_left(times, start) : bisect.bisect_right(times, end)]
        n = sum(1 for c in window if c[1] == tid)
        inside += n
        per_commit[n] += 1
        if lag > 0.1:
            late_by_count[n] += 1
    kinds = collections.Counter(c[2] for c in calls)
    print(f"fsyncs per commit: {dict(sorted(per_commit.items()))}; late commits by fsync count: "
          f"{dict(sorted(late_by_count.items()))}; calls in the log: {dict(kinds)}, outside commits: "
          f"{len(calls) - inside}")  # fmt: skip


def run(mode: str, host: str, port: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """One mode's figures."""
    work = frames(args.cameras, args.faces, args.frames)
    received: dict[float, float] = {}  # frame_time -> first arrival (monotonic)
    done = threading.Event()
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{mode}")

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        frame_time = json.loads(message.payload)["frame_time"]
        received.setdefault(frame_time, time.monotonic())

    subscriber.on_message = on_message
    subscriber.connect(host, port)
    subscriber.subscribe("nvr/+/face", qos=1)
    subscriber.loop_start()
    config = MqttConfig(
        host=host, port=port, node_id=f"bench-{mode}", stats_interval=0, discovery={"enabled": False},
        outbox=OutboxConfig(path=workdir / f"{mode}.sqlite3"),
    )  # fmt: skip
    sink = (InlineSink if mode == "inline" else MqttSink)(config)
    committed: dict[float, float] = {}  # frame_time -> when its event was committed (writer mode)
    commits: list[Commit] = []
    fill_committed: Callable[[], None] = lambda: None  # noqa: E731
    if mode == "writer":
        commits, fill_committed = record_commits(sink.publisher.outbox.writer, committed)
    sink.publisher.wait_connected(10)
    stage = FaceStages(events_config(False), sink)
    due_times, per_frame, elapsed = run_paced(stage, work, args.fps * args.cameras)
    handed: dict[float, float] = {}  # frame_time -> when the frame was due (a late stage adds to latency)
    for frame, due in zip(work, due_times, strict=True):
        handed.setdefault(round(frame.capture_time, 6), due)
    stage.close()
    deadline = time.monotonic() + 60
    while sink.publisher.outbox_pending and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    sink.close()
    subscriber.loop_stop()
    subscriber.disconnect()
    done.set()
    latencies = [received[t] - handed[t] for t in sorted(handed) if t in received]
    to_commit: list[float] = []
    to_receive: list[float] = []
    if mode == "writer":
        fill_committed()
        to_commit = sorted(committed[t] - handed[t] for t in handed if t in committed and t in received)
        to_receive = sorted(received[t] - committed[t] for t in handed if t in committed and t in received)
    if args.verbose:
        step = max(1, len(latencies) // 40)
        print(mode, "latency ms over time:", [round(v * 1e3) for v in latencies[::step]])
    writer = sink.publisher.outbox.writer
    lags = sorted(c[3] for c in commits)
    durations = sorted(c[2] - c[1] for c in commits)
    if args.strace_log and mode == "writer":
        fsyncs_per_commit(args.strace_log, commits)
    checkpointer = sink.publisher.outbox.checkpointer
    return {
        "checkpoints": checkpointer.checkpoints,
        "restarts": checkpointer.restarts,
        "max_wal_frames": checkpointer.max_wal_frames,
        "to_commit_ms": pct(to_commit, 0.5) * 1e3,
        "to_commit_p95_ms": pct(to_commit, 0.95) * 1e3,
        "to_receive_ms": pct(to_receive, 0.5) * 1e3,
        "to_receive_p95_ms": pct(to_receive, 0.95) * 1e3,
        "commit_p50_ms": pct(durations, 0.5) * 1e3,
        "commit_p95_ms": pct(durations, 0.95) * 1e3,
        "lag_p50_ms": pct(lags, 0.5) * 1e3,
        "lag_p95_ms": pct(lags, 0.95) * 1e3,
        "lag_p99_ms": pct(lags, 0.99) * 1e3,
        "lag_max_ms": (lags[-1] if lags else 0.0) * 1e3,
        "fps": len(work) / elapsed,
        "stage_ms": statistics.fmean(per_frame) * 1e3,
        "stage_p99_ms": sorted(per_frame)[int(0.99 * (len(per_frame) - 1))] * 1e3,
        "latency_ms": statistics.median(latencies) * 1e3,
        "latency_p95_ms": sorted(latencies)[int(0.95 * (len(latencies) - 1))] * 1e3,
        "events": stage.events_out,
        "commits": writer.commits if mode == "writer" else float(len(work)),
        "late": writer.late_commits,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second per camera")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--faces", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200, help="frames per camera")
    parser.add_argument("--modes", default="inline,writer", help="which of inline,writer to run")
    parser.add_argument("--strace-log", help="an `strace -f -ttt -o` log of this run: fsyncs per commit")
    parser.add_argument("--verbose", action="store_true", help="print latencies over the run")
    args = parser.parse_args()
    results = {}
    with mosquitto() as (host, port), tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            results[mode] = run(mode, host, port, args, Path(tmp))
    target = args.fps * args.cameras
    print(f"\n{args.cameras} cameras x {args.fps:g} fps (pace {target:g} frames/s), {args.faces} faces, "
          f"{args.frames} frames per camera")  # fmt: skip
    header = ("mode", "fps", "stage ms", "p99 ms", "latency ms", "p95 ms", "events", "commits", "late")
    print(f"{header[0]:8}" + "".join(f"{h:>11}" for h in header[1:]))
    for mode, r in results.items():
        keys = ("fps", "stage_ms", "stage_p99_ms", "latency_ms", "latency_p95_ms", "events", "commits")
        print(f"{mode:8}" + "".join(f"{r[k]:11.1f}" for k in keys) + f"{r['late']:11.0f}")
    if "writer" not in results:
        return 0
    r = results["writer"]
    late = r["late"] / max(r["commits"], 1)
    print(f"writer commits: {late:.1%} late; commit lag ms p50 {r['lag_p50_ms']:.1f}"
          f" p95 {r['lag_p95_ms']:.1f} p99 {r['lag_p99_ms']:.1f} max {r['lag_max_ms']:.1f}; a commit takes"
          f" ms p50 {r['commit_p50_ms']:.1f} p95 {r['commit_p95_ms']:.1f}")  # fmt: skip
    print(f"checkpoints {r['checkpoints']:.0f} (WAL up to {r['max_wal_frames']:.0f} pages), WAL restarts"
          f" forced by the writer {r['restarts']:.0f}")  # fmt: skip
    print(f"writer latency split (median / p95 ms): frame due -> committed {r['to_commit_ms']:.1f} /"
          f" {r['to_commit_p95_ms']:.1f}, committed -> received {r['to_receive_ms']:.1f} /"
          f" {r['to_receive_p95_ms']:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
