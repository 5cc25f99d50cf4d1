"""Opening a series for reading: find its stack (in a folder, or in the library), show the
middle slice as soon as it is decoded, then load the whole stack.

One implementation for the folder and the library paths, headless, so the GUI workers only
forward what happens here to the UI thread.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from ..config import Settings
from ..dicom import load_volume, main_stack, scan, slice_count, slice_stack
from ..dicom.stack import SeriesStack
from ..dicom.volume import Volume
from ..errors import CasebookError
from ..progress import ProgressCallback, SupportsCancel, check_cancel

log = logging.getLogger(__name__)

#: A stack with more slices than this shows its middle slice first; smaller ones load at once.
PREVIEW_ABOVE = 8

PreviewCallback = Callable[[Volume, SeriesStack], None]


def folder_stack(path: str | Path, *, stack_key: str | None = None,
                 cancel: SupportsCancel | None = None) -> SeriesStack:
    """The stack to show for a folder or file: the one named ``stack_key``, else the main one."""
    res = scan([Path(path)], cancel=cancel)
    stack = main_stack(res.stacks, stack_key)
    if stack is None:
        reasons = "; ".join(f"{p.path.name}: {p.reason}" for p in res.problems[:3])
        raise CasebookError(f"{path}: no displayable image series found" + (f" ({reasons})" if reasons else ""))
    return stack


def stored_stack(settings: Settings, series_id: int, *, cancel: SupportsCancel | None = None) -> SeriesStack:
    """The stack of a series of the library, from its files as they are on disk now."""
    from .library import open_store, stack_for_series

    store = open_store(settings, create=False)
    try:
        return stack_for_series(store, int(series_id), cancel=cancel)
    finally:
        store.close()


def load_with_preview(stack: SeriesStack, *, on_preview: PreviewCallback | None = None,
                      progress: ProgressCallback | None = None,
                      cancel: SupportsCancel | None = None) -> Volume:
    """Load ``stack``; for a large one, first hand its middle slice (a one-slice Volume) to
    ``on_preview`` so the reader sees the study while the rest is decoded."""
    t0 = time.perf_counter()
    n = slice_count(stack)
    if on_preview is not None and n > PREVIEW_ABOVE:
        try:
            on_preview(load_volume(slice_stack(stack, n // 2), cancel=cancel), stack)
        except CasebookError as exc:  # the preview is a courtesy; the full load reports errors
            check_cancel(cancel)
            log.info("preview slice failed: %s", exc)
    vol = load_volume(stack, progress=progress, cancel=cancel)
    log.info("loaded %d slices in %.2fs", vol.shape[0], time.perf_counter() - t0)
    return vol
