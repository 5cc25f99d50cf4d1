"""Errors of the inference package."""
from __future__ import annotations

from casebook.common.errors import Cancelled, CasebookError

__all__ = ["Cancelled", "InferenceError", "ModelSpecError", "PreprocessError"]


class InferenceError(CasebookError):
    """Base class of ``casebook.inference`` errors."""


class ModelSpecError(InferenceError):
    """A model file has no valid model card, or its card does not match its graph."""


class PreprocessError(InferenceError):
    """An image cannot be turned into the input a model expects."""
