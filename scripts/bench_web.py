#!/usr/bin/env python3
"""How fast the web UI's API answers with thousands of events and hundreds of samples, and what the
recent-events ring costs the frame path.

An in-process web server (the daemon's own code) over a real face library file with PEOPLE people x SAMPLES
samples (real aligned-size JPEG crops, 512-d embeddings), stranger groups, and EVENTS events in the ring
(the newest with real snapshot JPEGs). Requests go over loopback HTTP with keep-alive and a bearer token,
one client at a time. Figures are per request (p50 / p95, ms); ratios against `/api/session` (the bare HTTP +
auth cost) carry over to other machines.

    .venv/bin/python scripts/bench_web.py [--events 5000] [--people 50] [--samples 10] [--rounds 200]
"""

from __future__ import annotations

import argparse
import http.client
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from nvr.assets import assets_dir  # noqa: E402
from nvr.events.payload import FaceEvent, FaceObservation  # noqa: E402
from nvr.recognition.library import FaceLibrary  # noqa: E402
from nvr.recognition.strangers import StrangerStore  # noqa: E402
from nvr.web.app import create_web_server  # noqa: E402
from nvr.web.config import WebConfig  # noqa: E402
from nvr.web.faces import LibraryStrangers  # noqa: E402
from nvr.web.recent import RecentEvents  # noqa: E402

PASSWORD = "benchmark password"
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")


def jpeg(path: Path, side: int) -> bytes:
    with Image.open(path) as image:
        rgb = image.convert("RGB").resize((side, side))
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=85)
    return out.getvalue()


def event(n: int, snapshot: bytes | None) -> FaceEvent:
    start = 1_763_683_200.0 + n
    face = FaceObservation(start, (10.0, 20.0, 90.0, 120.0), 0.9, ((50.0, 60.0),) * 5, LANDMARKS)
    return FaceEvent("update", f"{int(start)}.000000-{n:06d}", f"cam{n % 4}", start, None, (640, 360), 5,
                     face, face, snapshot)  # fmt: skip


class Timer:
    def __init__(self, url: str) -> None:
        self.connection = http.client.HTTPConnection(url.split("//")[1], timeout=30)
        self.headers = {"Authorization": f"Bearer {PASSWORD}"}

    def get(self, path: str) -> bytes:
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"bench_web: GET {path} -> {response.status} {body[:200]!r}")
        return body

    def measure(self, paths: list[str]) -> tuple[float, float]:
        times = []
        for path in paths:
            started = time.perf_counter()
            self.get(path)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.95) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--people", type=int, default=50)
    parser.add_argument("--samples", type=int, default=10, help="samples per person")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    faces = sorted((assets_dir() / "faces").glob("*/*.*"))
    crops = [jpeg(p, 112) for p in faces]
    snapshots = [jpeg(p, 320) for p in faces]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="nvr-bench-web-") as temp:
        library = FaceLibrary(Path(temp) / "faces.db")
        started = time.perf_counter()
        for p in range(args.people):
            samples = [(crops[(p + s) % len(crops)], {"bench": rng.standard_normal(512)}, "bench")
                       for s in range(args.samples)]  # fmt: skip
            library.enrol(f"Person {p:03d}", samples)
        enrol_s = time.perf_counter() - started
        store = StrangerStore(library.path)
        for g in range(20):
            for k in range(5):
                vector = rng.standard_normal(512).astype(np.float32)
                store.record(vector / np.linalg.norm(vector), "bench", crops[(g + k) % len(crops)],
                             camera="cam0", event_id=f"1763683200.{g:06d}-x{k:05d}", time=float(g),
                             join_threshold=2.0)  # fmt: skip

        recent = RecentEvents(capacity=args.events)
        batch = [event(n, snapshots[n % len(snapshots)] if n >= args.events - 200 else None)
                 for n in range(args.events)]  # fmt: skip
        started = time.perf_counter()
        for item in batch:
            recent.record([item])
        record_us = (time.perf_counter() - started) / len(batch) * 1e6
        started = time.perf_counter()
        for item in batch:
            item.to_json()
        json_us = (time.perf_counter() - started) / len(batch) * 1e6

        server = create_web_server(
            WebConfig(port=0), recent, library=library, strangers=LibraryStrangers(store, library),
            password=PASSWORD,
        )  # fmt: skip
        server.start()
        try:
            timer = Timer(server.url)
            rounds = args.rounds
            person = library.people()[args.people // 2]
            sample = library.samples(person)[0].id
            newest = batch[-1].id
            deep = recent.page(limit=args.events - 100)[0][-1].seq  # a cursor near the oldest events
            cases = {
                "session (HTTP + auth only)": ["/api/session"] * rounds,
                "events, first page of 50": ["/api/events?limit=50"] * rounds,
                "events, page 50 back (cursor)": [f"/api/events?limit=50&before={deep}"] * rounds,
                "events, one camera, 50": ["/api/events?limit=50&camera=cam3"] * rounds,
                "events changed since (live)": [f"/api/events?after={recent.seq - 5}"] * rounds,
                f"people, {args.people} with counts": ["/api/people?limit=100"] * rounds,
                f"person with {args.samples} samples": [f"/api/people/{person.id}"] * rounds,
                "sample crop (JPEG)": [f"/api/samples/{sample}/crop"] * rounds,
                "strangers, 20 groups": ["/api/strangers"] * rounds,
                "snapshot thumbnail, cached": [f"/api/events/{newest}/snapshot"] * rounds,
            }
            cold_paths = [f"/api/events/{e.id}/snapshot" for e in batch[-rounds:] if e.snapshot]
            results = {"snapshot thumbnail, first time (made)": timer.measure(cold_paths)}
            for name, paths in cases.items():
                timer.measure(paths[:10])  # warm-up
                results[name] = timer.measure(paths)
        finally:
            server.stop()
            library.close()
            store.close()
    base = results["session (HTTP + auth only)"][0]
    print(f"library: {args.people} people x {args.samples} samples enrolled in {enrol_s:.2f} s; "
          f"ring: {args.events} events")  # fmt: skip
    print(
        f"frame path: recording an event in the ring {record_us:.1f} us "
        f"(the event's JSON encoding, for scale: {json_us:.1f} us)"
    )
    print(f"{'request':42s} {'p50 ms':>8s} {'p95 ms':>8s} {'x session':>10s}")
    for name, (p50, p95) in results.items():
        print(f"{name:42s} {p50:8.2f} {p95:8.2f} {p50 / base:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
