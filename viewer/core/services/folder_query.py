"""*Find similar* on a folder opened without importing it (``casebook gui PATH``, *Open folder…*).

``casebook search --folder`` already searches with a folder; the window does the same: when the
folder's stack is stored already (same stack key) its stored vectors are used, as if it had been
opened from the browser; otherwise the library's model encodes the folder on the fly. Either way
the library is not changed.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from casebook.index.errors import QueryError

from .search_types import QueryVectors

log = logging.getLogger(__name__)


class FolderNotSearchable(QueryError):
    """The folder is not in the library and no encoder can turn it into a query: import it."""


def stored_series_for(service: Any, stack_key: str | None) -> int | None:
    """The library's series stored under ``stack_key`` (None when not stored, or no key)."""
    store = getattr(getattr(service, "catalog", None), "store", None)
    if not stack_key or store is None:
        return None
    found = store.find_series(stack_key)
    return int(found.id) if found is not None else None


def nearest_slices(query: QueryVectors, k: int) -> QueryVectors:
    """Only the query rows of the slice nearest to ``k`` ("this slice" on an encoded folder)."""
    idx = np.asarray(query.slice_indices)
    if idx.size == 0:
        return query
    best = int(idx[np.argmin(np.abs(idx - int(k)))])
    keep = [i for i, s in enumerate(query.slice_indices) if int(s) == best]
    return replace(query, vectors=query.vectors[keep], slice_indices=[query.slice_indices[i] for i in keep],
                   description=f"{query.description} slice {best + 1}")


def folder_query(service: Any, path: str | Path, *, stack_key: str | None = None,
                 slice_index: int | None = None) -> QueryVectors:
    """Query vectors for the folder ``path`` (its whole series, or ``slice_index`` only)."""
    sid = stored_series_for(service, stack_key)
    if sid is not None:
        try:
            return (service.query_from_series(sid) if slice_index is None
                    else service.query_from_slice(sid, slice_index))
        except QueryError as exc:  # stored but not embedded: encode it like a new folder
            log.info("stored series %s has no usable vectors (%s): encoding the folder", sid, type(exc).__name__)
    if service.encoder is None:
        raise FolderNotSearchable(f"{Path(path).name} is not in the library and the library's model is not "
                                  "available to encode it: add it to the library to search with it")
    q = service.query_from_folder(Path(path))
    return q if slice_index is None else nearest_slices(q, slice_index)


__all__ = ["FolderNotSearchable", "folder_query", "nearest_slices", "stored_series_for"]
