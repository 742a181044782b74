"""The `recognition:` section: who is at the door. Defaults work for a doorbell camera's sub-stream."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

LIBRARY_FILE = "faces.db"  # in the state directory unless `library` says otherwise


class RecognitionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="recognise faces (needs an embedder model and a face library)")
    embedder: str = Field(
        "arcface_mobilefacenet",
        description="embedding model: a catalogue name or an .onnx/.tflite/.hef path",
    )
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="match score a person needs; default: the embedder model's own"
    )
    margin: float = Field(0.05, ge=0.0, le=1.0, description="how far the best person must lead the runner-up")
    min_face_px: float = Field(
        32.0, ge=8.0, description="smaller faces (box side, frame px) are not embedded"
    )
    min_sharpness: float = Field(
        25.0, ge=0.0, description="aligned crops less sharp (Laplacian variance) are not embedded"
    )
    max_embeddings_per_s: float = Field(
        10.0,
        gt=0.0,
        le=1000.0,
        description="embeddings per second over all cameras (detection keeps its rate)",
    )
    stranger_after_embeddings: int = Field(
        5, ge=1, le=100, description="good embeddings matching nobody before a track is a stranger"
    )
    stranger_after_s: float = Field(
        4.0, gt=0.0, le=600.0, description="... or seconds in view with at least one good embedding"
    )
    presence_timeout_s: float = Field(
        60.0, gt=0.0, le=86400.0, description="a person is absent after this long without a sighting"
    )
    keep_crops_days: float = Field(
        7.0, ge=0.0, description="the best aligned crop of each event is kept so long"
    )
    keep_crops_max: int = Field(2000, ge=0, description="... and at most this many crops")
    library: Path | None = Field(None, description="the face library file; default <state_dir>/faces.db")

    @model_validator(mode="after")
    def _library_is_a_file(self) -> RecognitionConfig:
        if self.library is not None and not self.library.name:
            raise ValueError(f"library {str(self.library)!r} names a directory, not a file")
        return self

    def library_path(self, state_dir: Path, config_dir: Path | None = None) -> Path:
        """`library` (relative to the configuration file's folder), else faces.db in the state folder."""
        if self.library is None:
            return (state_dir / LIBRARY_FILE).expanduser()
        library = self.library.expanduser()
        return config_dir / library if config_dir is not None and not library.is_absolute() else library
