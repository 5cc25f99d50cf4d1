"""Errors of the case store and vector index."""
from __future__ import annotations

from casebook.common.errors import Cancelled, CasebookError

__all__ = [
    "CaseIndexError",
    "Cancelled",
    "QueryError",
    "StoreError",
    "UnknownItemError",
    "VectorIndexError",
]


class CaseIndexError(CasebookError):
    """Base class of ``casebook.index`` errors (named to avoid shadowing the builtin)."""


class StoreError(CaseIndexError):
    """The case store database cannot be opened, migrated or written."""


class VectorIndexError(CaseIndexError):
    """The vector index file is missing, corrupt, stale, or was built by another model."""


class QueryError(CaseIndexError):
    """A query is malformed: wrong embedding size, unknown series, bad filter."""


class UnknownItemError(StoreError, QueryError):
    """A study, series, model or tag id that the case store does not hold (or holds as deleted)."""
