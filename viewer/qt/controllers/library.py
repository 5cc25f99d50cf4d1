"""Reads the case store into rows for the study browser."""
from __future__ import annotations

import logging
from typing import Any

from casebook.viewer.core.config import Settings

log = logging.getLogger(__name__)


def library_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per stored series; empty when the library has no database yet."""
    if not settings.database_path.exists():
        return []
    from casebook.index import case_store

    open_store = getattr(case_store, "open_store", None) or getattr(case_store, "CaseStore", None)
    if open_store is None:
        raise RuntimeError("this build's case store has no open_store/CaseStore API")
    store = open_store(settings.database_path)
    lister = getattr(store, "list_series", None)
    if lister is None:
        raise RuntimeError("this build's case store cannot list series")
    rows = []
    for s in lister():
        g = (lambda k, d="": getattr(s, k, None) if not isinstance(s, dict) else s.get(k, d))
        rows.append({"patient": g("patient_name") or g("patient_id"), "date": g("study_date"), "modality": g("modality"),
                     "description": g("series_description") or g("study_description"),
                     "images": g("n_instances") or g("instance_count"), "diagnosis": g("diagnosis"),
                     "tags": ", ".join(g("tags") or []), "key": g("key"), "path": g("folder") or g("path"),
                     "series_id": g("id")})
    return rows
