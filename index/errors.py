"""Errors of the case store and vector index."""
from __future__ import annotations


class CaseIndexError(Exception):
    """Base class of ``casebook.index`` errors (named to avoid shadowing the builtin)."""


class StoreError(CaseIndexError):
    """The case store database cannot be opened, migrated or written."""


class VectorIndexError(CaseIndexError):
    """The vector index file is missing, corrupt, stale, or was built by another model."""


class QueryError(CaseIndexError):
    """A query is malformed: wrong embedding size, unknown series, bad filter."""


class Cancelled(CaseIndexError):
    """A long index operation was stopped through its cancel token."""


class UnknownItemError(StoreError, QueryError):
    """A study, series, model or tag id that the case store does not hold (or holds as deleted)."""
