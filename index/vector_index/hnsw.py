"""HNSW graph search on an in-memory hnswlib index, with label filters and oversampling.

hnswlib's ``ef`` is index-wide state that a concurrent ``set_ef`` would race on, so a larger
per-call ef is asked for through ``k``; filtered searches oversample by the filter's selectivity.
"""
from __future__ import annotations

import math
from typing import Callable

import hnswlib
import numpy as np

from ..errors import VectorIndexError
from .results import SearchResult


class HnswSearchMixin:
    """Graph search through hnswlib.

    Mixed into :class:`~.index.VectorIndex`; the state it works on is set up in ``VectorIndex.__init__``.
    """

    def _hnsw(self, q: np.ndarray, k: int, cand: np.ndarray | None, filter: Callable[[int], bool] | None,
              excl: np.ndarray | None, ef: int | None) -> SearchResult:
        if self._index is None and self._mapped is not None:
            return self._hnsw_mapped(q, k, cand, filter, excl, ef)
        return self._hnsw_on(self._require(), len(self._live), q, k, cand, filter, excl, ef)

    def _hnsw_on(self, idx: hnswlib.Index, live_n: int, q: np.ndarray, k: int, cand: np.ndarray | None,
                 filter: Callable[[int], bool] | None, excl: np.ndarray | None, ef: int | None) -> SearchResult:
        """HNSW search of an in-memory hnswlib graph holding ``live_n`` live vectors."""
        preds: list[Callable[[int], bool]] = []
        frac = 1.0
        if cand is not None:
            cset = frozenset(cand.tolist())
            preds.append(cset.__contains__)
            frac = min(1.0, len(cand) / max(live_n, 1))
        if excl is not None and len(excl):
            eset = frozenset(excl.tolist())
            preds.append(lambda l, _e=eset: l not in _e)
        if filter is not None:
            preds.append(filter)
            frac = min(frac, 0.5)  # unknown selectivity: assume it halves the pool
        if not preds:
            pred = None
        elif len(preds) == 1:
            pred = preds[0]
        else:
            pred = lambda l, _p=tuple(preds): all(p(l) for p in _p)  # noqa: E731
        kk = min(k, live_n if cand is None else len(cand))
        base_ef = int(ef or self.params.ef)
        # Oversample when filtering: the graph search must visit about k/frac nodes to find k.
        want_ef = self._oversampled_ef(base_ef, kk, frac, pred is not None)
        method = "hnsw" if pred is None else "hnsw-filtered"
        out_l = np.full((len(q), k), -1, np.int64)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        # hnswlib's ef is index-wide state and set_ef would race with other queries, so a larger
        # per-call ef is requested through k (hnswlib searches with max(ef, k)) and trimmed.
        search_k = max(kk, min(want_ef, live_n)) if want_ef > idx.ef else kk
        for row in range(len(q)):
            got_l, got_s = self._knn_one(idx, q[row], search_k, kk, pred)
            n = min(kk, len(got_l))
            out_l[row, :n] = got_l[:n]
            out_s[row, :n] = got_s[:n]
        return SearchResult(out_l, out_s, method)

    def _oversampled_ef(self, base_ef: int, kk: int, frac: float, filtered: bool) -> int:
        """ef for a filtered graph search: it must visit about k/frac nodes to find k allowed."""
        if not filtered:
            return base_ef
        return int(min(self.params.max_ef, max(base_ef, math.ceil(2 * kk / max(frac, 1e-6)))))


    def _knn_one(self, idx: hnswlib.Index, q: np.ndarray, search_k: int, kk: int,
                 pred: Callable[[int], bool] | None) -> tuple[np.ndarray, np.ndarray]:
        k_try = search_k
        while k_try >= 1:
            try:
                labels, dists = idx.knn_query(q, k=k_try, num_threads=1, filter=pred)
                return labels[0].astype(np.int64), (1.0 - dists[0]).astype(np.float32)
            except RuntimeError:
                # Fewer than k reachable (small or heavily filtered collection): ask for fewer.
                if k_try == 1:
                    break
                k_try = max(1, k_try // 2) if k_try > kk else k_try - max(1, k_try // 4)
        return np.empty(0, np.int64), np.empty(0, np.float32)

    def _require(self) -> hnswlib.Index:
        if self._index is None:
            raise VectorIndexError(f"vector index {self.stem} is closed")
        return self._index
