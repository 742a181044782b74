#!/usr/bin/env python3
"""The detection thread against a slow disk without a broker: the JSON-lines event file written on it
(`inline`, as before the file had a writer thread: each frame waits for its lines) or by the file's own
thread (`writer`).

Drives the real tracking and event stages (`FaceStages`) + `JsonLinesSink` at a camera's pace (`--fps`
per camera, `--faces` faces each, an event per face per frame) and prints, per mode, the frames per second
the detection thread got through (it cannot beat the pace) and its time per frame in the event stage. Make
writes slow on purpose by running it under strace's fault injection (logging is kept to warnings, so the
event file is what writes during the run):

    strace -f --seccomp-bpf -e trace=write -e inject=write:delay_enter=20ms -o /dev/null \\
        .venv/bin/python scripts/bench_event_file.py
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "scripts"))

from bench_events import events_config, frames, run_paced  # noqa: E402

from nvr.daemon.stages import FaceStages  # noqa: E402
from nvr.events.config import EventFileConfig  # noqa: E402
from nvr.events.payload import FaceEvent  # noqa: E402
from nvr.events.sink import JsonLinesSink  # noqa: E402


class InlineFileSink(JsonLinesSink):
    """The baseline, as before the writer thread: each line written (and flushed) on the detection thread."""

    def publish_events(self, events: Sequence[FaceEvent]) -> None:
        for event in events:
            self.publish_event(event)
            self.flush()


def run(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    work = frames(args.cameras, args.faces, args.frames)
    config = EventFileConfig(path=workdir / f"{mode}.jsonl")
    sink = (InlineFileSink if mode == "inline" else JsonLinesSink)(config)
    stage = FaceStages(events_config(False), sink)
    _, per_frame, elapsed = run_paced(stage, work, args.fps * args.cameras)
    stage.close()
    sink.close(timeout=120)
    return {
        "fps": len(work) / elapsed,
        "stage_ms": statistics.fmean(per_frame) * 1e3,
        "stage_p99_ms": sorted(per_frame)[int(0.99 * (len(per_frame) - 1))] * 1e3,
        "events": float(stage.events_out),
        "written": float(sink.events_written),
        "dropped": float(sink.lines_dropped),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second per camera")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--faces", type=int, default=3)
    parser.add_argument("--frames", type=int, default=200, help="frames per camera")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("inline", "writer"):
            results[mode] = run(mode, args, Path(tmp))
    print(f"{args.cameras} cameras x {args.fps:g} fps, {args.faces} faces, {args.frames} frames per camera")
    header = ("mode", "fps", "stage ms", "p99 ms", "events", "written", "dropped")
    print(f"{header[0]:8}" + "".join(f"{h:>10}" for h in header[1:]))
    for mode, r in results.items():
        print(f"{mode:8}" + "".join(f"{r[k]:10.1f}" for k in ("fps", "stage_ms", "stage_p99_ms", "events",
                                                                "written", "dropped")))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
