"""Inference backends: a letterboxed uint8 RGB model input in, raw output maps out (one file per backend)."""

from nvr.backends.base import InferenceBackend

__all__ = ["InferenceBackend"]
