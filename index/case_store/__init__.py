"""The case store: patients, studies, series, reports, teaching fields and embeddings in SQLite.

Open with :meth:`CaseStore.open`; the schema is migrated (alembic) on open. Inputs and outputs
are the plain dataclasses of :mod:`.records`, never ORM objects.
"""
from pathlib import Path

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
from .store import CaseStore, EmbeddingSet, StoreEmbeddingSource, fts_query


def open_store(path: str | Path, *, create: bool = True, migrate: bool = True) -> CaseStore:
    """Open (create, migrate) the case store at ``path``; same as :meth:`CaseStore.open`."""
    return CaseStore.open(path, create=create, migrate=migrate)


__all__ = [
    "AddResult", "CaseFilter", "CaseStore", "EmbeddingRow", "EmbeddingSet", "FileState", "InstanceRecord",
    "InstanceSummary", "ModelRecord", "PatientSummary", "Report", "SeriesSummary", "StackRecord",
    "StoreEmbeddingSource", "StoreStats", "StudySummary", "TeachingInfo", "TextHit", "fts_query", "open_store",
]
