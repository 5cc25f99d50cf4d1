"""On-disk HNSW vector index over the case store's embeddings, one index per encoder model.

Why it looks the way it does:

* The index is never the only copy. The case store keeps every embedding (``embedding`` table);
  the hnswlib file is a cache that makes search fast. On open, the file is checked (header,
  size, checksum, element count, label-set digest, model key and dimension) against a small JSON
  sidecar and against the authoritative :class:`EmbeddingSource`; a missing, truncated, corrupt,
  stale or foreign file is rebuilt (with progress and cancel) instead of being trusted.
* Saves are atomic. Each save writes a new *generation* file (temp name, fsync, rename), then
  atomically replaces the sidecar that names it (temp, fsync, rename, directory fsync). A crash
  at any point leaves either the old or the new generation, never half a file.
* hnswlib is not safe when ``add_items`` and ``knn_query`` run at the same time, but concurrent
  queries are. A readers-writer lock lets any number of searches run together and gives writers
  (add, delete, resize, ef change) exclusive access, so ingest while searching is safe.
* Exact search is used automatically where it is cheaper or more reliable than the graph: small
  collections, and filters narrow enough that the caller can hand over a small candidate label
  set (pre-filter in SQLite, then brute force on those vectors). Otherwise HNSW runs with a
  filter function and oversampling.
* Opening is cheap at any size. Searches run on the saved file in place, through a memory map
  (``_hnswmap``, a small C++ module that implements hnswlib's search over hnswlib's own file
  format), so a million-vector index opens in milliseconds and its pages are shared with the OS
  cache. Writes never touch that file: additions go to a small in-memory hnswlib *delta* index
  (saved as its own small file), deletions to a tombstone list in the sidecar, and searches merge
  the mapped base with the delta. A save writes only the delta and the sidecar, so an ingest into
  a million-vector library writes kilobytes, not gigabytes. When the delta outgrows a tenth of
  the base, a save merges everything into a new base file (hnswlib's full load, a few seconds
  per million vectors) while searches go on.
* Vectors are L2-normalised float32; the score is the cosine similarity (inner product).
"""
from __future__ import annotations

import json
import logging
import math
import mmap
import os
import re
import struct
import threading
import time
import zlib
from contextlib import contextmanager
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Iterator, Protocol

import hnswlib
import numpy as np

try:  # POSIX advisory locks serialise index writes between processes (GUI + CLI ingest)
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer per library is assumed
    fcntl = None  # type: ignore[assignment]

from .errors import Cancelled, QueryError, VectorIndexError

try:  # compiled by setup.py; optional: without it indexes are opened by hnswlib's full load
    from . import _hnswmap
except ImportError:  # pragma: no cover - depends on the build
    _hnswmap = None

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]

FORMAT_VERSION = 2  # 2: the sidecar may name a delta file (a build that reads only 1 rebuilds)
_READABLE_FORMATS = (1, 2)
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")  # hnswlib HierarchicalNSW::saveIndex header (96 bytes)
_SAMPLE_BLOCKS = 64
_SAMPLE_BLOCK_SIZE = 64 * 1024
_FULL_CHECK_LIMIT = 256 * 1024 * 1024  # files up to this size get a full CRC on every open
_DIGEST_P = 2147483647  # 2**31 - 1
_DIGEST_K = 1103515245


class SupportsCancel(Protocol):
    def is_set(self) -> bool: ...


def _no_progress(done: int, total: int, message: str) -> None:
    """Progress sink for callers that do not want reports."""


def _check_cancel(cancel: SupportsCancel | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("vector index operation cancelled")


# --------------------------------------------------------------------------------------------
# Label-set digest: cheap to compute both here (numpy) and in SQLite (plain SQL aggregates)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelDigest:
    """Order-independent fingerprint of a set of labels.

    The SQL equivalent over the store's ``embedding`` table is
    ``SELECT count(*), coalesce(sum(label), 0),
    coalesce(sum(((label % 2147483647) * 1103515245) % 2147483647), 0) FROM embedding
    WHERE model_id = ?`` so the store never has to ship every label to check staleness.
    """

    count: int
    total: int
    mix: int

    @classmethod
    def of(cls, labels: np.ndarray | Iterable[int]) -> "LabelDigest":
        arr = np.asarray(labels if isinstance(labels, np.ndarray) else list(labels), dtype=np.int64)
        if arr.size == 0:
            return cls(0, 0, 0)
        mix = ((arr % _DIGEST_P) * _DIGEST_K) % _DIGEST_P  # < 2**62: no int64 overflow
        return cls(int(arr.size), int(arr.sum(dtype=np.int64)), int(mix.sum(dtype=np.int64)))

    def as_list(self) -> list[int]:
        return [self.count, self.total, self.mix]


# --------------------------------------------------------------------------------------------
# The authoritative embeddings
# --------------------------------------------------------------------------------------------


class EmbeddingSource(Protocol):
    """Where the authoritative (label, vector) pairs of one model live (normally the case store).

    The index only needs these four operations, so it never depends on the store's internals.
    """

    def digest(self) -> LabelDigest:
        """Fingerprint of the live label set (cheap: called on every open)."""

    def labels(self) -> np.ndarray:
        """All live labels (int64); used only when the digest says the index is behind."""

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        """Vectors (float32, one row per label, same order) of the given labels."""

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All live (labels, vectors) in batches, for a full rebuild."""


class ArraySource:
    """An :class:`EmbeddingSource` over in-memory arrays (benchmarks, tests, imports)."""

    def __init__(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        self._labels = np.asarray(labels, dtype=np.int64)
        self._vectors = np.asarray(vectors, dtype=np.float32)
        if self._labels.ndim != 1 or self._vectors.ndim != 2 or len(self._labels) != len(self._vectors):
            raise ValueError("labels must be 1-D and vectors 2-D with one row per label")
        self._row = {int(l): i for i, l in enumerate(self._labels)}

    def digest(self) -> LabelDigest:
        return LabelDigest.of(self._labels)

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        return self._vectors[[self._row[int(l)] for l in labels]]

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for s in range(0, len(self._labels), batch_size):
            yield self._labels[s : s + batch_size], self._vectors[s : s + batch_size]


# --------------------------------------------------------------------------------------------
# Parameters, metadata, results
# --------------------------------------------------------------------------------------------


@dataclass
class IndexParams:
    """HNSW build and search parameters.

    Defaults were chosen with ``benchmarks/search.py`` (clustered 512-d embeddings): M=16 and
    ef_construction=200 reach recall@10 >= 0.98 at 1M vectors with ef well under 100;
    :meth:`VectorIndex.tune_ef` then picks the smallest ef that meets ``target_recall`` on a
    sample of the actual collection.
    """

    M: int = 16
    ef_construction: int = 200
    ef: int = 64
    target_recall: float = 0.98
    exact_below: int = 2_000  # whole collections up to this size: brute force (cheap, exact)
    exact_candidates_below: int = 20_000  # pre-filtered candidate sets up to this size: brute force
    max_ef: int = 1024
    num_threads: int = 1  # per query; build uses all cores
    initial_capacity: int = 1024
    # Additions since the last full write go to a small delta file; past this many (or this
    # fraction of the base file) a save merges them into a new base file.
    delta_min_merge: int = 2_000
    delta_fraction: float = 0.1


@dataclass
class IndexMeta:
    """Contents of the JSON sidecar that names the current index generation."""

    format: int
    model_key: str
    dim: int
    space: str
    M: int
    ef_construction: int
    ef: int
    count: int  # live (not deleted) elements
    element_count: int  # elements in the file, deleted included
    max_elements: int
    label_digest: list[int]
    deleted: list[int]
    index_file: str
    file_size: int
    crc32: int
    sample_crc32: int
    saved_at: float
    recall_estimate: float | None = None
    labels_file: str = ""  # row-order labels (.npy): opening never has to scan the index file
    labels_crc32: int = 0
    delta_file: str = ""  # hnswlib file of the vectors added since index_file was written
    delta_size: int = 0
    delta_crc32: int = 0
    delta_seq: int = 0

    @classmethod
    def from_json(cls, text: str) -> "IndexMeta":
        data = json.loads(text)
        names = {f for f in cls.__dataclass_fields__}
        missing = names - set(data) - {"recall_estimate", "labels_file", "labels_crc32", "delta_file",
                                       "delta_size", "delta_crc32", "delta_seq"}
        if missing:
            raise ValueError(f"sidecar lacks {sorted(missing)}")
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class SearchResult:
    """Labels and cosine scores, best first; rows padded with label -1 / score -inf."""

    labels: np.ndarray  # (n_queries, k) int64
    scores: np.ndarray  # (n_queries, k) float32
    method: str  # "exact" | "exact-candidates" | "hnsw" | "hnsw-filtered" | "empty"
    reason: str = ""

    def hits(self, row: int = 0) -> list[tuple[int, float]]:
        """(label, score) pairs of one query row, padding dropped."""
        keep = self.labels[row] >= 0
        return [(int(l), float(s)) for l, s in zip(self.labels[row][keep], self.scores[row][keep])]


@dataclass
class OpenReport:
    """What :meth:`VectorIndex.open` found and did, for the log, the audit and the GUI."""

    action: str  # "loaded" | "caught-up" | "rebuilt" | "created"
    reason: str = ""
    added: int = 0
    removed: int = 0
    seconds: float = 0.0
    details: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Readers-writer lock
# --------------------------------------------------------------------------------------------


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers so ingest cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


# --------------------------------------------------------------------------------------------
# File helpers
# --------------------------------------------------------------------------------------------


def model_file_stem(model_key: str) -> str:
    """File-system-safe name for a model key (keys look like ``name@version+sha``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key).strip("._") or "model"
    return f"{safe[:80]}-{zlib.crc32(model_key.encode()):08x}"


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def file_crc32(path: Path, chunk: int = 8 * 1024 * 1024) -> int:
    """CRC-32 of a whole file (integrity against truncation and bit rot, not tampering)."""
    crc = 0
    with open(path, "rb") as fh:
        while True:
            buf = fh.read(chunk)
            if not buf:
                return crc
            crc = zlib.crc32(buf, crc)


def sampled_crc32(path: Path, size: int | None = None) -> int:
    """CRC-32 over the header, the tail and evenly spaced blocks: a cheap check for big files."""
    size = path.stat().st_size if size is None else size
    crc = 0
    with open(path, "rb") as fh:
        if size <= _SAMPLE_BLOCKS * _SAMPLE_BLOCK_SIZE:
            return zlib.crc32(fh.read())
        step = (size - _SAMPLE_BLOCK_SIZE) // (_SAMPLE_BLOCKS - 1)
        for i in range(_SAMPLE_BLOCKS):
            fh.seek(i * step)
            crc = zlib.crc32(fh.read(_SAMPLE_BLOCK_SIZE), crc)
    return crc


@dataclass(frozen=True)
class HnswHeader:
    element_count: int
    max_elements: int
    dim: int
    M: int
    ef_construction: int
    min_file_size: int
    size_per_element: int
    offset_data: int


def read_hnsw_header(path: Path) -> HnswHeader:
    """Parse and sanity-check an hnswlib file header before hnswlib is allowed to load it.

    hnswlib trusts its input; a truncated or foreign file can make it allocate wildly or crash,
    so the header fields and the minimum file size they imply are checked here first.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise VectorIndexError(f"{path}: file is {size} bytes, shorter than an hnswlib header")
    (off0, max_el, count, per_el, label_off, off_data, _maxlevel, _entry, _max_m, max_m0, m, _mult,
     efc) = _HEADER.unpack(raw)
    data_bytes = per_el - (max_m0 * 4 + 4) - 8
    if (off0 != 0 or count > max_el or m == 0 or max_m0 != 2 * m or label_off != per_el - 8
            or off_data != max_m0 * 4 + 4 or data_bytes <= 0 or data_bytes % 4):
        raise VectorIndexError(f"{path}: not an hnswlib index (inconsistent header)")
    min_size = _HEADER.size + count * per_el + count * 4
    if size < min_size:
        raise VectorIndexError(f"{path}: truncated ({size} bytes, at least {min_size} expected)")
    return HnswHeader(count, max_el, data_bytes // 4, m, efc, min_size, per_el, off_data)


class _FileVectors:
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
            self._mm = np.memmap(path, dtype=dtype, mode="r", offset=_HEADER.size, shape=(self.count,))
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


class _VectorStore:
    """Vectors by label: the saved file (memmap) overlaid by those added since the last save."""

    def __init__(self, dim: int, file: _FileVectors | None = None) -> None:
        self.dim = dim
        self.file = file
        self.pending_labels = np.empty(0, np.int64)  # sorted
        self.pending = np.empty((0, dim), np.float32)

    def with_added(self, labels: np.ndarray, vecs: np.ndarray) -> "_VectorStore":
        """A new store with ``labels`` (re)placed: copy-on-write so readers never see a half update."""
        keep = ~_member(np.sort(labels), self.pending_labels)
        all_l = np.concatenate([self.pending_labels[keep], labels])
        all_v = np.concatenate([self.pending[keep], vecs])
        order = np.argsort(all_l, kind="stable")
        out = _VectorStore(self.dim, self.file)
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


def sorted_unique(values: np.ndarray | Iterable[int]) -> np.ndarray:
    """Sorted distinct int64 labels. numpy 2.4's ``np.unique`` hashes integers first and takes
    ~0.8 s per million labels; sorting and dropping repeats takes ~10 ms."""
    a = np.sort(np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=np.int64), kind="stable")
    if len(a) > 1:
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


def _sorted_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two sorted distinct label arrays, cheap when ``b`` is small."""
    if len(b) == 0:
        return a
    extra = b[~_member(a, b)]
    if len(extra) == 0:
        return a
    return np.insert(a, np.searchsorted(a, extra), extra)


def search_backend() -> str:
    """How saved indexes are searched on this installation (for ``casebook doctor``)."""
    if _hnswmap is None:
        return "hnswlib full load (the _hnswmap module is not built: large indexes open slowly)"
    return f"in place through a memory map (_hnswmap, {_hnswmap.kernel()} kernel)"


def _prefetch(graph: "object", path: Path) -> None:
    """Warm a just-mapped index in a background thread (``MappedHnsw.warm``, without the GIL).

    Searching pages that are not yet cached costs a random disk read per visited node (over a
    second for the first query on a cold million-vector index), and pages cached but not yet
    mapped cost a page fault each (a few ms per query at a million vectors). Touching every page
    once, in file order, reads ahead at disk speed and maps them while the first searches already
    run. Skipped for files larger than half the RAM, which the cache could not hold anyway.
    """
    try:
        size = path.stat().st_size
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no sysconf (Windows)
        size, ram = 0, 0
    if ram and size > ram // 2:
        return

    def run() -> None:
        try:
            advise = getattr(os, "posix_fadvise", None)
            if advise is not None:  # queue the whole file for read-ahead first: faster than faults alone
                try:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # releases the GIL while it submits
                    finally:
                        os.close(fd)
                except OSError as exc:  # pragma: no cover - the file went away meanwhile
                    log.debug("%s: read-ahead failed: %s", path, exc)
            if not _STOPPING.is_set():
                graph.warm()
        finally:
            with _WARMING_LOCK:
                _WARMING.discard(graph)

    # Not a daemon: a daemon thread inside warm() (GIL released) could wake up during interpreter
    # finalization and abort the process. Instead warming is stopped before threads are joined.
    with _WARMING_LOCK:
        if _STOPPING.is_set():
            return
        _WARMING.add(graph)
    threading.Thread(target=run, name=f"warm-{path.name}").start()


_STOPPING = threading.Event()
_WARMING: set = set()  # graphs being warmed (stopped at interpreter shutdown)
_WARMING_LOCK = threading.Lock()


def _stop_warming() -> None:
    _STOPPING.set()
    with _WARMING_LOCK:
        graphs = list(_WARMING)
    for graph in graphs:
        graph.stop_warm()


try:  # runs at interpreter shutdown *before* non-daemon threads are joined (concurrent.futures uses it)
    threading._register_atexit(_stop_warming)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other Pythons: plain atexit (after joins)
    import atexit

    atexit.register(_stop_warming)


def _member(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Boolean mask: which of ``x`` are in the sorted array (faster than np.isin for big sets)."""
    if len(sorted_values) == 0:
        return np.zeros(len(x), bool)
    pos = np.minimum(np.searchsorted(sorted_values, x), len(sorted_values) - 1)
    return sorted_values[pos] == x


def list_indexes(directory: Path | str) -> list[IndexMeta]:
    """Sidecars of the indexes kept in ``directory`` (one per model), unreadable ones skipped."""
    out = []
    for p in sorted(Path(directory).glob("*.json")):
        try:
            out.append(IndexMeta.from_json(p.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as exc:
            log.warning("%s: not an index sidecar: %s", p, exc)
    return out


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


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------


class VectorIndex:
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
        self._vectors = _VectorStore(self.dim)
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
        progress = progress or _no_progress
        self = cls(Path(directory), model_key, dim, params or IndexParams())
        self.directory.mkdir(parents=True, exist_ok=True)
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

    def _read_meta(self) -> IndexMeta:
        if not self.meta_path.exists():
            raise VectorIndexError(f"{self.meta_path}: no index for model {self.model_key!r} yet")
        try:
            meta = IndexMeta.from_json(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError) as exc:
            raise VectorIndexError(f"{self.meta_path}: unreadable index metadata: {exc}") from exc
        if meta.format not in _READABLE_FORMATS:
            raise VectorIndexError(f"{self.meta_path}: index format {meta.format}, this Casebook reads "
                                   f"{', '.join(map(str, _READABLE_FORMATS))}")
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
        full = verify == "full" or (verify == "auto" and size <= _FULL_CHECK_LIMIT)
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
        fv = _FileVectors(path, header, labels)
        store = _VectorStore(self.dim, fv)
        delta = self._load_delta(meta) if meta.delta_file else None
        if delta is not None:
            store = store.with_added(*delta[1])
        deleted = set(int(x) for x in meta.deleted)
        dead = np.fromiter(deleted, dtype=np.int64, count=len(deleted))
        every = _sorted_union(fv._sorted, store.pending_labels)
        live = every[~_member(np.sort(dead), every)]
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
        if _hnswmap is not None and self.use_mapped:
            self._mapped = self._map_graph(path)
        elif background:
            self._ready.clear()
            threading.Thread(target=self._load_graph, args=(path, meta, True), daemon=True,
                             name=f"load-{self.stem}").start()
        else:
            self._load_graph(path, meta, False)

    use_mapped = True  # class switch: False forces hnswlib's full load (benchmarks compare both)
    prefetch = True  # read a mapped file into the OS cache in the background after opening

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
        fv = _FileVectors(dpath, header)
        return idx, (fv.labels.copy(), fv.block(0, fv.count))

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
            _prefetch(graph, path)
        return graph

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
            for label in dead[_member(base._sorted, dead)].tolist():
                try:
                    idx.mark_deleted(label)
                except RuntimeError:
                    pass  # flagged in the base file already
        pend = self._vectors.pending_labels
        live = pend[_member(self._live, pend)] if len(pend) else pend
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
        missing = labels[~_member(self._live, labels)]
        gone = self._live[~_member(labels, self._live)]
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
            _check_cancel(cancel)
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
        missing = labels[~_member(live, labels)]
        gone = live[~_member(labels, live)]
        self._apply_diff(source, missing, gone, progress or _no_progress, cancel)
        if save:
            self.save()
        return int(len(missing)), int(len(gone))

    # ---------------------------------------------------------------- building
    def rebuild(self, source: EmbeddingSource, *, progress: ProgressCallback | None = None,
                cancel: SupportsCancel | None = None, batch_size: int = 10_000, tune: bool = True) -> None:
        """Build a fresh index from every embedding of ``source``, save it, then swap it in.

        Queries keep running against the old index until the swap; a cancel leaves it untouched.
        """
        progress = progress or _no_progress
        self._ready.wait()
        digest = source.digest()
        total = digest.count
        fresh = self._new_hnsw(max(total, self.params.initial_capacity))
        fresh.set_num_threads(max(os.cpu_count() or 1, 1))
        seen: list[np.ndarray] = []
        done = 0
        progress(0, total, "building vector index")
        for labels, vectors in source.iter_batches(batch_size):
            _check_cancel(cancel)
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
        _check_cancel(cancel)
        fresh.set_num_threads(self.params.num_threads)
        live = sorted_unique(np.concatenate(seen)) if seen else np.empty(0, dtype=np.int64)
        with self._save_lock, self._dir_lock():
            meta, store = self._write_generation(fresh, live, set())
            with self._lock.write():
                self._install(fresh, live, set(), meta, store)
                self._load_error = None
        if tune and len(live) > self.params.exact_below:
            self.tune_ef(progress=progress, cancel=cancel)

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
            self._live = _sorted_union(self._live, np.sort(labels))
            self._exact_cache = None
            self._dirty = True

    def mark_deleted(self, labels: np.ndarray | Iterable[int]) -> int:
        """Hide ``labels`` from every later search; returns how many were live."""
        labels = sorted_unique(labels)
        self._wait_writable()
        with self._save_lock, self._lock.write():
            present = labels[_member(self._live, labels)]
            if self._index is not None:
                for l in present.tolist():
                    self._index.mark_deleted(l)
            elif self._delta is not None:  # mapped: the base file's copies are hidden by tombstones
                for l in present[_member(self._vectors.pending_labels, present)].tolist():
                    try:
                        self._delta.mark_deleted(l)
                    except RuntimeError:  # pragma: no cover - already deleted in the delta
                        pass
            self._deleted.update(present.tolist())
            if len(present):
                self._live = self._live[~_member(present, self._live)]
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

    # ---------------------------------------------------------------- saving
    def save(self) -> Path:
        """Persist every change: the delta and the sidecar, or a new base generation.

        Only the sidecar commits a save (temp file, fsync, rename), so a crash at any point
        leaves the previous saved state whole. Searches go on meanwhile; writers wait.
        """
        self._ready.wait()
        with self._save_lock, self._dir_lock():
            if self._index is not None:
                with self._lock.read():
                    idx, live, deleted = self._index, self._live, set(self._deleted)
                    meta, store = self._write_generation(idx, live, deleted)
                with self._lock.write():
                    self._install(idx, live, deleted, meta, store)
            elif self._mapped is not None and self._meta is not None:
                if not (self._dirty or self._delta_needs_merge()):
                    return self.directory / self._meta.index_file
                disk = self._disk_meta()
                if disk is not None and disk.index_file != self._meta.index_file:
                    # Another process wrote a new base file since this one was opened (and may
                    # have removed ours): a delta on top of ours would name a file that is gone.
                    # The index is a cache of the case store: the next open catches up from it.
                    log.warning("%s: another Casebook process rewrote the index; this process's %d "
                                "additions are left to the case store (caught up at the next open)",
                                self.stem, self.delta_count)
                    self._dirty = False
                elif self._delta_needs_merge():
                    self._merge_and_write()
                else:
                    with self._lock.read():
                        meta = self._write_delta(disk.delta_seq if disk is not None else 0)
                    with self._lock.write():
                        self._meta, self._dirty = meta, False
                    self._remove_stale(meta)
            else:
                raise self._load_error or VectorIndexError(f"vector index {self.stem} is closed")
            return self.directory / self._meta.index_file

    @contextmanager
    def _dir_lock(self) -> Iterator[None]:
        """Exclusive lock on this model's index files across processes (a GUI and a CLI ingest
        on one library): file writes, the sidecar commit and the removal of stale files happen
        as one step, so no sidecar ever names a file another process has just removed."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(self.directory / f"{self.stem}.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _disk_meta(self) -> IndexMeta | None:
        """The sidecar as it is on disk now (another process may have saved since)."""
        try:
            return IndexMeta.from_json(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):
            return None

    def _delta_needs_merge(self) -> bool:
        base = self._vectors.file.count if self._vectors.file is not None else 0
        return self.delta_count > max(self.params.delta_min_merge, self.params.delta_fraction * base)

    def _merge_and_write(self) -> None:
        """Fold the delta and the tombstones into a new base generation (caller holds _save_lock).

        hnswlib loads the base file (a few seconds per million vectors) while searches go on
        against the mapped base and the delta; the swap to the new file takes the write lock.
        """
        path = self.directory / self._meta.index_file
        start = time.perf_counter()
        # hnswlib trusts what it loads; a large base was only sample-checked when it was opened.
        if file_crc32(path) != self._meta.crc32:
            raise VectorIndexError(f"{path}: checksum mismatch (corrupt file): not merging into it")
        with self._lock.read():
            base = self._vectors.file
            idx = hnswlib.Index(space=self.SPACE, dim=self.dim)
            try:
                idx.load_index(str(path), max_elements=(base.count if base else 0) + self.delta_count + 16)
            except (RuntimeError, MemoryError, ValueError) as exc:
                raise VectorIndexError(f"{path}: hnswlib cannot load it to merge the delta: {exc}") from exc
            idx.set_ef(max(self.params.ef, 1))
            idx.set_num_threads(self.params.num_threads)
            self._merge_delta_into(idx)
            live = self._live
            dead = np.fromiter(self._deleted, dtype=np.int64, count=len(self._deleted))
            # Deletions of vectors that never reached a base file vanish with the delta.
            deleted = set(dead[_member(base._sorted, dead)].tolist()) if base is not None else set()
            meta, store = self._write_generation(idx, live, deleted)
        with self._lock.write():
            self._install(idx, live, deleted, meta, store)
        log.info("%s: merged the delta into a new base file in %.1fs", self.stem, time.perf_counter() - start)

    def _write_delta(self, seq_floor: int = 0) -> IndexMeta:
        """Write the delta (if any) as its own file, then the sidecar naming it with the tombstones."""
        meta = self._meta
        seq = max(meta.delta_seq, seq_floor) + 1
        fields: dict = {"delta_file": "", "delta_size": 0, "delta_crc32": 0}
        if self._delta is not None and self._delta.element_count:
            final = self.directory / f"{self.stem}.{self._generation:06d}.d{seq:05d}.hnsw"
            tmp = final.with_name(final.name + ".tmp")
            self._delta.save_index(str(tmp))
            _fsync_file(tmp)
            fields = {"delta_file": final.name, "delta_size": tmp.stat().st_size, "delta_crc32": file_crc32(tmp)}
            os.replace(tmp, final)
        new = dataclasses.replace(
            meta, format=FORMAT_VERSION, count=int(len(self._live)), label_digest=LabelDigest.of(self._live).as_list(),
            deleted=sorted(self._deleted), delta_seq=seq, saved_at=time.time(), ef=self.params.ef,
            recall_estimate=self.recall_estimate, **fields)
        self._write_meta(new)  # the commit point
        log.debug("%s: saved a delta of %d, %d tombstones", self.stem, self.delta_count, len(self._deleted))
        return new

    def _install(self, idx: hnswlib.Index, live: np.ndarray, deleted: set[int], meta: IndexMeta,
                 store: "_VectorStore") -> None:
        """Make a just-written generation current (caller holds the write lock): searched in
        place through a map where the _hnswmap module exists, else from ``idx`` in memory."""
        mapped = None
        if _hnswmap is not None and self.use_mapped:
            try:
                mapped = self._map_graph(self.directory / meta.index_file)
            except VectorIndexError as exc:  # pragma: no cover - just written and checked
                log.warning("%s; keeping the graph in memory", exc)
        self._index, self._mapped, self._delta, self._deny = (None if mapped is not None else idx), mapped, None, None
        self._live, self._deleted = live, set(deleted)
        self._vectors, self._meta = store, meta
        self._exact_cache = None
        self._generation = int(meta.index_file.rsplit(".", 2)[-2])
        self._dirty = False
        self._remove_stale(meta)

    def _remove_stale(self, meta: IndexMeta) -> None:
        keep = {meta.index_file, meta.labels_file, meta.delta_file, self.meta_path.name}
        for stale in self.directory.glob(f"{self.stem}.*"):
            if stale.name not in keep and (".hnsw" in stale.name or ".labels.npy" in stale.name):
                try:
                    stale.unlink()
                except OSError as exc:  # pragma: no cover - e.g. still mapped on Windows
                    log.warning("%s: cannot remove old index generation: %s", stale, exc)

    def _write_generation(self, idx: hnswlib.Index, live: np.ndarray,
                          deleted: set[int]) -> tuple[IndexMeta, "_VectorStore"]:
        """Write ``idx`` as the next generation: temp file, fsync, rename, then the sidecar."""
        disk = self._disk_meta()
        disk_gen = int(disk.index_file.rsplit(".", 2)[-2]) if disk is not None and disk.index_file else 0
        gen = max(self._generation, disk_gen) + 1  # another process may have written generations too
        final = self._index_path(gen)
        tmp = final.with_name(final.name + ".tmp")
        idx.save_index(str(tmp))
        _fsync_file(tmp)
        size = tmp.stat().st_size
        meta = IndexMeta(
            format=FORMAT_VERSION, model_key=self.model_key, dim=self.dim, space=self.SPACE,
            M=self.params.M, ef_construction=self.params.ef_construction, ef=self.params.ef,
            count=int(len(live)), element_count=int(idx.element_count),
            max_elements=int(idx.get_max_elements()), label_digest=LabelDigest.of(live).as_list(),
            deleted=sorted(deleted), index_file=final.name, file_size=size, crc32=file_crc32(tmp),
            sample_crc32=sampled_crc32(tmp, size), saved_at=time.time(),
            recall_estimate=self.recall_estimate,
        )
        os.replace(tmp, final)
        fv = _FileVectors(final, read_hnsw_header(final))
        labels_path = final.with_suffix(".labels.npy")
        labels_tmp = labels_path.with_name(labels_path.name + ".tmp")
        with open(labels_tmp, "wb") as fh:
            np.save(fh, fv.labels.astype("<i8"))
            fh.flush()
            os.fsync(fh.fileno())
        meta.labels_file, meta.labels_crc32 = labels_path.name, file_crc32(labels_tmp)
        os.replace(labels_tmp, labels_path)
        self._write_meta(meta)  # the commit point
        store = _VectorStore(self.dim, fv)
        log.debug("%s: saved generation %d, %d live", self.stem, gen, meta.count)
        return meta, store

    def _write_meta(self, meta: IndexMeta) -> None:
        meta_tmp = self.meta_path.with_name(self.meta_path.name + ".tmp")
        with open(meta_tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(meta), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(meta_tmp, self.meta_path)
        _fsync_dir(self.directory)

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
            labels = labels[_member(self._live, labels)]
            return labels, self._get_vectors_locked(labels)

    def _get_vectors_locked(self, labels: np.ndarray) -> np.ndarray:
        if len(labels) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        ok = _member(self._live, labels)
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
                cand = cand[_member(self._live, cand)]
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

    def _empty(self, n: int, k: int, reason: str) -> SearchResult:
        return SearchResult(np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32), "empty", reason)

    def _blocks(self, block: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All live (labels, vectors), read sequentially from the mapped file, then the pending."""
        store, live = self._vectors, self._live
        if store.file is not None and store.file.count:
            for s in range(0, store.file.count, block):
                lab = store.file.labels[s : s + block]
                keep = _member(live, lab)
                if len(store.pending_labels):
                    keep &= ~_member(store.pending_labels, lab)  # replaced since the save
                if keep.any():
                    yield lab[keep], store.file.block(s, s + block)[keep]
        if len(store.pending_labels):
            keep = _member(live, store.pending_labels)
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
                sims[:, _member(excl, labels)] = -np.inf  # cheaper than copying the matrix
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
            deny = _sorted_union(deny, excl)
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
        cand_d = cand[_member(pend, cand)] if cand is not None and delta_live else cand
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
            cached = (_sorted_union(pend, dead), int(len(pend) - _member(dead, pend).sum()))
            self._deny = cached
        return cached

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

    # ---------------------------------------------------------------- tuning and audit
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
        progress = progress or _no_progress
        progress(0, 1, "measuring exact neighbours for ef tuning")
        q, truth = self._recall_queries(k, sample, 0, queries)
        if len(q) == 0:
            return self.params.ef
        chosen, recall = self.params.max_ef, 0.0
        ladder = [e for e in (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024) if e <= self.params.max_ef]
        for n, ef in enumerate(ladder):
            _check_cancel(cancel)
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
