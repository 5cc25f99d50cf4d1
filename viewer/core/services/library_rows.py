"""The study browser's rows, read from the case store: one per stored series, with the
study's diagnosis and its real tags (as the reader or teaching lists set them)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config import Settings


@dataclass(frozen=True)
class LibraryRow:
    """One stored series as the browser lists it (internal patient key only, no name or ID)."""

    series_id: int
    study_id: int
    key: str
    patient: str
    date: str  # ISO, "" when unknown
    modality: str
    description: str
    images: int
    diagnosis: str
    tags: str  # the study's tags, comma-separated
    body_part: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def library_rows(settings: Settings) -> list[LibraryRow]:
    """One row per stored series; empty when the library has no database yet."""
    if not settings.database_path.exists():
        return []
    from .library import open_store

    store = open_store(settings, create=False)
    try:
        return [LibraryRow(series_id=s.id, study_id=s.study_id, key=s.key, patient=s.patient_key,
                           date=s.study_date.isoformat() if s.study_date else "", modality=s.modality,
                           description=s.description, images=s.slice_count, diagnosis=s.diagnosis or "",
                           tags=", ".join(s.tags), body_part=s.body_part)
                for s in store.list_series()]
    finally:
        store.close()
