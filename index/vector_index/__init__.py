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

Where each job lives (one module each): :mod:`.index` the :class:`VectorIndex` front door and its
lifecycle; :mod:`.loading` opening and checking saved files; :mod:`.saving` deltas, generations
and the sidecar commit; :mod:`.sync` catching up with the store and rebuilding; :mod:`.exact`,
:mod:`.hnsw` and :mod:`.mapped` the three search paths; :mod:`.tuning` recall and ef;
:mod:`.labels` label digests and sorted sets; :mod:`.sources` the authoritative embeddings;
:mod:`.vectors` stored vectors; :mod:`.files` the hnswlib file format and checksums;
:mod:`.sidecar` the JSON sidecar; :mod:`.locks` in- and cross-process locks; :mod:`.warmup`
background read-ahead; :mod:`.params` and :mod:`.results` the parameter and result records.
"""
from __future__ import annotations

from casebook.common.progress import ProgressCallback, SupportsCancel

from .files import HnswHeader, file_crc32, model_file_stem, read_hnsw_header, sampled_crc32
from .index import VectorIndex
from .labels import LabelDigest, sorted_unique
from .locks import ReadWriteLock
from .mapped import search_backend
from .params import IndexParams
from .results import OpenReport, SearchResult
from .sidecar import FORMAT_VERSION, IndexMeta, list_indexes
from .sources import ArraySource, EmbeddingSource
from .vectors import normalise

__all__ = [
    "FORMAT_VERSION", "ArraySource", "EmbeddingSource", "HnswHeader", "IndexMeta", "IndexParams", "LabelDigest",
    "OpenReport", "ProgressCallback", "ReadWriteLock", "SearchResult", "SupportsCancel", "VectorIndex",
    "file_crc32", "list_indexes", "model_file_stem", "normalise", "read_hnsw_header", "sampled_crc32",
    "search_backend", "sorted_unique",
]
