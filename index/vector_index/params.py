"""HNSW build and search parameters, with the reasons for their defaults."""
from __future__ import annotations

from dataclasses import dataclass


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
