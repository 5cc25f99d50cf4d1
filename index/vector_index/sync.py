"""Keeping the index in line with its :class:`EmbeddingSource`: catch up, live sync, full rebuild.

A valid file that is merely behind the store is caught up incrementally; one far behind, or with
too many tombstones, is rebuilt, while searches keep running on the old graph until the swap.
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

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
        unwritable = unwritable_reason(self.directory)
        if unwritable is not None:
            # A read-only library (a DVD, a share mounted read-only): no graph is worth building
            # for one session; the stored vectors are searched exactly, and nothing is written.
            self._install_unsaved(None, source, unwritable, progress, cancel, batch_size)
            return
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
        try:
            with self._save_lock, self._dir_lock():
                meta, store = self._write_generation(fresh, live, set())
                with self._lock.write():
                    self._install(fresh, live, set(), meta, store)
                    self._load_error = None
        except OSError as exc:  # a full disk, a folder made read-only meanwhile: search from memory
            self._install_unsaved(fresh, source, disk_problem(self.directory, exc), progress, cancel, batch_size,
                                  live=live)
            return
        if tune and len(live) > self.params.exact_below:
            self.tune_ef(progress=progress, cancel=cancel)

    def _install_unsaved(self, graph: object, source: EmbeddingSource, reason: str, progress: ProgressCallback,
                         cancel: SupportsCancel | None, batch_size: int, live: np.ndarray | None = None) -> None:
        """Serve searches without saving: ``graph`` in memory when one was built, else exact search
        over the stored vectors; :meth:`save` is a no-op from then on (the store keeps the truth)."""
        from .vectors import VectorStore

        if graph is not None and live is not None:
            vecs = np.asarray(graph.get_items(live), dtype=np.float32) if len(live) else np.empty((0, self.dim),  # type: ignore[attr-defined]
                                                                                                 np.float32)
            labels = live
        else:
            parts_l: list[np.ndarray] = []
            parts_v: list[np.ndarray] = []
            total = source.digest().count
            done = 0
            for labels_b, vectors_b in source.iter_batches(batch_size):
                check_cancel(cancel, "vector index operation")
                if len(labels_b) == 0:
                    continue
                parts_l.append(np.asarray(labels_b, dtype=np.int64))
                parts_v.append(normalise(vectors_b, self.dim, what="stored"))
                done += len(labels_b)
                progress(done, max(total, done), "reading stored embeddings")
            labels = np.concatenate(parts_l) if parts_l else np.empty(0, dtype=np.int64)
            vecs = np.concatenate(parts_v) if parts_v else np.empty((0, self.dim), np.float32)
        order = np.argsort(labels, kind="stable")
        labels, vecs = labels[order], vecs[order]
        store = VectorStore(self.dim, None).with_added(labels, vecs) if len(labels) else VectorStore(self.dim, None)
        with self._lock.write():
            self._index = graph  # type: ignore[assignment]
            self._mapped = None
            self._delta = None
            self._deny = None
            self._live = labels
            self._deleted = set()
            self._vectors = store
            self._exact_cache = None
            self._dirty = False
            self._load_error = None
            self._unsaved = reason
        log.warning("%s: %s; searching %s in memory, nothing saved (the case store keeps every embedding)",
                    self.stem, reason, "the rebuilt graph" if graph is not None else "exactly")


_DISK_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM") if hasattr(errno, n)}


def unwritable_reason(directory: Path) -> str | None:
    """Why the index folder cannot be written (read-only disk or no permission), or None."""
    probe = directory if directory.exists() else directory.parent
    if not probe.exists():
        return None
    if not os.access(probe, os.W_OK):
        return f"{probe}: the index folder is not writable (a read-only library or disk)"
    try:
        st = os.statvfs(probe)
        if st.f_flag & getattr(os, "ST_RDONLY", 1):
            return f"{probe}: the disk holding the index is mounted read-only"
    except (OSError, AttributeError):
        pass
    return None


def disk_problem(directory: Path, exc: OSError) -> str:
    """One line naming the disk and what went wrong writing the index to it."""
    import shutil

    what = {errno.ENOSPC: "no space left on the disk", errno.EROFS: "the disk is read-only",
            errno.EACCES: "no permission to write", errno.EPERM: "no permission to write"}.get(exc.errno or 0,
                                                                                              exc.strerror or str(exc))
    if getattr(errno, "EDQUOT", None) == exc.errno:
        what = "the disk quota is used up"
    try:
        du = shutil.disk_usage(directory)
        free = f" ({du.free / 2**20:,.0f} MiB free of {du.total / 2**30:,.1f} GiB)"
    except OSError:
        free = ""
    return f"{directory}: cannot write the vector index: {what}{free}"
