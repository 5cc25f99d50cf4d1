"""The stored vectors by label: normalisation, a zero-copy view of a saved file, and later additions.

Exact search and recall measurement need the vectors themselves; hnswlib's ``get_items`` is far
too slow for that, so the saved file is read in place and overlaid by what was added since.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import QueryError, VectorIndexError
from .files import HNSW_HEADER, HnswHeader
from .labels import member


def normalise(vectors: np.ndarray, dim: int, what: str = "query") -> np.ndarray:
    """L2-normalised float32 copy, 2-D; raises :class:`QueryError` on a bad shape or value."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        got = arr.shape[-1] if arr.ndim >= 1 else 0
        raise QueryError(f"{what} embedding has {got} values; this index holds {dim}-value embeddings")
    if not np.isfinite(arr).all():
        raise QueryError(f"{what} embedding contains NaN or infinite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise QueryError(f"{what} embedding is all zeros and has no direction")
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


class FileVectors:
    """Zero-copy view of the vectors and labels inside a saved hnswlib file (``np.memmap``).

    hnswlib's own ``get_items`` copies through Python lists (about 60 us per vector), far too
    slow for exact search over thousands of candidates; the level-0 block of the file is a plain
    array of (links, vector, label) records, so the OS page cache serves the vectors directly.
    """

    def __init__(self, path: Path, header: HnswHeader, labels: np.ndarray | None = None) -> None:
        dtype = np.dtype({"names": ["vec", "label"], "formats": [("<f4", (header.dim,)), "<u8"],
                          "offsets": [header.offset_data, header.offset_data + header.dim * 4],
                          "itemsize": header.size_per_element})
        self.path = path
        self.count = header.element_count
        if self.count:
            self._mm = np.memmap(path, dtype=dtype, mode="r", offset=HNSW_HEADER.size, shape=(self.count,))
            if labels is None:  # strided read: touches every page of the file
                labels = np.asarray(self._mm["label"], dtype=np.int64)
        else:
            self._mm = None
            labels = np.empty(0, np.int64)
        if len(labels) != self.count:
            raise VectorIndexError(f"{path}: {len(labels)} labels for {self.count} stored vectors")
        self.labels = np.asarray(labels, dtype=np.int64)  # row order
        self._order = np.argsort(self.labels, kind="stable")
        self._sorted = self.labels[self._order]

    def block(self, start: int, stop: int) -> np.ndarray:
        """Vectors of rows ``start:stop`` (contiguous: a sequential read of the file)."""
        if self._mm is None:
            return np.empty((0, 0), np.float32)
        return np.asarray(self._mm["vec"][start:stop], dtype=np.float32)

    def rows(self, labels: np.ndarray) -> np.ndarray:
        """Row of each label in the file, -1 where absent."""
        pos = np.searchsorted(self._sorted, labels)
        pos = np.minimum(pos, max(len(self._sorted) - 1, 0))
        found = (len(self._sorted) > 0) & (self._sorted[pos] == labels) if len(self._sorted) else \
            np.zeros(len(labels), bool)
        return np.where(found, self._order[pos] if len(self._order) else -1, -1)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        if self._mm is None or len(rows) == 0:
            return np.empty((len(rows), 0), np.float32)
        if len(rows) > 1 and (np.diff(rows) == 1).all():
            return np.array(self._mm["vec"][rows[0] : rows[-1] + 1], dtype=np.float32)
        return np.array(self._mm["vec"][rows], dtype=np.float32)


class VectorStore:
    """Vectors by label: the saved file (memmap) overlaid by those added since the last save."""

    def __init__(self, dim: int, file: FileVectors | None = None) -> None:
        self.dim = dim
        self.file = file
        self.pending_labels = np.empty(0, np.int64)  # sorted
        self.pending = np.empty((0, dim), np.float32)

    def with_added(self, labels: np.ndarray, vecs: np.ndarray) -> "VectorStore":
        """A new store with ``labels`` (re)placed: copy-on-write so readers never see a half update."""
        keep = ~member(np.sort(labels), self.pending_labels)
        all_l = np.concatenate([self.pending_labels[keep], labels])
        all_v = np.concatenate([self.pending[keep], vecs])
        order = np.argsort(all_l, kind="stable")
        out = VectorStore(self.dim, self.file)
        out.pending_labels, out.pending = all_l[order], all_v[order]
        return out

    def get(self, labels: np.ndarray) -> np.ndarray:
        out = np.empty((len(labels), self.dim), np.float32)
        done = np.zeros(len(labels), bool)
        if len(self.pending_labels):
            pos = np.minimum(np.searchsorted(self.pending_labels, labels), len(self.pending_labels) - 1)
            hit = self.pending_labels[pos] == labels
            out[hit] = self.pending[pos[hit]]
            done |= hit
        if not done.all():
            if self.file is None:
                raise VectorIndexError("vector missing from the index's vector store")
            rows = self.file.rows(labels[~done])
            if (rows < 0).any():
                raise VectorIndexError("vector missing from the saved index file")
            out[~done] = self.file.vectors(rows)
        return out
