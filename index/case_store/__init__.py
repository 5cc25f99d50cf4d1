"""The case store: patients, studies, series, reports, teaching fields and embeddings in SQLite.

Open with :meth:`CaseStore.open`; the schema is migrated (alembic) on open. Inputs and outputs
are the plain dataclasses of :mod:`.records`, never ORM objects.
"""
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import (
    AddResult,
    CaseFilter,
    EmbeddingRow,
    FileState,
    InstanceRecord,
    InstanceSummary,
    ModelRecord,
    PatientSummary,
    Report,
    SeriesSummary,
    StackRecord,
    StoreStats,
    StudySummary,
    TeachingInfo,
    TextHit,
)

if TYPE_CHECKING:
    from .store import CaseStore, EmbeddingSet, StoreEmbeddingSource, fts_query

# The store module pulls in SQLAlchemy and alembic (a third of a second, more from a cold disk);
# the records above are plain dataclasses. The window imports records at start and the store only
# when it first opens the library, so the store's names load on first use (PEP 562).
_STORE_NAMES = ("CaseStore", "EmbeddingSet", "StoreEmbeddingSource", "fts_query")


def __getattr__(name: str) -> Any:
    if name in _STORE_NAMES:
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(path: str | Path, *, create: bool = True, migrate: bool = True) -> "CaseStore":
    """Open (create, migrate) the case store at ``path``; same as :meth:`CaseStore.open`."""
    from .store import CaseStore

    return CaseStore.open(path, create=create, migrate=migrate)


__all__ = [
    "AddResult", "CaseFilter", "CaseStore", "EmbeddingRow", "EmbeddingSet", "FileState", "InstanceRecord",
    "InstanceSummary", "ModelRecord", "PatientSummary", "Report", "SeriesSummary", "StackRecord",
    "StoreEmbeddingSource", "StoreStats", "StudySummary", "TeachingInfo", "TextHit", "fts_query", "open_store",
]
