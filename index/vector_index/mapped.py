"""Search in place on the saved file through a memory map (the compiled ``_hnswmap`` module).

Opening is then milliseconds at any size and pages are shared with the OS cache. The base file
is never written: later additions live in a small in-memory hnswlib *delta* and deletions in
tombstones, so a mapped search merges the base's best with the delta's.
"""
from __future__ import annotations

import logging
import mmap
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import VectorIndexError
from .labels import member, sorted_union
from .results import SearchResult
from .warmup import warm_in_background

try:  # compiled by setup.py; optional: without it indexes are opened by hnswlib's full load
    from .. import _hnswmap
except ImportError:  # pragma: no cover - depends on the build
    _hnswmap = None

MAPPED_SEARCH_BUILT = _hnswmap is not None

log = logging.getLogger(__name__)


def search_backend() -> str:
    """How saved indexes are searched on this installation (for ``casebook doctor``)."""
    if _hnswmap is None:
        return "hnswlib full load (the _hnswmap module is not built: large indexes open slowly)"
    return f"in place through a memory map (_hnswmap, {_hnswmap.kernel()} kernel)"


class MappedSearchMixin:
    """Mapping the base file and searching it with the delta merged in.

    Mixed into :class:`~.index.VectorIndex`; the state it works on is set up in ``VectorIndex.__init__``.
    """

    def _map_graph(self, path: Path) -> "object":
        """Map the saved file and parse its graph in place (milliseconds at a million vectors)."""
        start = time.perf_counter()
        try:
            with open(path, "rb") as fh:
                mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            graph = _hnswmap.MappedHnsw(mm, self.dim)
        except (OSError, ValueError, RuntimeError) as exc:
            raise VectorIndexError(f"{path}: cannot map the index: {exc}") from exc
        self.graph_load_seconds = time.perf_counter() - start
        log.debug("%s: mapped %d elements in %.3fs (%s kernel)", self.stem, graph.element_count,
                  self.graph_load_seconds, graph.kernel)
        if self.prefetch:
            warm_in_background(graph, path)
        return graph

    def _hnsw_mapped(self, q: np.ndarray, k: int, cand: np.ndarray | None,
                     filter: Callable[[int], bool] | None, excl: np.ndarray | None,
                     ef: int | None) -> SearchResult:
        """HNSW search on the mapped file; label sets are checked in C++ without the GIL."""
        live_n = len(self._live)
        frac = 1.0 if cand is None else len(cand) / live_n
        if filter is not None:
            frac = min(frac, 0.5)  # unknown selectivity: assume it halves the pool
        filtered = cand is not None or filter is not None or (excl is not None and len(excl) > 0)
        kk = min(k, live_n if cand is None else len(cand))
        want_ef = self._oversampled_ef(int(ef or self.params.ef), kk, frac, filtered)
        deny, delta_live = self._mapped_deny()  # tombstones, and base copies replaced in the delta
        if excl is not None and len(excl):
            deny = sorted_union(deny, excl)
        try:
            labels, dists = self._mapped.knn_query(q, kk, want_ef, allow=cand, deny=deny if len(deny) else None,
                                                   filter=filter)
        except RuntimeError as exc:
            raise VectorIndexError(f"{self.directory / self._meta.index_file}: {exc}") from exc
        out_l = np.full((len(q), k), -1, np.int64)
        out_s = np.full((len(q), k), -np.inf, np.float32)
        out_l[:, :kk] = labels
        out_s[:, :kk] = np.where(labels >= 0, 1.0 - dists, -np.inf)
        delta, pend = self._delta, self._vectors.pending_labels
        delta_live = delta_live if delta is not None else 0
        cand_d = cand[member(pend, cand)] if cand is not None and delta_live else cand
        if delta_live and (cand_d is None or len(cand_d)):  # merge the delta's best with the base's
            extra = self._hnsw_on(delta, delta_live, q, k, cand_d, filter, excl, ef)
            cat_l = np.concatenate([out_l, extra.labels], axis=1)
            cat_s = np.concatenate([out_s, extra.scores], axis=1)
            order = np.argsort(-cat_s, axis=1, kind="stable")[:, :k]
            out_l, out_s = np.take_along_axis(cat_l, order, 1), np.take_along_axis(cat_s, order, 1)
        return SearchResult(out_l, out_s, "hnsw-filtered" if filtered else "hnsw")

    def _mapped_deny(self) -> tuple[np.ndarray, int]:
        """Sorted labels the mapped base file must not return, and how many delta vectors are
        live; cached until the next write (not recomputed per query)."""
        cached = self._deny
        if cached is None:
            dead = np.sort(np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted)))
            pend = self._vectors.pending_labels
            cached = (sorted_union(pend, dead), int(len(pend) - member(dead, pend).sum()))
            self._deny = cached
        return cached
