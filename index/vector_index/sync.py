"""Keeping the index in line with its :class:`EmbeddingSource`: catch up, live sync, full rebuild.

A valid file that is merely behind the store is caught up incrementally; one far behind, or with
too many tombstones, is rebuilt, while searches keep running on the old graph until the swap.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from casebook.common.progress import ProgressCallback, SupportsCancel, check_cancel, no_progress

from .labels import LabelDigest, member, sorted_unique
from .results import OpenReport
from .sources import EmbeddingSource
from .vectors import normalise

log = logging.getLogger(__name__)


class SyncMixin:
    """Adding what the store has and the index lacks, removing what the store dropped.

    Mixed into :class:`~.index.VectorIndex`; the state it works on is set up in ``VectorIndex.__init__``.
    """

    @property
    def needs_compaction(self) -> bool:
        """True when deleted elements take over a quarter of the graph (memory and speed lost)."""
        return len(self._deleted) > max(1000, (len(self._live) + len(self._deleted)) // 4)

    def _reconcile(self, source: EmbeddingSource, rebuild: bool, progress: ProgressCallback,
                   cancel: SupportsCancel | None) -> None:
        """Bring a valid but stale index in line with the store (add new, delete removed labels)."""
        want = source.digest()
        if want == LabelDigest.of(self._live):
            if self.needs_compaction and rebuild:
                reason = f"{len(self._deleted)} deleted elements: compacting"
                self.rebuild(source, progress=progress, cancel=cancel)
                self.report = OpenReport("rebuilt", reason=reason)
            return
        labels = sorted_unique(np.asarray(source.labels(), dtype=np.int64))
        if LabelDigest.of(labels) != want:
            log.warning("embedding source digest changed while reading its labels; using the labels")
        missing = labels[~member(self._live, labels)]
        gone = self._live[~member(labels, self._live)]
        reason = f"index behind the store: {len(missing)} to add, {len(gone)} to remove"
        if len(missing) > max(len(labels) // 2, 10_000) and rebuild:
            log.info("%s: rebuilding (%s)", self.stem, reason)
            self.rebuild(source, progress=progress, cancel=cancel)
            self.report = OpenReport("rebuilt", reason=reason)
            return
        self._apply_diff(source, missing, gone, progress, cancel)
        self.save()
        self.report = OpenReport("caught-up", reason=reason, added=len(missing), removed=len(gone))

    def _apply_diff(self, source: EmbeddingSource, missing: np.ndarray, gone: np.ndarray,
                    progress: ProgressCallback, cancel: SupportsCancel | None) -> None:
        if len(gone):
            self.mark_deleted(gone)
        total = len(missing)
        for s in range(0, total, 10_000):
            check_cancel(cancel, "vector index operation")
            chunk = missing[s : s + 10_000]
            self.add(chunk, source.vectors(chunk))
            progress(min(s + len(chunk), total), total, "catching up index")

    def sync(self, source: EmbeddingSource, *, save: bool = False, progress: ProgressCallback | None = None,
             cancel: SupportsCancel | None = None) -> tuple[int, int]:
        """Add the source's new labels and hide its removed ones while searches go on.

        This is how ingest and deletions reach a running index; returns (added, removed).
        """
        if source.digest() == LabelDigest.of(self._live):
            return 0, 0
        labels = sorted_unique(np.asarray(source.labels(), dtype=np.int64))
        live = self._live
        missing = labels[~member(live, labels)]
        gone = live[~member(labels, live)]
        self._apply_diff(source, missing, gone, progress or no_progress, cancel)
        if save:
            self.save()
        return int(len(missing)), int(len(gone))

    def rebuild(self, source: EmbeddingSource, *, progress: ProgressCallback | None = None,
                cancel: SupportsCancel | None = None, batch_size: int = 10_000, tune: bool = True) -> None:
        """Build a fresh index from every embedding of ``source``, save it, then swap it in.

        Queries keep running against the old index until the swap; a cancel leaves it untouched.
        """
        progress = progress or no_progress
        self._ready.wait()
        digest = source.digest()
        total = digest.count
        fresh = self._new_hnsw(max(total, self.params.initial_capacity))
        fresh.set_num_threads(max(os.cpu_count() or 1, 1))
        seen: list[np.ndarray] = []
        done = 0
        progress(0, total, "building vector index")
        for labels, vectors in source.iter_batches(batch_size):
            check_cancel(cancel, "vector index operation")
            labels = np.asarray(labels, dtype=np.int64)
            if len(labels) == 0:
                continue
            vecs = normalise(vectors, self.dim, what="stored")
            if done + len(labels) > fresh.get_max_elements():
                fresh.resize_index(int((done + len(labels)) * 1.25))
            fresh.add_items(vecs, labels)
            seen.append(labels)
            done += len(labels)
            progress(min(done, max(total, done)), max(total, done), "building vector index")
        check_cancel(cancel, "vector index operation")
        fresh.set_num_threads(self.params.num_threads)
        live = sorted_unique(np.concatenate(seen)) if seen else np.empty(0, dtype=np.int64)
        with self._save_lock, self._dir_lock():
            meta, store = self._write_generation(fresh, live, set())
            with self._lock.write():
                self._install(fresh, live, set(), meta, store)
                self._load_error = None
        if tune and len(live) > self.params.exact_below:
            self.tune_ef(progress=progress, cancel=cancel)
