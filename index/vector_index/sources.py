"""Where the authoritative embeddings live: the protocol the index rebuilds and catches up from.

The index is a cache; the case store (or, in benchmarks and tests, plain arrays) holds the truth.
Keeping the protocol here means the index never depends on the store's internals.
"""
from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from .labels import LabelDigest


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
