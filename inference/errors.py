"""Errors of the inference package."""
from __future__ import annotations


class InferenceError(Exception):
    """Base class of ``casebook.inference`` errors."""


class ModelSpecError(InferenceError):
    """A model file has no valid model card, or its card does not match its graph."""


class PreprocessError(InferenceError):
    """An image cannot be turned into the input a model expects."""


class Cancelled(InferenceError):
    """A long inference operation was stopped through its cancel token."""
