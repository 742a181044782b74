#!/usr/bin/python3
"""A real RTSP server for tests and benchmarks: serves one video file with GStreamer's RTSP server.

Run it with the system Python (it needs `gi` and the Debian packages gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-rtsp, gstreamer1.0-plugins-good/-bad/-ugly):

    /usr/bin/python3 scripts/rtsp_server.py clip.mp4 --port 8554 --path /cam [--loop] [--codec h264|h265]

The file's coded frames are read once into memory and fed to each client's session through an appsrc,
at the file's own rate (the server's sinks sync to the clock), with timestamps that keep increasing when
`--loop` starts the file over. Prints `ready <port>` on stdout once it accepts connections. Commands on
stdin, one per line, apply to every session now and later:

    stall        stop sending media but keep every connection open (a camera gone silent)
    resume       send again
    corrupt N    overwrite random bytes in the next N frames (garbage on the wire)
    quit         exit (so does end of stdin)
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


@dataclass
class AccessUnit:
    data: bytes
    pts: int
    dts: int
    duration: int
    delta: bool


@dataclass
class Clip:
    caps: str
    units: list[AccessUnit]
    duration: int  # ns, one full pass


@dataclass
class Control:
    """What stdin asked for; shared by every session's feeder."""

    stalled: bool = False
    corrupt_left: int = 0
    feeders: list[Feeder] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def load_clip(path: str, codec: str) -> Clip:
    """Demux `path` into byte-stream access units with SPS/PPS before every keyframe."""
    pipeline = Gst.parse_launch(
        f'filesrc location="{path}" ! qtdemux name=d d.video_0 ! {codec}parse config-interval=-1 '
        f"! video/x-{codec},stream-format=byte-stream,alignment=au ! appsink name=sink sync=false"
    )
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    units: list[AccessUnit] = []
    caps = ""
    while True:
        sample = sink.emit("pull-sample")
        if sample is None:
            break
        buf = sample.get_buffer()
        if not caps:
            caps = sample.get_caps().to_string()
        ok, info = buf.map(Gst.MapFlags.READ)
        if ok:
            units.append(
                AccessUnit(
                    bytes(info.data), buf.pts, buf.dts if buf.dts != Gst.CLOCK_TIME_NONE else buf.pts,
                    buf.duration, bool(buf.get_flags() & Gst.BufferFlags.DELTA_UNIT),
                )
            )
            buf.unmap(info)
    message = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message is not None or not units:
        detail = message.parse_error()[0].message if message is not None else "no frames"
        raise SystemExit(f"rtsp_server: cannot read {path}: {detail}")
    start = min(min(u.pts, u.dts) for u in units)  # with B-frames, decoding starts before presentation
    frame = units[1].dts - units[0].dts if len(units) > 1 else 40_000_000
    for u in units:
        u.pts -= start
        u.dts -= start
    duration = max(u.pts for u in units) + (units[-1].duration if units[-1].duration > 0 else frame)
    return Clip(caps, units, duration)


class Feeder:
    """Pushes the clip into one session's appsrc when it asks for data."""

    def __init__(self, appsrc: Any, clip: Clip, loop: bool, control: Control) -> None:
        self.appsrc = appsrc
        self.clip = clip
        self.loop = loop
        self.control = control
        self.index = 0
        self.offset = 0
        self.waiting = False
        self.done = False
        self.rng = random.Random(1)
        appsrc.connect("need-data", lambda _src, _len: self.need_data())

    def need_data(self) -> None:
        with self.control.lock:
            if self.control.stalled:
                self.waiting = True  # `resume` pushes later
                return
        self.push()

    def push(self) -> None:
        self.waiting = False
        if self.done:
            return
        if self.index == len(self.clip.units):
            if not self.loop:
                self.done = True
                self.appsrc.emit("end-of-stream")
                return
            self.index, self.offset = 0, self.offset + self.clip.duration
        unit = self.clip.units[self.index]
        self.index += 1
        data = unit.data
        with self.control.lock:
            if self.control.corrupt_left > 0:
                self.control.corrupt_left -= 1
                data = self.corrupt(data)
        buf = Gst.Buffer.new_wrapped(data)
        buf.pts = unit.pts + self.offset
        buf.dts = unit.dts + self.offset
        buf.duration = unit.duration
        if unit.delta:
            buf.set_flags(Gst.BufferFlags.DELTA_UNIT)
        self.appsrc.emit("push-buffer", buf)

    def corrupt(self, data: bytes) -> bytes:
        garbled = bytearray(data)
        for _ in range(max(8, len(garbled) // 50)):
            i = self.rng.randrange(16, len(garbled)) if len(garbled) > 16 else 0
            garbled[i] = self.rng.randrange(256)
        return bytes(garbled)


def make_factory(clip: Clip, codec: str, loop: bool, control: Control) -> Any:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( appsrc name=src is-live=false format=time caps="{clip.caps}" '
        f"! {codec}parse ! rtp{codec}pay name=pay0 pt=96 config-interval=-1 )"
    )
    factory.set_shared(False)
    factory.set_eos_shutdown(False)

    def configure(_factory: Any, media: Any) -> None:
        appsrc = media.get_element().get_by_name("src")
        feeder = Feeder(appsrc, clip, loop, control)
        with control.lock:
            control.feeders.append(feeder)

    factory.connect("media-configure", configure)
    return factory


def read_commands(control: Control, main_loop: Any) -> None:
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] in ("stall", "resume"):
            with control.lock:
                control.stalled = words[0] == "stall"
                waiting = [f for f in control.feeders if f.waiting] if not control.stalled else []
            for feeder in waiting:
                GLib.idle_add(feeder.push)
        elif words[0] == "corrupt" and len(words) == 2:
            with control.lock:
                control.corrupt_left = int(words[1])
        else:
            print(f"unknown command: {line.strip()}", file=sys.stderr, flush=True)
            continue
        print(f"ok {words[0]}", flush=True)
    GLib.idle_add(main_loop.quit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--port", type=int, default=8554, help="0: any free port")
    parser.add_argument("--path", default="/stream")
    parser.add_argument("--codec", choices=("h264", "h265"), default="h264")
    parser.add_argument("--loop", action="store_true", help="start the file over at its end")
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args()

    Gst.init(None)
    clip = load_clip(args.file, args.codec)
    control = Control()
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(args.path, make_factory(clip, args.codec, args.loop, control))
    main_loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1
    print(f"ready {server.get_bound_port()}", flush=True)
    threading.Thread(target=read_commands, args=(control, main_loop), daemon=True).start()
    main_loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
