"""From the `recognition:` section to a running recognition stage, or a clear reason why not.

A library that cannot be used (corrupt, written by a newer nvr) or an embedder that cannot be opened does
not stop the daemon: it keeps detecting and publishing face events without identities, says why in the log
(an error) and in /healthz (`recognition`), and `nvr check-config` reports the same problem up front.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from nvr.config import NvrConfig
from nvr.contracts.tracks import TrackSink
from nvr.errors import ConfigError, NvrError
from nvr.families.arcface import Embedder, open_embedder
from nvr.recognition.config import RecognitionConfig
from nvr.recognition.crops import CropStore
from nvr.recognition.library import FaceLibrary
from nvr.recognition.output import RecognitionOutput, RecognitionSink
from nvr.recognition.stage import RecognitionStage
from nvr.recognition.strangers import StrangerStore

log = structlog.get_logger("nvr.daemon")

# When neither the configuration nor the model's catalogue entry gives a threshold (cosine similarity).
FALLBACK_THRESHOLD = 0.4
EMBEDDER_SUFFIXES = (".onnx", ".tflite", ".hef")


def resolve_embedder(config: RecognitionConfig, config_dir: Path) -> tuple[Path, float | None]:
    """The embedder's model file, and the default threshold its catalogue entry gives (if any)."""
    name = config.embedder
    if name.lower().endswith(EMBEDDER_SUFFIXES) or "/" in name:
        path = Path(name).expanduser()
        path = path if path.is_absolute() else config_dir / path
        if not path.is_file():
            raise ConfigError(f"recognition.embedder: no such model file {path}")
        return path, None
    from nvr.assets import models_dir
    from nvr.models.catalogue import load_catalogue

    entries = [e for e in load_catalogue() if name in (e.id, e.family)]
    if not entries:
        raise ConfigError(f"recognition.embedder: {name!r} is neither a model file nor a catalogue model")
    for entry in entries:
        if entry.kind in ("onnx", "tflite") and entry.local_path.is_file():
            return entry.local_path, _threshold_of(entry)
    ids = " or ".join(e.id for e in entries)
    raise ConfigError(
        f"recognition.embedder: {name!r} is not in the model store {models_dir()}: "
        f"run `nvr models pull {ids}`"
    )


def _threshold_of(entry: object) -> float | None:
    value = getattr(entry, "threshold", None)
    return float(value) if isinstance(value, int | float) else None


def open_configured_embedder(config: RecognitionConfig, config_dir: Path) -> tuple[Embedder, float]:
    """The embedder (CPU) and the match threshold to use with it."""
    path, default = resolve_embedder(config, config_dir)
    if path.suffix.lower() == ".hef":
        raise ConfigError(
            f"recognition.embedder: {path}: Hailo embedders are not supported by this daemon yet"
        )
    embedder = open_embedder(path)
    threshold = config.threshold if config.threshold is not None else default or FALLBACK_THRESHOLD
    return embedder, threshold


@dataclass
class RecognitionSetup:
    """What the daemon holds for recognition: the wiring for `FaceStages`, or why it is off."""

    output: RecognitionOutput | None = None
    factory: Callable[[TrackSink], RecognitionStage] | None = None
    status: str = "off"  # for /healthz: "on (<model>, N people)", "off", or "off: <reason>"
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception as exc:  # closing must not hide the shutdown's own errors
                log.warning("recognition did not close cleanly", error=str(exc))


def open_recognition(
    config: NvrConfig, config_dir: Path, state_dir: Path, sink: RecognitionSink
) -> RecognitionSetup:
    recognition = config.recognition
    setup = RecognitionSetup()
    if not recognition.enabled:
        return setup
    try:
        embedder, threshold = open_configured_embedder(recognition, config_dir)
    except NvrError as exc:
        setup.status = f"off: {exc.message}"
        log.error("recognition off: the embedder cannot be opened; detecting without it", error=exc.message)
        return setup
    setup.closers.append(embedder.close)
    library_path = recognition.library_path(state_dir)
    try:
        library = FaceLibrary(library_path)
        setup.closers.append(library.close)
        strangers = StrangerStore(library_path)
        setup.closers.append(strangers.close)
    except NvrError as exc:
        setup.close()
        setup.status = f"off: {exc.message}"
        log.error("recognition off: the face library cannot be used; detecting without it", error=exc.message)
        return setup
    crops = CropStore(state_dir, recognition.keep_crops_days, recognition.keep_crops_max)
    output = RecognitionOutput(sink, recognition.presence_timeout_s, crops)
    setup.closers.append(output.close)
    enabled = {c.name for c in config.cameras if getattr(c, "recognition", True)}

    def factory(downstream: TrackSink) -> RecognitionStage:
        stage = RecognitionStage(
            recognition, embedder, library, downstream, output,
            threshold=threshold, strangers=strangers, cameras=enabled.__contains__,
        )  # fmt: skip
        setup.closers.insert(0, stage.close)
        return stage

    setup.output, setup.factory = output, factory
    people = len(library.people())
    setup.status = f"on ({embedder.model_id}, threshold {threshold:g}, {people} people)"
    log.info(
        "recognition on", embedder=embedder.model_id, backend=embedder.backend, threshold=threshold,
        library=str(library_path), people=people,
    )  # fmt: skip
    return setup
