"""Opening a saved index: check the sidecar and every file it names, then map or load the graph.

Nothing on disk is trusted: a missing, truncated, corrupt, stale or foreign file raises
:class:`VectorIndexError`, which :meth:`VectorIndex.open` answers with a rebuild from the store.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import hnswlib
import numpy as np

from ..errors import VectorIndexError
from .files import file_crc32, read_hnsw_header, sampled_crc32
from .labels import LabelDigest, member, sorted_union
from .mapped import MAPPED_SEARCH_BUILT
from .sidecar import FULL_CHECK_LIMIT, READABLE_FORMATS, IndexMeta
from .vectors import FileVectors, VectorStore

log = logging.getLogger(__name__)


class LoadingMixin:
    """Reading the sidecar, the base file, the labels file and the delta file.

    Mixed into :class:`~.index.VectorIndex`; the state it works on is set up in ``VectorIndex.__init__``.
    """

    def _read_meta(self) -> IndexMeta:
        if not self.meta_path.exists():
            raise VectorIndexError(f"{self.meta_path}: no index for model {self.model_key!r} yet")
        try:
            meta = IndexMeta.from_json(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as exc:
            raise VectorIndexError(f"{self.meta_path}: unreadable index metadata: {exc}") from exc
        if meta.format not in READABLE_FORMATS:
            raise VectorIndexError(f"{self.meta_path}: index format {meta.format}, this Casebook reads "
                                   f"{', '.join(map(str, READABLE_FORMATS))}")
        if meta.model_key != self.model_key:
            raise VectorIndexError(
                f"{self.meta_path}: index was built by model {meta.model_key!r}, not {self.model_key!r}")
        if meta.dim != self.dim:
            raise VectorIndexError(f"{self.meta_path}: index holds {meta.dim}-value embeddings, "
                                   f"model {self.model_key!r} makes {self.dim}")
        if meta.space != self.SPACE:
            raise VectorIndexError(f"{self.meta_path}: index space {meta.space!r}, expected {self.SPACE!r}")
        return meta

    def _load(self, verify: str, background: bool = False) -> None:
        meta = self._read_meta()
        path = self.directory / meta.index_file
        if not path.exists():
            raise VectorIndexError(f"{path}: index file named by {self.meta_path.name} is missing")
        size = path.stat().st_size
        if size != meta.file_size:
            raise VectorIndexError(f"{path}: {size} bytes on disk, {meta.file_size} when saved (truncated?)")
        header = read_hnsw_header(path)
        if header.dim != self.dim:
            raise VectorIndexError(f"{path}: file holds {header.dim}-value vectors, expected {self.dim}")
        if header.element_count != meta.element_count:
            raise VectorIndexError(f"{path}: {header.element_count} elements in file, "
                                   f"{meta.element_count} in metadata")
        full = verify == "full" or (verify == "auto" and size <= FULL_CHECK_LIMIT)
        if full:
            if file_crc32(path) != meta.crc32:
                raise VectorIndexError(f"{path}: checksum mismatch (corrupt file)")
        elif sampled_crc32(path, size) != meta.sample_crc32:
            raise VectorIndexError(f"{path}: sampled checksum mismatch (corrupt file)")
        labels = None
        if meta.labels_file:
            lpath = self.directory / meta.labels_file
            try:
                if file_crc32(lpath) != meta.labels_crc32:
                    raise VectorIndexError(f"{lpath}: checksum mismatch (corrupt labels file)")
                labels = np.load(lpath, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise VectorIndexError(f"{lpath}: unreadable labels file: {exc}") from exc
        fv = FileVectors(path, header, labels)
        store = VectorStore(self.dim, fv)
        delta = self._load_delta(meta) if meta.delta_file else None
        if delta is not None:
            store = store.with_added(*delta[1])
        deleted = set(int(x) for x in meta.deleted)
        dead = np.fromiter(deleted, dtype=np.int64, count=len(deleted))
        every = sorted_union(fv._sorted, store.pending_labels)
        live = every[~member(np.sort(dead), every)]
        if LabelDigest.of(live).as_list() != list(meta.label_digest):
            raise VectorIndexError(f"{path}: labels in file do not match the saved label digest")
        self._vectors = store
        self._delta = delta[0] if delta is not None else None
        self._deny = None
        self._meta = meta
        self._live = live
        self._deleted = deleted
        self.params.ef = max(meta.ef, 1)
        self.params.M = meta.M
        self.params.ef_construction = meta.ef_construction
        self.recall_estimate = meta.recall_estimate
        self._generation = int(meta.index_file.rsplit(".", 2)[-2])
        self._dirty = False
        self._index = None
        self._mapped = None
        if MAPPED_SEARCH_BUILT and self.use_mapped:
            self._mapped = self._map_graph(path)
        elif background:
            self._ready.clear()
            threading.Thread(target=self._load_graph, args=(path, meta, True), daemon=True,
                             name=f"load-{self.stem}").start()
        else:
            self._load_graph(path, meta, False)

    def _load_delta(self, meta: IndexMeta) -> tuple[hnswlib.Index, tuple[np.ndarray, np.ndarray]]:
        """The delta file named by ``meta``, checked, loaded, and its (labels, vectors)."""
        dpath = self.directory / meta.delta_file
        if not dpath.exists():
            raise VectorIndexError(f"{dpath}: delta file named by {self.meta_path.name} is missing")
        if dpath.stat().st_size != meta.delta_size or file_crc32(dpath) != meta.delta_crc32:
            raise VectorIndexError(f"{dpath}: delta file changed since it was saved (truncated or corrupt)")
        header = read_hnsw_header(dpath)
        if header.dim != self.dim:
            raise VectorIndexError(f"{dpath}: file holds {header.dim}-value vectors, expected {self.dim}")
        try:
            idx = hnswlib.Index(space=self.SPACE, dim=self.dim)
            idx.load_index(str(dpath), max_elements=max(header.element_count, 16))
            idx.set_ef(max(meta.ef, 1))
            idx.set_num_threads(self.params.num_threads)
        except (RuntimeError, MemoryError, ValueError) as exc:
            raise VectorIndexError(f"{dpath}: hnswlib cannot load it: {exc}") from exc
        fv = FileVectors(dpath, header)
        return idx, (fv.labels.copy(), fv.block(0, fv.count))

    def _load_graph(self, path: Path, meta: IndexMeta, background: bool) -> None:
        """Load the whole HNSW graph with hnswlib (reads the file: about 1.5 s per million
        vectors); used where the _hnswmap module is missing."""
        start = time.perf_counter()
        try:
            idx = hnswlib.Index(space=self.SPACE, dim=self.dim)
            idx.load_index(str(path), max_elements=max(meta.max_elements, meta.element_count)
                           + len(self._vectors.pending_labels))
            idx.set_ef(max(self.params.ef, 1))
            idx.set_num_threads(self.params.num_threads)
            self._merge_delta_into(idx)
        except (RuntimeError, MemoryError, ValueError) as exc:
            err = VectorIndexError(f"{path}: hnswlib cannot load it: {exc}")
            if not background:
                raise err from exc
            log.error("%s; searching exactly until it is rebuilt", err)
            self._load_error = err
            self._ready.set()
            return
        with self._lock.write():
            if self._meta is meta and self._index is None:  # not replaced by a rebuild meanwhile
                self._index = idx
                self._delta = None
        self.graph_load_seconds = time.perf_counter() - start
        self._ready.set()
        log.debug("%s: graph loaded in %.2fs", self.stem, self.graph_load_seconds)

    def _merge_delta_into(self, idx: hnswlib.Index) -> None:
        """Apply the tombstones and the delta's live vectors to a full graph loaded from the base
        file (they live in the sidecar and the delta file, not in the base file)."""
        base = self._vectors.file
        if base is not None and self._deleted:
            dead = np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted))
            for label in dead[member(base._sorted, dead)].tolist():
                try:
                    idx.mark_deleted(label)
                except RuntimeError:
                    pass  # flagged in the base file already
        pend = self._vectors.pending_labels
        live = pend[member(self._live, pend)] if len(pend) else pend
        if len(live):
            need = idx.element_count + len(live)
            if need > idx.get_max_elements():
                idx.resize_index(need)
            idx.add_items(self._vectors.get(live), live, num_threads=max(min(os.cpu_count() or 1, 4), 1))

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for a background graph load; True when HNSW search is available."""
        self._ready.wait(timeout)
        return self._index is not None or self._mapped is not None

    def _wait_writable(self) -> None:
        self._ready.wait()
        if self._index is None and self._mapped is None:
            raise self._load_error or VectorIndexError(f"vector index {self.stem} is closed")
