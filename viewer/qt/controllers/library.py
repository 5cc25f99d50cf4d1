"""The study browser's list, stored-series loading and importing, bound for the Qt side.

The work itself is headless (:mod:`casebook.viewer.core.services.study_list`,
:mod:`casebook.viewer.core.services.loading`, :mod:`casebook.viewer.core.services.import_pipeline`);
this module adapts it to a :class:`~casebook.viewer.qt.workers.FunctionWorker`.
"""
from __future__ import annotations

from pathlib import Path

from casebook.viewer.core.config import Settings
from casebook.viewer.core.services.study_list import StudyList

from ..workers import preview_emitter


def study_list(settings: Settings) -> StudyList:
    """The library's studies with their series; empty without a library."""
    from casebook.viewer.core.services.study_list import load_study_list

    return load_study_list(settings)


def load_stored_task(settings: Settings, series_id: int, *, progress, cancel, signals):
    """Load a stored series, showing its middle slice first."""
    from casebook.viewer.core.services.loading import load_with_preview, stored_stack

    stack = stored_stack(settings, int(series_id), cancel=cancel)
    return load_with_preview(stack, on_preview=preview_emitter(signals), progress=progress, cancel=cancel), stack


def import_task(settings: Settings, path: Path, *, progress, cancel, signals, encoder=None):
    """Ingest ``path`` into the library, then embed and index the new series so that *Find
    similar* works on them. A cancelled import ends as :class:`Cancelled` (the worker's
    ``cancelled`` signal), not as a result: the series stored before the cancel stay stored."""
    from casebook.viewer.core.services.import_pipeline import import_paths

    return import_paths(settings, [path], progress=progress, cancel=cancel, encoder=encoder)
