"""The study browser's rows and stored-series loading, bound for the Qt side.

The reading itself is headless (:mod:`casebook.viewer.core.services.library_rows`,
:mod:`casebook.viewer.core.services.loading`); this module adapts it to the browser's row dicts and
to a :class:`~casebook.viewer.qt.workers.FunctionWorker`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from casebook.common.errors import Cancelled
from casebook.viewer.core.config import Settings

from ..workers import preview_emitter


def library_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row dict per stored series (the browser's columns); empty without a library."""
    from casebook.viewer.core.services.library_rows import library_rows as rows

    return [r.as_dict() for r in rows(settings)]


def load_stored_task(settings: Settings, series_id: int, *, progress, cancel, signals):
    """Load a stored series, showing its middle slice first."""
    from casebook.viewer.core.services.loading import load_with_preview, stored_stack

    stack = stored_stack(settings, int(series_id), cancel=cancel)
    return load_with_preview(stack, on_preview=preview_emitter(signals), progress=progress, cancel=cancel), stack


def import_task(settings: Settings, path: Path, *, progress, cancel, signals):
    """Ingest ``path`` into the library. A cancelled import ends as :class:`Cancelled` (the worker's
    ``cancelled`` signal), not as a result: the series stored before the cancel stay stored."""
    from casebook.viewer.core.services.ingest import ingest
    from casebook.viewer.core.services.library import open_store

    store = open_store(settings)
    try:
        summary = ingest([path], store, progress=progress, cancel=cancel, workers=settings.ingest_workers)
    finally:
        store.close()
    if summary.cancelled:
        raise Cancelled(f"import of {Path(path).name} cancelled after {summary.series_stored} series")
    return summary
