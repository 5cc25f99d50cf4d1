"""Reads the case store into rows for the study browser; loads stored series off the UI thread."""
from __future__ import annotations

import logging
from typing import Any

from casebook.viewer.core.config import Settings

log = logging.getLogger(__name__)


def library_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per stored series; empty when the library has no database yet."""
    if not settings.database_path.exists():
        return []
    from casebook.viewer.core.services.library import open_store

    store = open_store(settings, create=False)
    try:
        diagnoses = store.diagnoses()
        rows = []
        for s in store.list_series():
            rows.append({"patient": s.patient_key, "date": s.study_date.isoformat() if s.study_date else "",
                         "modality": s.modality, "description": s.description, "images": s.slice_count,
                         "diagnosis": diagnoses.get(s.id, ""), "tags": s.body_part, "series_id": s.id,
                         "study_id": s.study_id, "key": s.key})
        return rows
    finally:
        store.close()


def load_stored_task(settings: Settings, series_id: int, *, progress, cancel, signals):
    """Load a stored series, showing its middle slice first."""
    import dataclasses

    from casebook.viewer.core.dicom import load_volume
    from casebook.viewer.core.services.library import open_store, stack_for_series

    store = open_store(settings, create=False)
    try:
        stack = stack_for_series(store, int(series_id), cancel=cancel)
    finally:
        store.close()
    if len(stack.instances) > 8:
        mid = dataclasses.replace(stack, instances=[stack.instances[len(stack.instances) // 2]])
        try:
            signals.preview.emit((load_volume(mid, cancel=cancel), stack))
        except Exception as exc:  # noqa: BLE001 - the preview is a courtesy
            log.info("preview slice failed: %s", exc)
    return load_volume(stack, progress=progress, cancel=cancel), stack
