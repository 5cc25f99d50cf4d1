"""Exact (brute-force) search: small collections, narrow candidate sets, and while a graph loads.

Where the candidate set from a SQLite pre-filter is small, a matrix product over those vectors
is both cheaper than the graph and exactly right; it is also the ground truth for tuning.
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from .labels import member
from .results import SearchResult


class ExactSearchMixin:
    """Brute-force top-k over the stored vectors.

    Mixed into :class:`~.index.VectorIndex`; the state it works on is set up in ``VectorIndex.__init__``.
    """

    def _empty(self, n: int, k: int, reason: str) -> SearchResult:
        return SearchResult(np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32), "empty", reason)

    def _blocks(self, block: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All live (labels, vectors), read sequentially from the mapped file, then the pending."""
        store, live = self._vectors, self._live
        if store.file is not None and store.file.count:
            for s in range(0, store.file.count, block):
                lab = store.file.labels[s : s + block]
                keep = member(live, lab)
                if len(store.pending_labels):
                    keep &= ~member(store.pending_labels, lab)  # replaced since the save
                if keep.any():
                    yield lab[keep], store.file.block(s, s + block)[keep]
        if len(store.pending_labels):
            keep = member(live, store.pending_labels)
            if keep.any():
                yield store.pending_labels[keep], store.pending[keep]

    def _exact(self, q: np.ndarray, k: int, cand: np.ndarray | None, excl: np.ndarray | None) -> SearchResult:
        method = "exact" if cand is None else "exact-candidates"
        if cand is not None:
            blocks: Iterable[tuple[np.ndarray, np.ndarray]] = [(cand, self._get_vectors_locked(cand))]
        elif len(self._live) <= 4 * self.params.exact_below:
            cache = self._exact_cache
            if cache is None:
                parts = list(self._blocks())
                cache = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])) \
                    if parts else (np.empty(0, np.int64), np.empty((0, self.dim), np.float32))
                self._exact_cache = cache  # small; dropped on every write
            blocks = [cache]
        else:
            blocks = self._blocks()
        best_s = np.full((len(q), k), -np.inf, np.float32)
        best_l = np.full((len(q), k), -1, np.int64)
        for labels, mat in blocks:
            if len(labels) == 0:
                continue
            sims = q @ mat.T
            if excl is not None and cand is None:
                sims[:, member(excl, labels)] = -np.inf  # cheaper than copying the matrix
            cat_s = np.concatenate([best_s, sims], axis=1)
            cat_l = np.concatenate([best_l, np.broadcast_to(labels, sims.shape)], axis=1)
            top = np.argpartition(-cat_s, k - 1, axis=1)[:, :k] if cat_s.shape[1] > k else \
                np.broadcast_to(np.arange(cat_s.shape[1]), (len(q), cat_s.shape[1]))
            best_s = np.take_along_axis(cat_s, top, axis=1)
            best_l = np.take_along_axis(cat_l, top, axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_l = np.full((len(q), k), -1, np.int64)
        w = best_s.shape[1]
        out_s[:, :w] = np.take_along_axis(best_s, order, axis=1)
        out_l[:, :w] = np.take_along_axis(best_l, order, axis=1)
        out_l[~np.isfinite(out_s)] = -1
        if not (out_l >= 0).any():
            return SearchResult(out_l, out_s, method, "no indexed embedding left after exclusions")
        loading = self._index is None and self._mapped is None and cand is None
        return SearchResult(out_l, out_s, "exact-loading" if loading else method)
