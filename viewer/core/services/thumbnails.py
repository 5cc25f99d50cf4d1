"""Thumbnails of search results: the matched slice of each analogue, decoded alone (one file per
result, not the whole series), windowed like the query so that the cards compare at a glance."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Hashable, Iterable

import numpy as np

from ..dicom import load_volume, slice_stack
from ..dicom.volume import Volume
from ..lru import LRUCache
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from .search_types import SearchHit

if TYPE_CHECKING:
    from .library import StackCache

log = logging.getLogger(__name__)


def matched_slice(store: Any, series_id: int, k: int, *, cancel: SupportsCancel | None = None,
                  stacks: StackCache | None = None) -> np.ndarray:
    """Slice ``k`` of a stored series as the loader would place it, decoding only its file
    (``stacks``: series stacks read before, reused while their files are unchanged)."""
    from .library import stack_for_series

    stack = stack_for_series(store, int(series_id), cancel=cancel, cache=stacks)
    one = load_volume(slice_stack(stack, k), cancel=cancel)
    return one.voxels[min(int(k), one.shape[0] - 1)] if one.shape[0] > 1 else one.voxels[0]


def matched_slices(store: Any, hits: Iterable[SearchHit], *, volumes: LRUCache[Hashable, Volume] | None = None,
                   progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None,
                   stacks: StackCache | None = None) -> dict[Hashable, np.ndarray]:
    """series id -> its matched slice, for every hit whose files can be read (volumes already
    decoded, e.g. results opened before, are used instead of the disk)."""
    hits = list(hits)
    out: dict[Hashable, np.ndarray] = {}
    for n, h in enumerate(hits):
        check_cancel(cancel)
        k = int(h.matched_slice or 0)
        vol = volumes.get(h.series_id) if volumes is not None else None
        try:
            out[h.series_id] = (vol.voxels[min(k, vol.shape[0] - 1)] if vol is not None
                                else matched_slice(store, int(h.series_id), k, cancel=cancel, stacks=stacks))
        except Exception as exc:  # noqa: BLE001 - a missing file costs a thumbnail, not the search
            check_cancel(cancel)
            log.info("no thumbnail for series %s: %s", h.series_id, exc)
        if progress is not None:
            progress(n + 1, len(hits), "reading result thumbnails")
    return out


def window_to_uint8(img: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """A 2-D slice windowed (centre, width) to 8-bit grey, C-contiguous, for display."""
    c, w = window
    a = (np.asarray(img, dtype=np.float32) - (c - w / 2)) / max(w, 1e-6) * 255.0
    return np.ascontiguousarray(np.clip(a, 0, 255).astype(np.uint8))
