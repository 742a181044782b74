#!/usr/bin/env python3
"""Capture cost against FFmpeg: CPU seconds per second of video, same RTSP stream, same run.

For a 720p and a 1080p H.264 stream (made from the test video with ffmpeg, served by
scripts/rtsp_server.py over RTSP/TCP on this machine) it measures:

- ffmpeg: `ffmpeg -rtsp_transport tcp -i URL -f null -` decoding the whole stream (the baseline);
- nvr: one `CaptureProcess` decoding every frame, sampling 5 fps, letterboxing into the ring's
  640x640 model input and 1280x720 snapshot (`--snapshot`; a consumer here releases the slots).

Both are paced by the server at the video's own rate, so each figure is the CPU time the process used
divided by the seconds of video it decoded; the two alternate `--repeat` times and each keeps its
least CPU, since other work on the machine only ever adds to it. Target: nvr <= 1.3x ffmpeg.

    .venv/bin/python scripts/bench_capture.py [--seconds 20] [--sizes 720p,1080p] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from nvr.assets import assets_dir  # noqa: E402
from nvr.capture import Backoff, CameraSpec, CaptureProcess, CaptureState, FrameFeed  # noqa: E402
from nvr.contracts.frameslots import RingLayout, remove_stale_segments  # noqa: E402

SIZES = {"720p": (1280, 720, "3M"), "1080p": (1920, 1080, "6M")}
FPS = 30
DETECT_FPS = 5.0
TARGET = 1.3
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    size: str
    ffmpeg_cpu: float  # CPU seconds per second of video
    nvr_cpu: float
    video_seconds: float
    nvr_frames: int
    nvr_written: int
    nvr_skipped: int


def make_stream(workdir: Path, size: str, seconds: int) -> Path:
    width, height, bitrate = SIZES[size]
    out = workdir / f"bench_{size}_{seconds}s.mp4"
    if out.exists():
        return out
    source = assets_dir() / "video" / "hamilton_clip.mp4"
    if not source.exists():
        raise SystemExit(f"bench_capture: missing asset {source}")
    # A camera-like stream: H.264 High, 2 s GOP, no B-frames, constant-ish bitrate.
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(source), "-t", str(seconds),
         "-vf", f"scale={width}:{height},fps={FPS}", "-c:v", "libx264", "-preset", "veryfast",
         "-profile:v", "high", "-bf", "0", "-g", str(2 * FPS), "-b:v", bitrate, "-maxrate", bitrate,
         "-bufsize", bitrate, "-pix_fmt", "yuv420p", "-an", "-movflags", "+faststart", str(out)],
        check=True,
    )  # fmt: skip
    return out


class Server:
    def __init__(self, file: Path) -> None:
        script = PROJECT_ROOT / "scripts" / "rtsp_server.py"
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(script), str(file), "--port", "0", "--path", "/bench"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("ready "):
            self.proc.kill()
            raise SystemExit(f"bench_capture: RTSP server did not start ({line.strip()!r})")
        self.url = f"rtsp://127.0.0.1:{line.split()[1]}/bench"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ffmpeg(url: str) -> float:
    """CPU seconds ffmpeg spends decoding the whole stream."""
    before = children_cpu()
    subprocess.run(
        ["ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", url, "-f", "null", "-"], check=True
    )
    return children_cpu() - before


def run_nvr(url: str, size: str, layout: RingLayout) -> tuple[float, int, int, int]:
    """CPU seconds of our decoder process over one pass of the stream; frames decoded, written, skipped."""
    instance = "bench"
    remove_stale_segments(instance)  # left by a bench that was killed
    frames = FrameFeed()
    # A long backoff: when the server's stream ends, the decoder sits idle while we read its CPU time.
    spec = CameraSpec(f"bench{size}", url, detect_fps=DETECT_FPS, backoff=Backoff(initial=60, cap=60))
    cam = CaptureProcess(spec, layout, frames, instance=instance)
    cam.start()
    try:
        while cam.stats().state == CaptureState.STARTING:  # exclude interpreter start-up and imports
            time.sleep(0.01)
        assert cam.pid is not None
        start = process_cpu(cam.pid)
        while cam.stats().state != CaptureState.RECONNECTING or cam.stats().frames_decoded == 0:
            if not cam.is_alive():
                raise SystemExit("bench_capture: the decoder process died")
            try:
                ready = frames.get(timeout=0.05)
            except queue.Empty:
                continue
            cam.ring.release(ready.frame_index)  # the daemon's consumer would run the model here
        used = process_cpu(cam.pid) - start
        stats = cam.stats()
        return used, stats.frames_decoded, stats.frames_written, stats.frames_skipped
    finally:
        cam.stop()
        frames.close()


def bench(size: str, seconds: int, workdir: Path, layout: RingLayout, repeat: int) -> Result:
    """Alternate ffmpeg and nvr `repeat` times; keep each one's least CPU (other load only adds to it)."""
    stream = make_stream(workdir, size, seconds)
    server = Server(stream)
    ffmpeg_runs: list[float] = []
    nvr_runs: list[tuple[float, int, int, int]] = []
    try:
        for _ in range(repeat):
            ffmpeg_runs.append(run_ffmpeg(server.url))
            nvr_runs.append(run_nvr(server.url, size, layout))
    finally:
        server.close()
    nvr_cpu, decoded, written, skipped = min(nvr_runs)
    return Result(size, min(ffmpeg_runs) / seconds, nvr_cpu / seconds, seconds, decoded, written, skipped)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="length of each test stream")
    parser.add_argument("--sizes", default="720p,1080p", help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--workdir", type=Path, help="where to make (and keep) the streams; default: temp")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each, the least CPU counts")
    parser.add_argument("--snapshot", default="1280x720", help="snapshot size in the slot, WxH (0x0: none)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup (`finally`) on SIGTERM
    try:
        snap_w, snap_h = (int(v) for v in args.snapshot.lower().split("x"))
        layout = RingLayout(snapshot_width=snap_w, snapshot_height=snap_h)
    except ValueError:
        parser.error(f"bad --snapshot {args.snapshot!r}: expected WxH")
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r}")
    with tempfile.TemporaryDirectory(prefix="nvr-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = [bench(size, args.seconds, workdir, layout, args.repeat) for size in sizes]
    cores = os.cpu_count()
    print(f"\nCPU s per s of video; {DETECT_FPS:g} fps into 640x640 + {args.snapshot}; {cores} cores")
    print(f"{'stream':8} {'ffmpeg':>8} {'nvr':>8} {'ratio':>7}  frames  written  skipped  (<= {TARGET}x)")
    failed = False
    for r in results:
        ratio = r.nvr_cpu / r.ffmpeg_cpu
        ok = ratio <= TARGET
        failed |= not ok
        print(f"{r.size:8} {r.ffmpeg_cpu:8.3f} {r.nvr_cpu:8.3f} {ratio:6.2f}x  {r.nvr_frames:6d}  "
              f"{r.nvr_written:7d}  {r.nvr_skipped:7d}  {'ok' if ok else 'MISSED'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
