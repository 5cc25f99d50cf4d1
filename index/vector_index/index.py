"""The front door: :class:`VectorIndex`, one encoder model's index in one folder, and its lifecycle.

Creating, opening (with repair), adding, deleting, reading vectors, choosing between exact and
graph search, and closing live here; each mixin module holds one of the jobs behind them.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Callable, Collection, Iterable

import hnswlib
import numpy as np

from casebook.common.progress import ProgressCallback, SupportsCancel, no_progress

from ..errors import QueryError, VectorIndexError
from .exact import ExactSearchMixin
from .files import model_file_stem
from .hnsw import HnswSearchMixin
from .labels import member, sorted_union, sorted_unique
from .loading import LoadingMixin
from .locks import ReadWriteLock
from .mapped import MappedSearchMixin
from .params import IndexParams
from .results import OpenReport, SearchResult
from .saving import SavingMixin
from .sidecar import IndexMeta
from .sources import EmbeddingSource
from .sync import SyncMixin
from .tuning import TuningMixin
from .vectors import VectorStore, normalise

log = logging.getLogger(__name__)


class VectorIndex(LoadingMixin, SavingMixin, SyncMixin, ExactSearchMixin, HnswSearchMixin,
                  MappedSearchMixin, TuningMixin):
    """An hnswlib index of one encoder model's embeddings, with its sidecar, in ``directory``.

    Create or open it with :meth:`open`; all methods are thread-safe.
    """

    SPACE = "ip"

    def __init__(self, directory: Path, model_key: str, dim: int, params: IndexParams) -> None:
        self.directory = Path(directory)
        self.model_key = model_key
        self.dim = int(dim)
        self.params = params
        self.stem = model_file_stem(model_key)
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()
        self._index: hnswlib.Index | None = None  # whole graph in memory: fresh builds, no _hnswmap
        self._mapped = None  # _hnswmap.MappedHnsw over the saved base file
        self._delta: hnswlib.Index | None = None  # additions since the base file (mapped mode)
        self._deny: tuple[np.ndarray, int] | None = None  # cached until a write: see _mapped_deny
        self._live = np.empty(0, dtype=np.int64)  # sorted live labels
        self._deleted: set[int] = set()
        self._generation = 0
        self._dirty = False
        self._exact_cache: tuple[np.ndarray, np.ndarray] | None = None
        self._vectors = VectorStore(self.dim)
        self._meta: IndexMeta | None = None
        self._ready = threading.Event()
        self._ready.set()
        self._load_error: VectorIndexError | None = None
        self._closed = False
        self.graph_load_seconds = 0.0
        self.recall_estimate: float | None = None
        self.report = OpenReport("created")

    # ---------------------------------------------------------------- paths
    @property
    def meta_path(self) -> Path:
        return self.directory / f"{self.stem}.json"

    def _index_path(self, generation: int) -> Path:
        return self.directory / f"{self.stem}.{generation:06d}.hnsw"

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        directory: Path | str,
        model_key: str,
        dim: int,
        source: EmbeddingSource | None = None,
        *,
        params: IndexParams | None = None,
        rebuild: bool = True,
        verify: str = "auto",
        background: bool = False,
        progress: ProgressCallback | None = None,
        cancel: SupportsCancel | None = None,
    ) -> "VectorIndex":
        """Open the index of ``model_key`` in ``directory``, repairing it from ``source`` if needed.

        With a ``source`` the index is checked against it: a missing, corrupt, foreign or stale
        file is rebuilt (``rebuild=True``) or reported as :class:`VectorIndexError`. A valid file
        that is merely behind (labels added or removed since the last save) is caught up
        incrementally. ``verify`` is ``"full"`` (CRC of the whole file), ``"sample"`` (header,
        size and a sampled CRC: fast for multi-GB files) or ``"auto"`` (full up to 256 MB).
        The graph is searched in place through a memory map (milliseconds to open at any
        size). Only where the ``_hnswmap`` module is missing does hnswlib load the whole file;
        then ``background=True`` loads it in a thread and searches run exactly over the mapped
        vectors until it is there (slower per query, never wrong). hnswlib 0.8 holds the GIL
        inside ``load_index`` (about 1.5 s per million 512-d vectors from the page cache).
        """
        if dim <= 0:
            raise VectorIndexError(f"model {model_key!r}: embedding size must be positive, not {dim}")
        start = time.perf_counter()
        progress = progress or no_progress
        self = cls(Path(directory), model_key, dim, params or IndexParams())
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only library: the rebuild below searches from memory instead
            pass
        try:
            self._load(verify, background and source is None)
        except VectorIndexError as exc:
            if source is None or not rebuild:
                raise
            if self.meta_path.exists():
                log.warning("rebuilding vector index: %s", exc)
            else:
                log.info("building vector index: %s", exc)
            self.rebuild(source, progress=progress, cancel=cancel)
            self.report = OpenReport("rebuilt", reason=str(exc))
        else:
            self.report = OpenReport("loaded")
            if source is not None:
                self._reconcile(source, rebuild, progress, cancel)
        self.report.seconds = time.perf_counter() - start
        log.info("vector index %s: %s in %.2fs %s", self.stem, self.report.action, self.report.seconds,
                 self.report.reason)
        return self

    @classmethod
    def create(cls, directory: Path | str, model_key: str, dim: int,
               params: IndexParams | None = None) -> "VectorIndex":
        """A new empty index (nothing on disk until :meth:`save`)."""
        self = cls(Path(directory), model_key, dim, params or IndexParams())
        self.directory.mkdir(parents=True, exist_ok=True)
        self._index = self._new_hnsw(self.params.initial_capacity)
        return self

    def _new_hnsw(self, capacity: int) -> hnswlib.Index:
        idx = hnswlib.Index(space=self.SPACE, dim=self.dim)
        idx.init_index(max_elements=max(int(capacity), 16), M=self.params.M,
                       ef_construction=self.params.ef_construction)
        idx.set_ef(self.params.ef)
        idx.set_num_threads(self.params.num_threads)
        return idx

    use_mapped = True  # class switch: False forces hnswlib's full load (benchmarks compare both)
    prefetch = True  # read a mapped file into the OS cache in the background after opening

    @property
    def backend(self) -> str:
        """What answers HNSW searches now: "mapped" (the saved file in place, plus the in-memory
        delta of later additions), "hnswlib" (the whole graph in memory: a fresh build before
        its first save, or no _hnswmap module), "loading" (exact search until a background load
        ends) or "closed"."""
        if self._index is not None:
            return "hnswlib"
        if self._mapped is not None:
            return "mapped"
        return "closed" if self._closed or self._ready.is_set() else "loading"

    @property
    def delta_count(self) -> int:
        """Vectors added since the base file was written (kept in the delta, not yet merged)."""
        return int(self._delta.element_count) if self._delta is not None else 0

    # ---------------------------------------------------------------- writing
    def add(self, labels: np.ndarray | Iterable[int], vectors: np.ndarray) -> None:
        """Add (or replace) vectors under ``labels``; grows the index as needed."""
        labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=np.int64)
        vecs = normalise(vectors, self.dim, what="stored")
        if labels.ndim != 1 or len(labels) != len(vecs):
            raise QueryError(f"{len(labels)} labels for {len(vecs)} vectors")
        if len(labels) == 0:
            return
        if (labels < 0).any():
            raise QueryError("labels must be non-negative integers")
        if len(sorted_unique(labels)) != len(labels):
            raise QueryError("duplicate labels in one add")
        self._wait_writable()
        with self._save_lock, self._lock.write():
            # The whole graph in memory takes the vectors; a mapped base file is never written:
            # additions go to the delta, searched beside it and saved as its own small file.
            idx = self._index if self._index is not None else self._delta
            if idx is None:
                idx = self._new_hnsw(max(len(labels), self.params.initial_capacity))
            need = idx.element_count + len(labels)
            if need > idx.get_max_elements():
                new_cap = max(need, int(idx.get_max_elements() * 1.5))
                log.debug("%s: resizing index to %d elements", self.stem, new_cap)
                idx.resize_index(new_cap)
            idx.add_items(vecs, labels, num_threads=max(min(os.cpu_count() or 1, 4), 1))
            if self._index is None:
                self._delta = idx
                self._deny = None
            self._vectors = self._vectors.with_added(labels, vecs)
            for l in labels.tolist():
                self._deleted.discard(l)
            self._live = sorted_union(self._live, np.sort(labels))
            self._exact_cache = None
            self._dirty = True

    def mark_deleted(self, labels: np.ndarray | Iterable[int]) -> int:
        """Hide ``labels`` from every later search; returns how many were live."""
        labels = sorted_unique(labels)
        self._wait_writable()
        with self._save_lock, self._lock.write():
            present = labels[member(self._live, labels)]
            if self._index is not None:
                for l in present.tolist():
                    self._index.mark_deleted(l)
            elif self._delta is not None:  # mapped: the base file's copies are hidden by tombstones
                for l in present[member(self._vectors.pending_labels, present)].tolist():
                    try:
                        self._delta.mark_deleted(l)
                    except RuntimeError:  # pragma: no cover - already deleted in the delta
                        pass
            self._deleted.update(present.tolist())
            if len(present):
                self._live = self._live[~member(present, self._live)]
                self._exact_cache = None
                self._deny = None
                self._dirty = True
            return int(len(present))

    def set_ef(self, ef: int) -> None:
        self._ready.wait()
        if self._index is None:  # mapped: ef goes with each query, nothing shared to guard
            self.params.ef = int(ef)
            return
        with self._lock.write():
            self.params.ef = int(ef)
            if self._index is not None:
                self._index.set_ef(int(ef))

    def close(self) -> None:
        """Save pending changes (if any) and release the memory."""
        self._ready.wait()
        if self._dirty and (self._index is not None or self._mapped is not None):
            self.save()
        with self._lock.write():
            self._index = None
            self._mapped = None  # unmapped once the last running search lets go of it
            self._delta = None
            self._exact_cache = None
            self._closed = True

    def __enter__(self) -> "VectorIndex":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        return int(len(self._live))

    @property
    def live_labels(self) -> np.ndarray:
        return self._live.copy()

    @property
    def deleted_labels(self) -> frozenset[int]:
        return frozenset(self._deleted)

    def __contains__(self, label: int) -> bool:
        i = np.searchsorted(self._live, label)
        return bool(i < len(self._live) and self._live[i] == label)

    def get_vectors(self, labels: np.ndarray | Iterable[int]) -> np.ndarray:
        """Stored (normalised) vectors of live labels; unknown or deleted labels raise QueryError."""
        labels = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels, dtype=np.int64)
        with self._lock.read():
            return self._get_vectors_locked(labels)

    def get_live_vectors(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labels still live and their vectors, read under one lock: a concurrent sync may
        delete labels between a caller's snapshot of ``live_labels`` and this read."""
        labels = np.asarray(labels, dtype=np.int64)
        with self._lock.read():
            labels = labels[member(self._live, labels)]
            return labels, self._get_vectors_locked(labels)

    def _get_vectors_locked(self, labels: np.ndarray) -> np.ndarray:
        if len(labels) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        ok = member(self._live, labels)
        if not ok.all():
            raise QueryError(f"{int((~ok).sum())} label(s) not in the index (unknown or deleted), "
                             f"e.g. {int(labels[~ok][0])}")
        return self._vectors.get(labels)

    def memory_bytes(self) -> int:
        """Approximate resident size of the graph and vectors."""
        idx = self._index
        if idx is None:
            mapped = self._mapped  # file pages are shared with the OS cache; count what is private
            if mapped is None:
                return 0
            per = self.dim * 4 * 2 + (2 * self.params.M * 4 + 4) + 8 + 2 * 8  # delta graph + pending copy
            return int(mapped.private_bytes) + self.delta_count * per
        per = self.dim * 4 + (2 * idx.M * 4 + 4) + 8 + 2 * 8  # level 0 + label map
        upper = idx.M * 4 * 1.0 / math.log(max(idx.M, 2)) + 8  # expected upper-level links
        return int(idx.get_max_elements() * per + idx.element_count * upper)

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        *,
        candidates: np.ndarray | Collection[int] | None = None,
        filter: Callable[[int], bool] | None = None,
        exclude: Collection[int] | None = None,
        mode: str = "auto",
        ef: int | None = None,
    ) -> SearchResult:
        """The ``k`` nearest stored vectors (cosine) of each query row.

        ``candidates`` restricts the answer to those labels (a pre-filter from SQLite); small
        candidate sets are searched exactly. ``filter`` is a per-label predicate for HNSW.
        ``exclude`` removes labels (e.g. the query's own slices). ``mode`` forces ``"exact"`` or
        ``"hnsw"``; ``"auto"`` picks the cheaper that still meets the recall target.
        """
        if k <= 0:
            raise QueryError(f"k must be positive, not {k}")
        if mode not in ("auto", "exact", "hnsw"):
            raise QueryError(f"unknown search mode {mode!r}")
        q = normalise(queries, self.dim)
        excl = np.asarray(sorted(set(int(x) for x in exclude)), dtype=np.int64) if exclude else None
        with self._lock.read():
            if self._closed:
                raise VectorIndexError(f"vector index {self.stem} is closed")
            graph = self._index is not None or self._mapped is not None  # False while loading
            live_n = len(self._live)
            cand = None
            if candidates is not None:
                cand = sorted_unique(candidates)
                cand = cand[member(self._live, cand)]
                if excl is not None:
                    cand = np.setdiff1d(cand, excl, assume_unique=True)
                if len(cand) == 0:
                    return self._empty(len(q), k, "no indexed embedding matches the filters")
            if live_n == 0:
                return self._empty(len(q), k, "the index is empty")
            if cand is not None:
                use_exact = len(cand) <= self.params.exact_candidates_below
            else:
                use_exact = live_n <= self.params.exact_below
            use_exact = mode == "exact" or (mode == "auto" and use_exact) or not graph
            if use_exact and filter is not None:
                pool = cand if cand is not None else self._live
                cand = pool[np.fromiter((bool(filter(int(l))) for l in pool), dtype=bool, count=len(pool))]
                if excl is not None:
                    cand = np.setdiff1d(cand, excl, assume_unique=True)
                if len(cand) == 0:
                    return self._empty(len(q), k, "no indexed embedding matches the filters")
            if use_exact:
                return self._exact(q, k, cand, excl)
            return self._hnsw(q, k, cand, filter, excl, ef)
