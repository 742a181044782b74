"""The daemon's figures for /metrics and /healthz, gathered from the stages at scrape time."""

from __future__ import annotations

import time
from typing import Any

from nvr.capture import CaptureState
from nvr.daemon.cameras import CameraSet
from nvr.daemon.events import EventOutput
from nvr.detection.pipeline import DetectionPipeline
from nvr.events.sink import JsonLinesSink
from nvr.metrics import Health, MetricFamily

STALL_AFTER = 20.0  # seconds without a processed frame while a camera streams = the pipeline is stuck


class DaemonStats:
    def __init__(self, pipeline: DetectionPipeline, cameras: CameraSet, events: EventOutput) -> None:
        self._pipeline = pipeline
        self._cameras = cameras
        self._events = events
        self._started = time.monotonic()
        self._last_tick = time.monotonic()
        self._last_frames = 0
        self._last_seconds = 0.0
        self.inference_fps = 0.0
        self.inference_latency = 0.0  # seconds per frame over the last tick
        self._camera_frames: dict[str, int] = {}
        self.camera_fps: dict[str, float] = {}

    def tick(self) -> None:
        """Called about once a second by the control loop: turn counters into rates."""
        now = time.monotonic()
        elapsed = now - self._last_tick
        if elapsed <= 0:
            return
        counters = self._pipeline.counters
        frames = counters.frames - self._last_frames
        self.inference_fps = frames / elapsed
        spent = counters.inference_seconds - self._last_seconds
        self.inference_latency = spent / frames if frames else self.inference_latency
        self._last_tick, self._last_frames = now, counters.frames
        self._last_seconds = counters.inference_seconds
        for name, camera in list(counters.cameras.items()):
            before = self._camera_frames.get(name, camera.processed)
            self.camera_fps[name] = (camera.processed - before) / elapsed
            self._camera_frames[name] = camera.processed
        for gone in set(self.camera_fps) - set(counters.cameras):
            self.camera_fps.pop(gone, None)
            self._camera_frames.pop(gone, None)

    def collect(self) -> list[MetricFamily]:
        capture = self._cameras.stats()
        pipeline = self._pipeline.counters
        state = MetricFamily("camera_up", "gauge", "1 while the camera's stream delivers frames")
        input_fps = MetricFamily("camera_input_fps", "gauge", "frames per second decoded from the stream")
        sampled_fps = MetricFamily("camera_sampled_fps", "gauge", "frames per second sampled for detection")
        detect_fps = MetricFamily("camera_detected_fps", "gauge", "frames per second through detection")
        skipped = MetricFamily("camera_skipped_frames_total", "counter", "sampled frames dropped (busy)")
        superseded = MetricFamily(
            "camera_superseded_frames_total", "counter", "waiting frames replaced by a newer one (fairness)"
        )
        reconnects = MetricFamily("camera_reconnects_total", "counter", "reconnection attempts")
        errors = MetricFamily("camera_decode_errors_total", "counter", "packets the decoder rejected")
        faces = MetricFamily("camera_faces_total", "counter", "faces detected (after the camera's filters)")
        processed = MetricFamily(
            "camera_processed_frames_total", "counter", "frames whose faces reached the event stage"
        )
        lost = MetricFamily(
            "camera_lost_frames_total", "counter",
            "frames dropped on the way: slot rewritten (stale, torn), engine queue full, inference failed",
        )  # fmt: skip
        for name, stats in capture.items():
            state.add(1.0 if stats.state == CaptureState.STREAMING else 0.0, camera=name)
            input_fps.add(stats.input_fps, camera=name)
            sampled_fps.add(stats.sampled_fps, camera=name)
            detect_fps.add(self.camera_fps.get(name, 0.0), camera=name)
            skipped.add(stats.frames_skipped, camera=name)
            reconnects.add(stats.reconnects, camera=name)
            errors.add(stats.decode_errors, camera=name)
            counters = pipeline.cameras.get(name)
            superseded.add(counters.superseded if counters else 0, camera=name)
            faces.add(counters.faces if counters else 0, camera=name)
            processed.add(counters.processed if counters else 0, camera=name)
            for reason in ("stale", "torn", "dropped", "failed"):
                lost.add(getattr(counters, reason) if counters else 0, camera=name, reason=reason)
        families = [
            state, input_fps, sampled_fps, detect_fps, skipped, superseded, reconnects, errors, faces,
            processed, lost,
        ]  # fmt: skip
        families += [
            MetricFamily("inference_fps", "gauge", "frames/s through the model").add(self.inference_fps),
            MetricFamily(
                "inference_latency_seconds", "gauge", "mean time per frame from the engine's queue to result"
            ).add(self.inference_latency),
            MetricFamily("inference_in_flight", "gauge", "frames in the inference engine now").add(
                self._pipeline.in_flight
            ),
            MetricFamily("inference_in_flight_max", "gauge", "most frames in the engine at once").add(
                pipeline.in_flight_max
            ),
            MetricFamily("inference_frames_total", "counter", "frames through the model").add(
                pipeline.frames
            ),
            MetricFamily("inference_seconds_total", "counter", "sum of the frames' time in the engine").add(
                pipeline.inference_seconds
            ),
            MetricFamily("inference_errors_total", "counter", "frames that failed in detection").add(
                pipeline.errors
            ),
            MetricFamily("detection_queue_depth", "gauge", "cameras with a frame waiting for the model").add(
                self._pipeline.queue_depth
            ),
            MetricFamily("events_published_total", "counter", "face event messages produced").add(
                self._events.stage.events_out
            ),
            MetricFamily("uptime_seconds", "gauge", "seconds since the daemon started").add(
                time.monotonic() - self._started
            ),
        ]
        families += self._sink_metrics()
        families += self._recognition_metrics()
        return families

    def _recognition_metrics(self) -> list[MetricFamily]:
        stage = self._events.stage.recognition
        if stage is None:
            return []
        refused = MetricFamily("recognition_faces_refused_total", "counter", "faces not embedded, by reason")
        refused.add(stage.counters["refused_quality"], reason="size_or_pose")
        refused.add(stage.counters["refused_sharpness"], reason="sharpness")
        refused.add(stage.identities.skipped_budget, reason="budget")
        refused.add(stage.counters["skipped_busy"], reason="embedder_busy")
        return [
            MetricFamily("recognition_embeddings_total", "counter", "faces embedded").add(
                stage.worker.embedded
            ),
            MetricFamily("recognition_embed_seconds_total", "counter", "time spent embedding").add(
                stage.worker.embed_seconds
            ),
            MetricFamily(
                "recognition_decisions_total", "counter", "face tracks decided (named or unknown)"
            ).add(stage.decided),
            MetricFamily(
                "recognition_decision_seconds_total",
                "counter",
                "sum of the times from a face's first frame to its decision",
            ).add(stage.decided_seconds),
            refused,
        ]

    def _sink_metrics(self) -> list[MetricFamily]:
        publisher = self._events.publisher
        if publisher is None:
            sink = self._events.sink
            if not isinstance(sink, JsonLinesSink):
                return []
            return [
                MetricFamily(
                    "event_file_lines_dropped_total", "counter",
                    "event file lines dropped (the disk stalled for long, or a write failed)",
                ).add(sink.lines_dropped)
            ]  # fmt: skip
        stats: Any = publisher.stats()
        outbox = stats.get("outbox", {})
        dropped = MetricFamily("mqtt_outbox_dropped_total", "counter", "messages dropped from the outbox")
        dropped.add(outbox.get("dropped_full", 0), reason="full")
        dropped.add(outbox.get("dropped_expired", 0), reason="age")
        return [
            MetricFamily("mqtt_connected", "gauge", "1 while connected to the broker").add(
                1.0 if stats.get("connected") else 0.0
            ),
            MetricFamily("mqtt_outbox_depth", "gauge", "messages waiting in the durable outbox").add(
                outbox.get("pending", 0)
            ),
            MetricFamily("mqtt_outbox_bytes", "gauge", "bytes waiting in the durable outbox").add(
                outbox.get("bytes", 0)
            ),
            MetricFamily("mqtt_delivered_total", "counter", "messages the broker acknowledged").add(
                stats.get("delivered", 0)
            ),
            dropped,
        ]

    def summary(self) -> dict[str, object]:
        """The `<prefix>/stats` payload: per-camera rates and the engine's figures."""
        capture = self._cameras.stats()
        return {
            "cameras": {
                name: {
                    "state": s.state.name.lower(),
                    "input_fps": round(s.input_fps, 2),
                    "detect_fps": round(self.camera_fps.get(name, 0.0), 2),
                    "skipped_frames": s.frames_skipped,
                    "reconnects": s.reconnects,
                }
                for name, s in capture.items()
            },
            "inference_fps": round(self.inference_fps, 2),
            "inference_ms": round(self.inference_latency * 1000, 2),
            "uptime": round(time.monotonic() - self._started),
            **self._recognition_summary(),
        }

    def _recognition_summary(self) -> dict[str, object]:
        stage = self._events.stage.recognition
        if stage is None:
            return {}
        worker = stage.worker
        return {
            "recognition": {
                **stage.counters,
                "skipped_budget": stage.identities.skipped_budget,
                "embed_ms": round(1000 * worker.embed_seconds / worker.embedded, 2)
                if worker.embedded
                else None,
                "reembedded": worker.reembedded,
                "embedder_failures": worker.failures,
                "decided": stage.decided,
                "decision_s": round(stage.decided_seconds / stage.decided, 3) if stage.decided else None,
            }
        }

    def health(self) -> Health:
        capture = self._cameras.stats()
        streaming = sorted(name for name, s in capture.items() if s.state == CaptureState.STREAMING)
        down = sorted(name for name, s in capture.items() if s.state != CaptureState.STREAMING)
        last = self._pipeline.counters.last_frame
        since = time.monotonic() - last if last else None
        stalled = since is None or since > STALL_AFTER
        stuck = bool(streaming) and stalled and time.monotonic() - self._started > 30
        details = {
            "cameras_streaming": streaming,
            "cameras_down": down,
            "seconds_since_last_frame": round(since, 2) if since is not None else None,
            "events": self._events.description,
            "recognition": self._events.recognition.status,
        }
        return not stuck, details
