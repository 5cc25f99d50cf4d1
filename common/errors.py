"""The root of every Casebook error, and the one cancellation exception.

Each package derives its own family from :class:`CasebookError` (``CaseIndexError``,
``InferenceError``, the viewer's DICOM and configuration errors), so callers that only need to
tell "a domain problem with a clear message" from "a bug" catch one class. Messages name the file,
series or node and the problem, and never carry patient identifiers.
"""
from __future__ import annotations


class CasebookError(Exception):
    """Base class of every error Casebook raises on purpose (a bug raises anything else)."""


class Cancelled(CasebookError):
    """A long operation was stopped through its cancel token; nothing it had stored is lost."""
