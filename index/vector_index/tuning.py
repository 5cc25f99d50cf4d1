"""Recall measurement and ef tuning: the smallest ef that meets the recall target on this collection.

Recall is measured against exact search on synthetic new cases (stored vectors moved off the
graph), because a stored vector as its own query makes the graph look better than it is.
"""
from __future__ import annotations

import logging

import numpy as np

from casebook.common.progress import ProgressCallback, SupportsCancel, check_cancel, no_progress

from ..errors import VectorIndexError
from .vectors import normalise

log = logging.getLogger(__name__)


class TuningMixin:
    """Recall@k against exact search, and choosing ef from it.

    Mixed into :class:`~.index.VectorIndex`; the state it works on is set up in ``VectorIndex.__init__``.
    """

    def measure_recall(self, k: int = 10, sample: int = 200, ef: int | None = None,
                       seed: int = 0, queries: np.ndarray | None = None) -> float:
        """Recall@k of HNSW against exact search, on ``queries`` or on synthetic new cases."""
        q, truth = self._recall_queries(k, sample, seed, queries)
        if len(q) == 0:
            return 1.0
        return self._recall_at(q, truth, k, ef or self.params.ef)

    def _recall_queries(self, k: int, sample: int, seed: int,
                        queries: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Queries and their exact top-k.

        A stored vector is a poor stand-in for a new case: the graph search lands on it at once
        and recall looks better than it will be. So each sampled stored vector is moved off the
        graph by the median nearest-neighbour distance, in a random direction: a query as far
        from its closest stored case as stored cases are from each other.
        """
        with self._lock.read():
            live = self._live.copy()
        if len(live) <= k + 1:
            return np.empty((0, self.dim), np.float32), np.empty((0, k), np.int64)
        if queries is not None:
            q = normalise(queries, self.dim)
            return q, self._exact_topk(q, np.full(len(q), -1, np.int64), k)
        rng = np.random.default_rng(seed)
        qlab = rng.choice(live, size=min(sample, len(live)), replace=False)
        base = self.get_vectors(qlab)
        nn = self._exact_topk(base, qlab, 1)
        d1 = np.linalg.norm(base - self.get_vectors(nn[:, 0]), axis=1)
        noise = rng.normal(size=base.shape).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        q = normalise(base + float(np.median(d1)) * noise, self.dim)
        return q, self._exact_topk(q, np.full(len(q), -1, np.int64), k)

    def _exact_topk(self, queries: np.ndarray, qlab: np.ndarray, k: int) -> np.ndarray:
        """Exact top-k labels per query, leaving out each query's own label (-1: none)."""
        with self._lock.read():
            res = self._exact(queries, k + 1, None, None)
        return np.array([[l for l in row if l != ql][:k] for row, ql in zip(res.labels.tolist(), qlab.tolist())],
                        dtype=np.int64)

    def _recall_at(self, queries: np.ndarray, truth: np.ndarray, k: int, ef: int) -> float:
        with self._lock.read():
            if self._index is None and self._mapped is None:
                raise VectorIndexError(f"vector index {self.stem} is closed")
            labels = self._hnsw(queries, k, None, None, None, ef).labels
        hits = sum(len(set(l.tolist()) & set(t.tolist())) for l, t in zip(labels, truth))
        return hits / max(truth.size, 1)

    def tune_ef(self, target_recall: float | None = None, k: int = 10, sample: int = 200,
                progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None,
                queries: np.ndarray | None = None, margin: float = 0.005) -> int:
        """Smallest ef whose recall@k against exact search meets the target on a sample.

        ``margin`` covers the sampling error of the estimate (about 0.003 for 200 queries at
        recall 0.98), so the target holds on the whole collection, not just on the sample; the
        ladder starts at ef=32 because below that small collections miss the target on real
        queries while the time saved is a few hundredths of a millisecond.
        """
        target = self.params.target_recall if target_recall is None else target_recall
        progress = progress or no_progress
        progress(0, 1, "measuring exact neighbours for ef tuning")
        q, truth = self._recall_queries(k, sample, 0, queries)
        if len(q) == 0:
            return self.params.ef
        chosen, recall = self.params.max_ef, 0.0
        ladder = [e for e in (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024) if e <= self.params.max_ef]
        for n, ef in enumerate(ladder):
            check_cancel(cancel, "vector index operation")
            self.set_ef(ef)
            recall = self._recall_at(q, truth, k, ef)
            progress(n + 1, len(ladder), f"ef={ef} recall@{k}={recall:.3f}")
            if recall >= min(target + margin, 1.0):
                chosen = ef
                break
        else:
            log.warning("%s: recall@%d %.3f < target %.3f even at ef=%d; rebuild with a larger M",
                        self.stem, k, recall, target, chosen)
        self.set_ef(chosen)
        self.recall_estimate = recall
        with self._save_lock, self._dir_lock():
            meta, disk = self._meta, self._disk_meta()
            same = disk is not None and meta is not None and (disk.index_file, disk.delta_file) == (
                meta.index_file, meta.delta_file)
            if meta is not None and not self._dirty and same:  # files unchanged: only the sidecar moves
                meta.ef, meta.recall_estimate = chosen, recall
                self._write_meta(meta)
        log.info("%s: ef=%d gives recall@%d=%.3f on %d sampled queries", self.stem, chosen, k, recall, len(q))
        return chosen
