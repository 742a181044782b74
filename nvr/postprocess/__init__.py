"""Postprocessors: a model's raw outputs in, faces in original-image pixels out."""

from nvr.postprocess.base import Postprocessor

__all__ = ["Postprocessor"]
