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

from nvr.backends import plugin
from nvr.config import NvrConfig
from nvr.contracts.tracks import TrackSink
from nvr.errors import ConfigError, ModelError, NvrError
from nvr.families.arcface import DEFAULT_MEAN, DEFAULT_STD, open_embedder
from nvr.models.catalogue import load_catalogue
from nvr.models.resolve import ResolvedModel, cpu_counterpart, resolve_model
from nvr.recognition.config import RecognitionConfig
from nvr.recognition.crops import CropStore
from nvr.recognition.library import FaceLibrary
from nvr.recognition.output import RecognitionOutput, RecognitionSink
from nvr.recognition.stage import EmbedderLike, RecognitionStage
from nvr.recognition.strangers import StrangerStore

log = structlog.get_logger("nvr.daemon")
HAILO = "hailo"

# When neither the configuration nor the model's catalogue entry gives a threshold (cosine similarity).
FALLBACK_THRESHOLD = 0.4
PUBLISHED_PEOPLE = "published_people.json"  # whose presence topics and entities are on the broker


@dataclass(frozen=True, slots=True)
class EmbedderChoice:
    model: ResolvedModel
    threshold: float
    mean: float
    std: float


def resolve_embedder(config: RecognitionConfig, config_dir: Path) -> EmbedderChoice:
    """The configured embedder (catalogue name or path, relative to the config file's folder), with its
    catalogue defaults: match threshold and normalisation. Errors name `recognition.embedder`."""
    try:
        model = resolve_model(config.embedder, base_dir=config_dir)
    except NvrError as exc:
        raise ConfigError(f"recognition.embedder: {exc.message}") from None
    return _choice(model, config)


def _choice(model: ResolvedModel, config: RecognitionConfig) -> EmbedderChoice:
    entry = next((e for e in load_catalogue() if e.file_name == model.path.name), None)
    default = entry.match_threshold if entry is not None and entry.match_threshold else FALLBACK_THRESHOLD
    threshold = config.threshold if config.threshold is not None else default
    mean = entry.input_mean if entry is not None and entry.input_mean is not None else DEFAULT_MEAN
    std = entry.input_std if entry is not None and entry.input_std is not None else DEFAULT_STD
    return EmbedderChoice(model, threshold, mean, std)


def hailo_embedder_hef(config: NvrConfig, config_dir: Path) -> Path | None:
    """The embedder HEF to configure beside a Hailo detector on its VDevice, when both are HEFs."""
    if not config.recognition.enabled:
        return None
    try:
        choice = resolve_embedder(config.recognition, config_dir)
    except NvrError:
        return None  # reported when recognition opens
    return choice.model.path if choice.model.backend == HAILO else None


def open_configured_embedder(
    config: RecognitionConfig, config_dir: Path, hailo: EmbedderLike | None = None
) -> tuple[EmbedderLike, float]:
    """The embedder and the match threshold to use with it. A HEF embedder is the one configured on the
    detector's VDevice (`hailo`); without one (the detector runs on the CPU) the catalogue's CPU model of
    the same family is used."""
    choice = resolve_embedder(config, config_dir)
    model = choice.model
    if model.backend == HAILO:
        if hailo is not None:
            return hailo, choice.threshold
        cpu = cpu_counterpart(model, "embed with on the CPU (the detector is not on the Hailo)", ModelError)
        log.warning("recognition embeds on the CPU: the detector is not on the Hailo", model=cpu.path.name)
        choice = _choice(cpu, config)  # the CPU model's own threshold and normalisation
    # One thread: the model then computes in the recognition stage's own (low-priority) thread.
    single = {key: plugin(key).config.model_validate({"threads": 1}) for key in ("onnx", "tflite")}
    embedder = open_embedder(choice.model.path, mean=choice.mean, std=choice.std, configs=single)
    return embedder, choice.threshold


@dataclass
class RecognitionSetup:
    """What the daemon holds for recognition: the wiring for `FaceStages`, or why it is off."""

    output: RecognitionOutput | None = None
    factory: Callable[[TrackSink], RecognitionStage] | None = None
    status: str = "off"  # for /healthz: "on (<model>, N people)", "off", or "off: <reason>"
    cameras: set[str] = field(default_factory=set)  # cameras with recognition on (updated on reload)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            try:
                close()
            except Exception as exc:  # closing must not hide the shutdown's own errors
                log.warning("recognition did not close cleanly", error=str(exc))


def open_recognition(
    config: NvrConfig,
    config_dir: Path,
    state_dir: Path,
    sink: RecognitionSink,
    hailo_embedder: EmbedderLike | None = None,
) -> RecognitionSetup:
    """`hailo_embedder`: the embedder HEF configured on the detector's VDevice (its engine owns it)."""
    recognition = config.recognition
    setup = RecognitionSetup()
    if not recognition.enabled:
        return setup
    try:
        embedder, threshold = open_configured_embedder(recognition, config_dir, hailo_embedder)
    except NvrError as exc:
        setup.status = f"off: {exc.message}"
        log.error("recognition off: the embedder cannot be opened; detecting without it", error=exc.message)
        return setup
    if embedder is not hailo_embedder:
        setup.closers.append(embedder.close)
    library_path = recognition.library_path(state_dir, config_dir)
    try:
        library = FaceLibrary(library_path)
        setup.closers.append(library.close)
        strangers = StrangerStore(library_path, busy_timeout=1.0)
        setup.closers.append(strangers.close)
    except NvrError as exc:
        setup.close()
        setup.status = f"off: {exc.message}"
        log.error("recognition off: the face library cannot be used; detecting without it", error=exc.message)
        return setup
    crops = CropStore(state_dir, recognition.keep_crops_days, recognition.keep_crops_max)
    output = RecognitionOutput(sink, recognition.presence_timeout_s, crops, state_dir / PUBLISHED_PEOPLE)
    setup.closers.append(output.close)
    output.keep_strangers(strangers, threshold)
    setup.cameras.update(c.name for c in config.cameras if c.recognition)
    enabled = setup.cameras

    def factory(downstream: TrackSink) -> RecognitionStage:
        stage = RecognitionStage(
            recognition, embedder, library, downstream, output,
            threshold=threshold, cameras=enabled.__contains__,
        )  # fmt: skip
        setup.closers.insert(0, stage.close)
        return stage

    setup.output, setup.factory = output, factory
    people = len(library.people())
    setup.status = f"on ({embedder.model_id}, threshold {threshold:g}, {people} people)"
    log.info(
        "recognition on", embedder=embedder.model_id, backend=getattr(embedder, "backend", "hailo"),
        threshold=threshold,
        library=str(library_path), people=people,
    )  # fmt: skip
    return setup
